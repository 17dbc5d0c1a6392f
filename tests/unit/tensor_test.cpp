#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/tensor.hpp>

using optreg::Shape;
using optreg::Tensor;

TEST(Tensor, OwnedMemoryIsZeroFilledAnd64ByteAligned) {
  for (std::int64_t n : {1, 3, 17, 1000}) {
    Tensor t(Shape{n, 2});
    EXPECT_EQ(t.numel(), static_cast<std::size_t>(2 * n));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % Tensor::kAlignment, 0U);
    for (std::size_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t[i], 0.0F);
    EXPECT_FALSE(t.is_view());
  }
}

TEST(Tensor, ScalarShapeHasOneElement) {
  Tensor t(Shape{}, 2.5F);
  EXPECT_EQ(t.numel(), 1U);
  EXPECT_EQ(t.dim(), 0U);
  EXPECT_EQ(t[0], 2.5F);
}

TEST(Tensor, CopiesShareMemoryAndCloneDoesNot) {
  Tensor a(Shape{2, 2}, {1, 2, 3, 4});
  Tensor b = a;
  b[0] = 10;
  EXPECT_EQ(a[0], 10);
  EXPECT_TRUE(a.shares_memory_with(b));
  Tensor c = a.clone();
  c[1] = 20;
  EXPECT_EQ(a[1], 2);
  EXPECT_FALSE(c.shares_memory_with(a));
}

TEST(Tensor, ViewWritesThroughToCallerMemory) {
  std::vector<float> buffer = {1, 2, 3, 4, 5, 6};
  Tensor v = Tensor::view(buffer.data(), {2, 3});
  EXPECT_TRUE(v.is_view());
  EXPECT_EQ(v.data(), buffer.data());
  v[5] = 60;
  EXPECT_EQ(buffer[5], 60);
  Tensor owned = v.clone();
  EXPECT_FALSE(owned.is_view());
  owned[0] = -1;
  EXPECT_EQ(buffer[0], 1);
}

TEST(Tensor, CopyFromRejectsAShapeMismatchNamingBothShapes) {
  Tensor a(Shape{2, 3});
  Tensor b(Shape{3, 2});
  try {
    a.copy_from(b);
    FAIL() << "expected UsageError";
  } catch (const optreg::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
}

TEST(Tensor, ValueCountMustMatchTheShape) {
  EXPECT_THROW(Tensor(Shape{2, 2}, {1, 2, 3}), optreg::UsageError);
}

TEST(Tensor, NegativeExtentIsRejected) { EXPECT_THROW(Tensor(Shape{2, -1}), optreg::UsageError); }

TEST(Tensor, ViewOfNullIsRejected) { EXPECT_THROW(Tensor::view(nullptr, {1}), optreg::UsageError); }

TEST(Tensor, PartOfSharesAndKeepsTheBufferAlive) {
  Tensor part;
  {
    Tensor buffer(Shape{10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    part = Tensor::part_of(buffer, 4, {2, 3});
    buffer[4] = 40;
  }
  EXPECT_EQ(part.shape(), (Shape{2, 3}));
  EXPECT_EQ(part.to_vector(), (std::vector<float>{40, 5, 6, 7, 8, 9}));
}

TEST(Tensor, PartOfRejectsAPartThatDoesNotFit) {
  Tensor buffer(Shape{10});
  EXPECT_THROW(Tensor::part_of(buffer, 8, {3}), optreg::UsageError);
  EXPECT_THROW(Tensor::part_of(buffer, 11, {0}), optreg::UsageError);
}
