// sdk::ElementPieces: which tensors join into one piece, and that run() visits every element
// of every piece exactly once.
#include <cstddef>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/plugin.hpp>

namespace {

using Pieces = optreg::sdk::ElementPieces<2, 1>;

}  // namespace

TEST(ElementPieces, TensorsBackToBackWithEqualFactorsJoinIntoOnePiece) {
  std::vector<float> a(30), b(30);
  Pieces pieces;
  pieces.add({a.data(), b.data()}, 10, {0.5F});
  pieces.add({a.data() + 10, b.data() + 10}, 5, {0.5F});
  pieces.add({a.data() + 15, b.data() + 15}, 15, {0.5F});
  ASSERT_EQ(pieces.pieces().size(), 1U);
  EXPECT_EQ(pieces.pieces()[0].n, 30U);
  EXPECT_EQ(pieces.pieces()[0].data[0], a.data());
}

TEST(ElementPieces, AGapInAnyArrayOrAnotherFactorStartsANewPiece) {
  std::vector<float> a(40), b(40);
  Pieces pieces;
  pieces.add({a.data(), b.data()}, 10, {1.0F});
  pieces.add({a.data() + 10, b.data() + 11}, 10, {1.0F});  // the second array has a gap
  pieces.add({a.data() + 20, b.data() + 21}, 5, {2.0F});   // back to back, other factor
  pieces.add({a.data() + 25, b.data() + 26}, 5, {2.0F});   // joins the third
  ASSERT_EQ(pieces.pieces().size(), 3U);
  EXPECT_EQ(pieces.pieces()[0].n, 10U);
  EXPECT_EQ(pieces.pieces()[1].n, 10U);
  EXPECT_EQ(pieces.pieces()[2].n, 10U);
  EXPECT_EQ(pieces.pieces()[2].factors[0], 2.0F);
}

TEST(ElementPieces, AnAbsentArrayJoinsOnlyAnotherAbsentOne) {
  std::vector<float> a(20), b(20);
  Pieces pieces;
  pieces.add({a.data(), nullptr}, 5);
  pieces.add({a.data() + 5, nullptr}, 5);   // joins: both absent
  pieces.add({a.data() + 10, b.data()}, 5);  // present after absent: new piece
  ASSERT_EQ(pieces.pieces().size(), 2U);
  EXPECT_EQ(pieces.pieces()[0].n, 10U);
  EXPECT_EQ(pieces.pieces()[1].data[1], b.data());
}

TEST(ElementPieces, RunVisitsEveryElementOnceAndClearKeepsNothing) {
  optreg::set_num_threads(2);
  std::vector<float> a(100003, 0.0F), b(100003, 0.0F), c(777, 0.0F);
  Pieces pieces;
  pieces.add({a.data(), b.data()}, 50000, {1.0F});
  pieces.add({a.data() + 50000, b.data() + 50000}, 50003, {1.0F});
  pieces.add({c.data(), nullptr}, 777, {3.0F});
  pieces.run(
      [](const Pieces::Piece& p, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) p.data[0][i] += p.factors[0];
      },
      1000);
  optreg::set_num_threads(0);
  for (float v : a) ASSERT_EQ(v, 1.0F);
  for (float v : c) ASSERT_EQ(v, 3.0F);
  pieces.clear();
  EXPECT_TRUE(pieces.pieces().empty());
}
