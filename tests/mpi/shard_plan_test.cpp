// How a ShardedOptimizer splits parameters between ranks (plan_shards()) and the order in which
// it reduces gradients (reduce_in_order()): pure functions, tested without mpirun.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/dtype.hpp>
#include <optreg/error.hpp>
#include <optreg/mpi.hpp>

#include "test_support.hpp"

using optreg::DType;
using optreg::Shape;
using optreg::ShardPiece;
using optreg::Tensor;

namespace {

struct Model {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
};

Model random_model(std::mt19937& rng) {
  Model m;
  const int count = std::uniform_int_distribution<int>(1, 12)(rng);
  const DType kinds[] = {DType::Float32, DType::BFloat16, DType::Float64, DType::Float16};
  for (int i = 0; i < count; ++i) {
    const auto a = std::uniform_int_distribution<std::int64_t>(1, 90)(rng);
    const auto b = std::uniform_int_distribution<std::int64_t>(1, 70)(rng);
    m.shapes.push_back(i % 3 == 0 ? Shape{a} : Shape{a, b});
    m.dtypes.push_back(kinds[std::uniform_int_distribution<int>(0, 3)(rng)]);
  }
  return m;
}

std::uint64_t bytes_of(const Model& m, const ShardPiece& p) { return p.count * optreg::dtype_size(m.dtypes[p.param]); }

TEST(ShardPlan, CoversEveryElementOnceInIdOrderAtMultiplesOfTheSplit) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const Model m = random_model(rng);
    const int world = 1 + trial % 6;
    const std::size_t split = std::vector<std::size_t>{1, 3, 64, 4096}[static_cast<std::size_t>(trial) % 4];
    const auto pieces = optreg::mpi::plan_shards(m.shapes, m.dtypes, world, false, split);
    std::vector<std::uint64_t> covered(m.shapes.size(), 0);
    std::uint64_t last_param = 0;
    std::uint32_t last_rank = 0;
    for (const ShardPiece& p : pieces) {
      ASSERT_GE(p.param, last_param);
      ASSERT_LT(p.rank, static_cast<std::uint32_t>(world));
      ASSERT_GE(p.rank, last_rank) << "contiguous ranges: ranks never go back";
      ASSERT_EQ(p.offset, covered[p.param]);
      ASSERT_GT(p.count, 0u);
      ASSERT_EQ(p.offset % split, 0u);
      covered[p.param] += p.count;
      last_param = p.param;
      last_rank = p.rank;
    }
    for (std::size_t i = 0; i < m.shapes.size(); ++i) ASSERT_EQ(covered[i], optreg::numel_of(m.shapes[i]));
  }
}

TEST(ShardPlan, SplitRangesAreBalancedByBytes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const Model m = random_model(rng);
    const int world = 2 + trial % 4;
    const std::size_t split = 16;
    const auto pieces = optreg::mpi::plan_shards(m.shapes, m.dtypes, world, false, split);
    std::vector<std::uint64_t> load(static_cast<std::size_t>(world), 0);
    std::uint64_t total = 0;
    for (const ShardPiece& p : pieces) {
      load[p.rank] += bytes_of(m, p);
      total += bytes_of(m, p);
    }
    // Each rank's share is its range of total/world bytes, give or take one block.
    const std::uint64_t block = split * 8;
    for (std::uint64_t l : load) {
      EXPECT_LE(l, total / static_cast<std::uint64_t>(world) + block + 8);
    }
  }
}

TEST(ShardPlan, WholeTensorsGoLargestFirstToTheLeastLoadedRank) {
  std::mt19937 rng(13);
  for (int trial = 0; trial < 200; ++trial) {
    const Model m = random_model(rng);
    const int world = 1 + trial % 5;
    const auto pieces = optreg::mpi::plan_shards(m.shapes, m.dtypes, world, true, 4096);
    ASSERT_EQ(pieces.size(), m.shapes.size());
    std::vector<std::uint64_t> load(static_cast<std::size_t>(world), 0);
    std::uint64_t total = 0, largest = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      ASSERT_EQ(pieces[i].param, i);
      ASSERT_EQ(pieces[i].offset, 0u);
      ASSERT_EQ(pieces[i].count, optreg::numel_of(m.shapes[i]));
      load[pieces[i].rank] += bytes_of(m, pieces[i]);
      total += bytes_of(m, pieces[i]);
      largest = std::max(largest, bytes_of(m, pieces[i]));
    }
    // The greedy bound: no rank holds more than the mean plus the largest tensor.
    for (std::uint64_t l : load) EXPECT_LE(l, total / static_cast<std::uint64_t>(world) + largest);
  }
  // A split of 0 keeps tensors whole too.
  const auto pieces = optreg::mpi::plan_shards({{10, 10}, {5}}, {DType::Float32, DType::Float32}, 2, false, 0);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_NE(pieces[0].rank, pieces[1].rank);
}

TEST(ShardPlan, BadArgumentsAreUsageErrors) {
  EXPECT_THROW(optreg::mpi::plan_shards({{3}}, {DType::Float32}, 0, false, 1), optreg::UsageError);
  EXPECT_THROW(optreg::mpi::plan_shards({{3}}, {}, 2, false, 1), optreg::UsageError);
}

TEST(ReduceInOrder, FoldsLeftToRightInFloat32ThenDivides) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<Tensor> parts;
  for (int k = 0; k < 5; ++k) {
    Tensor t({257});
    for (std::size_t i = 0; i < t.numel(); ++i) t[i] = normal(rng);
    parts.push_back(t);
  }
  const Tensor mean = optreg::mpi::reduce_in_order(parts);
  const std::vector<double> w{0.1, 0.3, 0.2, 0.25, 0.15};
  const Tensor weighted = optreg::mpi::reduce_in_order(parts, w);
  for (std::size_t i = 0; i < mean.numel(); ++i) {
    float acc = parts[0][i];
    float wacc = static_cast<float>(w[0]) * parts[0][i];
    for (std::size_t k = 1; k < parts.size(); ++k) {
      acc = acc + parts[k][i];
      wacc = wacc + static_cast<float>(w[k]) * parts[k][i];
    }
    ASSERT_EQ(mean[i], acc / 5.0f) << i;
    ASSERT_EQ(weighted[i], wacc) << i;
  }
}

TEST(ReduceInOrder, HalfPrecisionIsSummedInFloat32AndRoundedOnce) {
  std::vector<Tensor> parts;
  for (int k = 0; k < 3; ++k)
    parts.push_back(Tensor({4}, {1.0f + k * 0.00390625f, -2.5f, 1e-3f, 300.0f}).to(DType::BFloat16));
  const Tensor mean = optreg::mpi::reduce_in_order(parts);
  ASSERT_EQ(mean.dtype(), DType::BFloat16);
  for (std::size_t i = 0; i < 4; ++i) {
    float acc = static_cast<float>(parts[0].element(i));
    for (std::size_t k = 1; k < 3; ++k) acc = acc + static_cast<float>(parts[k].element(i));
    const Tensor expect = Tensor({1}, {acc / 3.0f}).to(DType::BFloat16);
    EXPECT_EQ(mean.element(i), expect.element(0)) << i;
  }
}

TEST(ReduceInOrder, MismatchedContributionsAreUsageErrors) {
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [] {
        optreg::mpi::reduce_in_order({Tensor({3}), Tensor({4})});
      },
      "contribution 1 is float32 [4]"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [] {
        optreg::mpi::reduce_in_order({Tensor({3}), Tensor({3})}, {1.0});
      },
      "1 weights for 2 contributions"));
  EXPECT_THROW(optreg::mpi::reduce_in_order({}), optreg::UsageError);
}

}  // namespace
