// Weight averaging (WeightAverage, AveragedWeights): the EMA and SWA rules bit for bit, the steps
// they average after, the scoped swap, checkpoints and their refusals.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/average.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

using optreg::AveragedWeights;
using optreg::AverageSettings;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;
using optreg::WeightAverage;

namespace {

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

/// SGD over two parameters whose gradients follow their values (a trajectory).
struct SgdRun {
  Parameter w{"w", Tensor({2, 3}, {1, -2, 3, 0.5f, -0.25f, 2})};
  Parameter b{"b", Tensor({3}, {0.1f, 0.2f, -0.3f})};
  OptimizerPtr opt = registry().create("sgd", {w, b}, {{"lr", 0.1}, {"momentum", 0.9}});
  void step() {
    for (Parameter* p : {&w, &b}) p->set_grad(optreg_test::gradient_at(p->value()));
    opt->step().clear_grad();
  }
};

AverageSettings ema(double decay, bool warmup = false, std::int64_t every = 1, std::int64_t start = 0) {
  AverageSettings s;
  s.decay = decay;
  s.warmup = warmup;
  s.every = every;
  s.start = start;
  return s;
}

AverageSettings swa() {
  AverageSettings s;
  s.kind = AverageSettings::Kind::Swa;
  return s;
}

}  // namespace

TEST(WeightAverage, EmaFollowsItsRuleBitForBitFromACopyOfTheFirstWeights) {
  SgdRun r;
  WeightAverage avg(*r.opt, ema(0.9));
  std::vector<float> expected;
  for (int s = 0; s < 6; ++s) {
    r.step();
    const std::vector<float> w = r.w.value().to_vector();
    if (s == 0) {
      expected = w;
    } else {
      for (std::size_t i = 0; i < w.size(); ++i)
        expected[i] = 0.9f * expected[i] + static_cast<float>(1.0 - 0.9) * w[i];
    }
  }
  EXPECT_EQ(avg.steps(), 6);
  EXPECT_EQ(avg.updates(), 6);
  const std::vector<float> got = avg.averages()[0].to_vector();
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(optreg::float_bits(got[i]), optreg::float_bits(expected[i])) << "element " << i;
}

TEST(WeightAverage, EmaWarmUpUsesTheNumUpdatesDecay) {
  SgdRun r;
  WeightAverage avg(*r.opt, ema(0.99, true));
  std::vector<float> expected;
  for (int n = 0; n < 5; ++n) {
    r.step();
    const std::vector<float> w = r.b.value().to_vector();
    if (n == 0) {
      expected = w;
      continue;
    }
    const double d = std::min(0.99, (1.0 + n) / (10.0 + n));
    for (std::size_t i = 0; i < w.size(); ++i) {
      expected[i] = static_cast<float>(d) * expected[i] + static_cast<float>(1.0 - d) * w[i];
    }
  }
  const std::vector<float> got = avg.averages()[1].to_vector();
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(optreg::float_bits(got[i]), optreg::float_bits(expected[i])) << "element " << i;
}

TEST(WeightAverage, SwaIsTheRunningUniformMeanOfTheWeightsAfterEachStep) {
  SgdRun r;
  WeightAverage avg(*r.opt, swa());
  std::vector<float> expected;
  for (int n = 0; n < 7; ++n) {
    r.step();
    const std::vector<float> w = r.w.value().to_vector();
    if (n == 0) {
      expected = w;
      continue;
    }
    for (std::size_t i = 0; i < w.size(); ++i)
      expected[i] = expected[i] + (w[i] - expected[i]) / static_cast<float>(n + 1);
  }
  const std::vector<float> got = avg.averages()[0].to_vector();
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(optreg::float_bits(got[i]), optreg::float_bits(expected[i])) << "element " << i;
}

TEST(WeightAverage, EveryAndStartChooseTheStepsItAveragesAfter) {
  SgdRun r;
  AverageSettings s = swa();
  s.every = 3;
  s.start = 2;
  WeightAverage avg(*r.opt, s);
  std::vector<std::vector<float>> seen;
  for (int step = 1; step <= 9; ++step) {
    r.step();
    if (step == 2 || step == 5 || step == 8) seen.push_back(r.b.value().to_vector());
  }
  EXPECT_EQ(avg.steps(), 9);
  ASSERT_EQ(avg.updates(), 3);
  std::vector<float> expected = seen[0];
  for (std::size_t n = 1; n < seen.size(); ++n) {
    for (std::size_t i = 0; i < expected.size(); ++i) {
      expected[i] = expected[i] + (seen[n][i] - expected[i]) / static_cast<float>(n + 1);
    }
  }
  const std::vector<float> got = avg.averages()[1].to_vector();
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(optreg::float_bits(got[i]), optreg::float_bits(expected[i])) << "element " << i;
}

TEST(AveragedWeights, PutsTheAverageInPlaceAndTheTrainedWeightsBackBitForBit) {
  SgdRun r;
  WeightAverage avg(*r.opt, ema(0.5));
  {
    AveragedWeights none(avg);  // no update yet: nothing to put in place
    EXPECT_FALSE(none.active());
  }
  for (int s = 0; s < 4; ++s) r.step();
  const Tensor trained = r.w.value().clone();
  {
    AveragedWeights swap(avg);
    ASSERT_TRUE(swap.active());
    EXPECT_TRUE(optreg_test::same_bits(r.w.value(), avg.averages()[0]));
    EXPECT_FALSE(optreg_test::same_bits(r.w.value(), trained));
  }
  EXPECT_TRUE(optreg_test::same_bits(r.w.value(), trained));
}

TEST(AveragedWeights, AParameterReplacedByAnotherShapeIsRefusedBeforeAnythingChanges) {
  SgdRun r;
  WeightAverage avg(*r.opt, ema(0.5));
  for (int s = 0; s < 2; ++s) r.step();
  const Tensor w = r.w.value().clone();
  r.b.value() = Tensor({4}, 0.0f);  // replaced behind the optimizer's back
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { AveragedWeights swap(avg); }, "parameter 'b' (position 1): its value is float32 of shape [4], but its "
                                          "average has shape [3]"));
  EXPECT_TRUE(optreg_test::same_bits(r.w.value(), w)) << "the first parameter was left as it was";
}

TEST(AveragedWeights, HalfPrecisionParametersTakeTheFloat32AverageRoundedToNearest) {
  Parameter w{"w", Tensor({4}, {1.0f, 2.0f, 3.0f, 4.0f}).to(optreg::DType::BFloat16)};
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.01}});
  WeightAverage avg(*opt, ema(0.75));
  ASSERT_EQ(avg.averages()[0].dtype(), optreg::DType::Float32);
  for (int s = 0; s < 3; ++s) {
    w.set_grad(Tensor({4}, {1.0f, -1.0f, 0.5f, 0.25f}).to(optreg::DType::BFloat16));
    opt->step().clear_grad();
  }
  const Tensor trained = w.value().clone();
  {
    AveragedWeights swap(avg);
    EXPECT_TRUE(optreg_test::same_bits(w.value(), avg.averages()[0].to(optreg::DType::BFloat16)));
  }
  EXPECT_TRUE(optreg_test::same_bits(w.value(), trained));
}

TEST(WeightAverage, ACheckpointRoundTripContinuesWithTheSameBits) {
  optreg_test::TempDir dir;
  SgdRun whole;
  WeightAverage whole_avg(*whole.opt, ema(0.8, true, 2, 1));
  for (int s = 0; s < 11; ++s) whole.step();

  SgdRun first;
  WeightAverage first_avg(*first.opt, ema(0.8, true, 2, 1));
  for (int s = 0; s < 5; ++s) first.step();
  optreg::save_optimizer(dir / "a.ckpt", *first.opt, nullptr, {&first_avg});

  SgdRun second;
  WeightAverage second_avg(*second.opt, ema(0.8, true, 2, 1));
  optreg::LoadOptions load;
  load.components = {&second_avg};
  optreg::load_optimizer(dir / "a.ckpt", *second.opt, load);
  EXPECT_EQ(second_avg.steps(), 5);
  EXPECT_EQ(second_avg.updates(), first_avg.updates());
  for (int s = 0; s < 6; ++s) second.step();
  EXPECT_EQ(second_avg.updates(), whole_avg.updates());
  for (std::size_t i = 0; i < 2; ++i)
    EXPECT_TRUE(optreg_test::same_bits(second_avg.averages()[i], whole_avg.averages()[i]));
}

TEST(WeightAverage, ALoadOfOtherSettingsOrWithoutTheSectionChangesNothing) {
  optreg_test::TempDir dir;
  SgdRun saved;
  WeightAverage saved_avg(*saved.opt, ema(0.9));
  for (int s = 0; s < 3; ++s) saved.step();
  optreg::save_optimizer(dir / "avg.ckpt", *saved.opt, nullptr, {&saved_avg});
  optreg::save_optimizer(dir / "plain.ckpt", *saved.opt);

  SgdRun r;
  WeightAverage other(*r.opt, ema(0.99));
  const Tensor before = r.w.value().clone();
  optreg::LoadOptions load;
  load.components = {&other};
  EXPECT_TRUE(optreg_test::throws_with<optreg::CheckpointError>(
      [&] { optreg::load_optimizer(dir / "avg.ckpt", *r.opt, load); },
      "section 'average': it holds an average ema with decay 0.9, every 1 "
      "steps from step 0, but this one is an "
      "average ema with decay 0.99"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::CheckpointError>(
      [&] { optreg::load_optimizer(dir / "plain.ckpt", *r.opt, load); },
      "it holds no section 'average', which this load asks for"));
  EXPECT_TRUE(optreg_test::same_bits(r.w.value(), before));
  EXPECT_EQ(other.steps(), 0);
}

TEST(WeightAverage, BadSettingsAndParametersAddedLaterAreRefused) {
  SgdRun r;
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([&] { WeightAverage a(*r.opt, ema(1.0)); },
                                                            "option 'decay' = 1.0 must lie in [0, 1)"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([&] { WeightAverage a(*r.opt, ema(0.9, false, 0)); },
                                                            "option 'every' = 0 must lie in [1, 2^53]"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([] { optreg::average_kind("mean"); },
                                                            "option 'kind' = \"mean\" is not one of: ema, swa"));
  WeightAverage avg(*r.opt, ema(0.9));
  Parameter late{"late", Tensor({2}, {1, 2})};
  r.opt->add_param_group({late});
  const Tensor before = r.w.value().clone();
  r.w.set_grad(Tensor({2, 3}, 1.0f));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>([&] { r.opt->step(); },
                                                           "optimizer 'sgd' has 3 parameters, but it "
                                                           "averages the 2 it had when it was made"));
  EXPECT_TRUE(optreg_test::same_bits(r.w.value(), before)) << "the refused step changed nothing";
  EXPECT_EQ(avg.steps(), 0);
}
