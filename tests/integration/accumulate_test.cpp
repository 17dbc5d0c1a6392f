// Gradient accumulation (GradientAccumulator): the reduced gradient bit for bit, parameters without
// gradients, half precision, checkpoints taken mid-accumulation and their refusals.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/accumulate.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

using optreg::AccumulateSettings;
using optreg::GradientAccumulator;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;

namespace {

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

AccumulateSettings settings(std::int64_t k, AccumulateSettings::Reduce reduce = AccumulateSettings::Reduce::Mean) {
  AccumulateSettings s;
  s.steps = k;
  s.reduce = reduce;
  return s;
}

/// The gradient of micro-batch `m` for a tensor of `n` elements: values that do not sum exactly.
Tensor micro_grad(std::size_t n, int m) {
  Tensor g({static_cast<std::int64_t>(n)});
  for (std::size_t i = 0; i < n; ++i)
    g[i] = 0.1f * static_cast<float>(m + 1) + 0.37f * static_cast<float>(i) - 0.013f * static_cast<float>(m * i);
  return g;
}

/// Adam over one parameter, its gradients accumulated 3 at a time from its value.
struct AdamRun {
  Parameter w{"w", Tensor({5}, {1, -2, 3, 0.5f, -0.25f})};
  OptimizerPtr opt = registry().create("adam", {w}, {{"lr", 0.05}});
  GradientAccumulator acc{opt->parameters(), settings(3)};
  void micro() {
    w.set_grad(optreg_test::gradient_at(w.value()));
    Tensor g = w.grad();
    for (std::size_t i = 0; i < g.numel(); ++i) g[i] += 0.01f * static_cast<float>(acc.pending());
    if (acc.accumulate()) opt->step().clear_grad();
  }
};

}  // namespace

TEST(GradientAccumulator, MeanIsTheInOrderFloat32SumDividedByK) {
  Parameter w{"w", Tensor({7}, 0.0f)};
  GradientAccumulator acc({w}, settings(4));
  std::vector<float> sum(7, 0.0f);
  for (int m = 0; m < 4; ++m) {
    const Tensor g = micro_grad(7, m);
    for (std::size_t i = 0; i < 7; ++i) sum[i] = m == 0 ? g[i] : sum[i] + g[i];
    w.set_grad(g.clone());
    EXPECT_EQ(acc.accumulate(), m == 3) << "micro-batch " << m;
    if (m < 3) {
      EXPECT_FALSE(w.has_grad()) << "a taken gradient is cleared";
      EXPECT_EQ(acc.pending(), m + 1);
    }
  }
  ASSERT_TRUE(w.has_grad());
  EXPECT_EQ(acc.pending(), 0);
  for (std::size_t i = 0; i < 7; ++i) EXPECT_EQ(w.grad()[i], sum[i] / 4.0f) << "element " << i;
}

TEST(GradientAccumulator, SumLeavesTheSumAndAParameterWithoutAnyGradientGetsNone) {
  Parameter a{"a", Tensor({3}, 0.0f)};
  Parameter b{"b", Tensor({3}, 0.0f)};
  Parameter c{"c", Tensor({3}, 0.0f)};
  GradientAccumulator acc({a, b, c}, settings(2, AccumulateSettings::Reduce::Sum));
  a.set_grad(Tensor({3}, {1, 2, 3}));
  b.set_grad(Tensor({3}, {5, 5, 5}));
  EXPECT_FALSE(acc.accumulate());
  a.set_grad(Tensor({3}, {0.5f, 0.25f, 0.125f}));
  EXPECT_TRUE(acc.accumulate());
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{1.5f, 2.25f, 3.125f}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{5, 5, 5})) << "a micro-batch without a gradient adds nothing";
  EXPECT_FALSE(c.has_grad());
  // The next accumulation starts from nothing.
  a.clear_grad();
  b.clear_grad();
  a.set_grad(Tensor({3}, 1.0f));
  EXPECT_FALSE(acc.accumulate());
  a.set_grad(Tensor({3}, 1.0f));
  EXPECT_TRUE(acc.accumulate());
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{2, 2, 2}));
  EXPECT_FALSE(b.has_grad());
}

TEST(GradientAccumulator, HalfPrecisionGradientsAreSummedInFloat32AndRoundedOnce) {
  const auto bf = optreg::DType::BFloat16;
  Parameter w{"w", Tensor({2}, 0.0f).to(bf)};
  GradientAccumulator acc({w}, settings(3, AccumulateSettings::Reduce::Sum));
  // 1 + 2^-9 three times: bfloat16 sums would round each partial sum back to 1, 2, 3.
  for (int m = 0; m < 3; ++m) {
    w.set_grad(Tensor({2}, {1.0f, 1.0f / 512}).to(bf));
    acc.accumulate();
  }
  const Tensor expected = Tensor({2}, {3.0f, 3.0f / 512}).to(bf);
  EXPECT_TRUE(optreg_test::same_bits(w.grad(), expected));
}

TEST(GradientAccumulator, ACheckpointTakenMidAccumulationResumesWithTheSameBits) {
  optreg_test::TempDir dir;
  AdamRun whole;
  for (int m = 0; m < 13; ++m) whole.micro();

  AdamRun first;
  for (int m = 0; m < 8; ++m) first.micro();  // two updates, and two micro-batches taken
  ASSERT_EQ(first.acc.pending(), 2);
  optreg::save_optimizer(dir / "mid.ckpt", *first.opt, nullptr, {&first.acc});

  AdamRun second;
  optreg::LoadOptions load;
  load.components = {&second.acc};
  optreg::load_optimizer(dir / "mid.ckpt", *second.opt, load);
  EXPECT_EQ(second.acc.pending(), 2);
  for (int m = 0; m < 5; ++m) second.micro();
  EXPECT_TRUE(optreg_test::same_bits(optreg_test::snapshot(*second.opt), optreg_test::snapshot(*whole.opt)));
  EXPECT_EQ(second.acc.pending(), whole.acc.pending());
}

TEST(GradientAccumulator, ALoadOfAnotherKOrAForgedSectionChangesNothing) {
  optreg_test::TempDir dir;
  AdamRun saved;
  for (int m = 0; m < 2; ++m) saved.micro();
  optreg::save_optimizer(dir / "mid.ckpt", *saved.opt, nullptr, {&saved.acc});

  Parameter w{"w", Tensor({5}, 0.0f)};
  OptimizerPtr opt = registry().create("adam", {w}, {{"lr", 0.05}});
  GradientAccumulator four({w}, settings(4));
  optreg::LoadOptions load;
  load.components = {&four};
  EXPECT_TRUE(optreg_test::throws_with<optreg::CheckpointError>(
      [&] { optreg::load_optimizer(dir / "mid.ckpt", *opt, load); },
      "section 'accumulate': it accumulates 3 micro-batches by 'mean', but "
      "this one 4 by 'mean'"));
  EXPECT_TRUE(optreg_test::same_bits(w.value(), Tensor({5}, 0.0f)));

  optreg::Checkpoint c = optreg::read_checkpoint(dir / "mid.ckpt");
  GradientAccumulator three({w}, settings(3));
  ASSERT_EQ(c.sections.size(), 1U);
  c.sections[0].scalars["pending"] = optreg::Value(std::int64_t{3});
  EXPECT_TRUE(optreg_test::throws_with<optreg::StateDictError>([&] { three.check_section(c.sections[0]); },
                                                               "'pending' = 3 lies outside [0, 2]"));
  c.sections[0].scalars["pending"] = optreg::Value(std::int64_t{2});
  c.sections[0].tensors[0].value = Tensor({4}, 0.0f);
  EXPECT_TRUE(optreg_test::throws_with<optreg::StateDictError>(
      [&] { three.check_section(c.sections[0]); },
      "the gradient sum of 'w' is float32 of shape [4], but parameter id 0 is "
      "'w', summed in float32 of shape [5]"));
  c.sections[0].tensors.clear();
  EXPECT_TRUE(optreg_test::throws_with<optreg::StateDictError>([&] { three.check_section(c.sections[0]); },
                                                               "it holds no gradient sum for parameter id 0 ('w')"));
  EXPECT_EQ(three.pending(), 0);
}

TEST(GradientAccumulator, BadSettingsAndAMisfitGradientAreRefusedBeforeAnythingChanges) {
  Parameter w{"w", Tensor({3}, 0.0f)};
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([&] { GradientAccumulator a({w}, settings(0)); },
                                                            "option 'steps' = 0 must lie in [1, 2^20]"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([] { optreg::accumulate_reduce("max"); },
                                                            "option 'reduce' = \"max\" is not one of: mean, sum"));
  Parameter v{"v", Tensor({3}, 0.0f)};
  GradientAccumulator acc({v, w}, settings(2));
  v.set_grad(Tensor({3}, 1.0f));
  w.set_grad(Tensor({3}, 1.0f));
  w.grad() = Tensor({2}, 1.0f);  // replaced behind the parameter's back
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { acc.accumulate(); },
      "parameter 'w' (position 1): its gradient is float32 of shape [2] and its value float32, but it sums "
      "gradients of its value's dtype and of shape [3] into float32"));
  // A value replaced by a float64 one (with a float64 gradient) is refused before any sum changes.
  w.grad() = Tensor({3}, 1.0f);
  w.value() = Tensor({3}, 0.0f).to(optreg::DType::Float64);
  w.grad() = Tensor({3}, 1.0f).to(optreg::DType::Float64);
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { acc.accumulate(); }, "its gradient is float64 of shape [3] and its value float64, but it sums gradients "
                                 "of its value's dtype and of shape [3] into float32"));
  EXPECT_EQ(acc.pending(), 0);
  EXPECT_TRUE(v.has_grad()) << "nothing was taken";
}
