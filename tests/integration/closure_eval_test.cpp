// The optimizer flags of ABI 3: step(closure) for optimizers that re-evaluate the loss,
// evaluation weights (optreg::EvalWeights) with schedule-free AdamW, and matrices-only
// optimizers.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;

namespace {

/// A backtracking descent on one parameter group: halves its step until the closure's loss
/// falls, counting the evaluations.
class Backtracking final : public optreg::Optimizer {
 public:
  int evaluations = 0;

 protected:
  void update_group(const optreg::Options& /*options*/, const std::vector<Slot>& /*slots*/) override {
    throw std::logic_error("update_group() of a closure optimizer");
  }
  void closure_update(const optreg::Options& /*options*/, const std::vector<Slot>& slots, double loss,
                      const optreg::Closure& closure) override {
    std::vector<std::vector<float>> start, grad;
    for (const Slot& s : slots) {
      start.push_back(s.param->value().to_vector());
      grad.push_back(s.param->grad().to_vector());
    }
    for (float t = 1.0F; t > 1e-6F; t /= 2) {
      for (std::size_t k = 0; k < slots.size(); ++k) {
        Tensor& v = slots[k].param->value();
        for (std::size_t i = 0; i < v.numel(); ++i) v[i] = start[k][i] - t * grad[k][i];
      }
      ++evaluations;
      if (closure() < loss) return;
    }
  }
};

/// The same class without closure_update(): declaring the flag is not enough.
class ClaimsAClosure final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& /*options*/, const std::vector<Slot>& /*slots*/) override {}
};

/// Plain descent, which steps matrices only.
class MatrixDescent final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& /*options*/, const std::vector<Slot>& /*slots*/) override {}
};

std::vector<optreg::ParamGroupSpec> one_group(std::vector<Parameter> params) {
  std::vector<optreg::ParamGroupSpec> groups(1);
  groups[0].params = std::move(params);
  return groups;
}

optreg::OptimizerInfo info(const char* name, std::uint32_t flags) {
  optreg::OptimizerInfo i{name, "1.0.0", std::make_shared<const optreg::Schema>()};
  i.flags = flags;
  return i;
}

/// f(w) = sum (w_i - 3)^2, its gradient set into w.
double quadratic(Parameter& w, int& calls) {
  ++calls;
  double loss = 0;
  Tensor g(w.value().shape());
  for (std::size_t i = 0; i < w.value().numel(); ++i) {
    const double d = w.value()[i] - 3.0;
    loss += d * d;
    g[i] = static_cast<float>(2 * d);
  }
  w.set_grad(g);
  return loss;
}

/// Optimizers from every in-tree plugin.
class Flags : public ::testing::Test {
 protected:
  static const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }
};

}  // namespace

TEST(ClosureStep, StepWithoutAClosureIsRefusedNamingTheOptimizer) {
  Parameter w("w", Tensor({2}, {0, 0}));
  Backtracking opt;
  opt.setup(info("backtracking", optreg::abi::kOptimizerNeedsClosure), {}, one_group({w}));
  w.set_grad(Tensor({2}, {1, 1}));
  const auto e = optreg_test::message_of<optreg::UsageError>([&] { opt.step(); });
  EXPECT_EQ(e, "optimizer 'backtracking' re-evaluates the loss while it steps: call step(closure) with a closure that "
               "computes the loss and the gradients");
  EXPECT_EQ(w.value().to_vector(), (std::vector<float>{0, 0}));
}

TEST(ClosureStep, TheOptimizerCallsTheClosureAsOftenAsItsAlgorithmNeedsAndReturnsTheFirstLoss) {
  Parameter w("w", Tensor({2}, {0, 1}));
  Backtracking opt;
  opt.setup(info("backtracking", optreg::abi::kOptimizerNeedsClosure), {}, one_group({w}));
  int calls = 0;
  const double loss = opt.step([&] { return quadratic(w, calls); });
  EXPECT_DOUBLE_EQ(loss, 9.0 + 4.0);
  EXPECT_EQ(calls, 1 + opt.evaluations);
  EXPECT_GT(opt.evaluations, 1);  // the full step overshoots: 0 - 1 * (-6) = 6
  int check = 0;
  EXPECT_LT(quadratic(w, check), loss);
}

TEST(ClosureStep, AnExceptionOfTheClosureReachesTheHostAsItWasThrown) {
  Parameter w("w", Tensor({1}, {0}));
  Backtracking opt;
  opt.setup(info("backtracking", optreg::abi::kOptimizerNeedsClosure), {}, one_group({w}));
  struct HostFailure {
    int code;
  };
  int calls = 0;
  try {
    opt.step([&]() -> double {
      if (calls == 1) throw HostFailure{7};
      return quadratic(w, calls);
    });
    ADD_FAILURE() << "no exception";
  } catch (const HostFailure& f) {
    EXPECT_EQ(f.code, 7);
  }
  // The first evaluation failing leaves everything as it was.
  Parameter v("v", Tensor({1}, {5}));
  Backtracking other;
  other.setup(info("backtracking", optreg::abi::kOptimizerNeedsClosure), {}, one_group({v}));
  EXPECT_THROW(other.step([]() -> double { throw std::runtime_error("no data"); }), std::runtime_error);
  EXPECT_EQ(v.value()[0], 5.0F);
  EXPECT_EQ(other.evaluations, 0);
}

TEST(ClosureStep, AClosureOptimizerTakesOneParamGroup) {
  Parameter a("a", Tensor({1}, {0}));
  Parameter b("b", Tensor({1}, {0}));
  Backtracking opt;
  opt.setup(info("backtracking", optreg::abi::kOptimizerNeedsClosure), {}, one_group({a}));
  const auto e = optreg_test::message_of<optreg::UsageError>([&] { opt.add_param_group({b}); });
  EXPECT_EQ(e, "optimizer 'backtracking', param group 1: optimizer 'backtracking' steps all its parameters as one vector "
               "with one closure, so it takes one param group");
  EXPECT_EQ(opt.param_groups().size(), 1U);
}

TEST(ClosureStep, AFlagWithoutItsOverrideIsThePluginsFault) {
  Parameter w("w", Tensor({1}, {0}));
  ClaimsAClosure opt;
  opt.setup(info("claims", optreg::abi::kOptimizerNeedsClosure), {}, one_group({w}));
  int calls = 0;
  const auto e = optreg_test::message_of<optreg::PluginError>([&] { opt.step([&] { return quadratic(w, calls); }); });
  EXPECT_NE(e.find("optimizer 'claims' declares that it steps with a closure, but implements no closure_update()"),
            std::string::npos)
      << e;
}

TEST_F(Flags, StepWithAClosureOnAnOrdinaryOptimizerEvaluatesOnceAndSteps) {
  Parameter w("w", Tensor({2}, {0, 1}));
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.25}});
  int calls = 0;
  EXPECT_DOUBLE_EQ(opt->step([&] { return quadratic(w, calls); }), 13.0);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(w.value().to_vector(), (std::vector<float>{1.5F, 2.0F}));  // w - 0.25 * 2 (w - 3)
  EXPECT_FALSE(opt->needs_closure());
  EXPECT_FALSE(opt->has_eval_weights());
}

TEST(MatricesOnly, AParameterThatIsNoMatrixIsRefusedNamingItAndItsShape) {
  Parameter m("m", Tensor({2, 2}));
  Parameter bias("bias", Tensor({2}));
  MatrixDescent opt;
  const auto e = optreg_test::message_of<optreg::UsageError>(
      [&] { opt.setup(info("matrix_descent", optreg::abi::kOptimizerMatricesOnly), {}, one_group({m, bias})); });
  EXPECT_EQ(e, "optimizer 'matrix_descent', param group 0: parameter 'bias' (position 1) has shape [2], but optimizer "
               "'matrix_descent' steps matrices (2-dimensional parameters) only");
}

namespace {

/// Steps schedule-free AdamW a few times over `w` with gradients that depend on the step.
void train(optreg::Optimizer& opt, std::vector<Parameter>& ws, int steps) {
  for (int s = 0; s < steps; ++s) {
    for (Parameter& w : ws) {
      Tensor g(w.value().shape());
      for (std::size_t i = 0; i < g.numel(); ++i) g[i] = std::sin(0.7F * static_cast<float>(s + 1) + static_cast<float>(i));
      w.set_grad(g.to(w.value().dtype()));
    }
    opt.step().clear_grad();
  }
}

}  // namespace

TEST_F(Flags, EvalWeightsPutTheScheduleFreeAverageInPlaceAndTheTrainingWeightsBackBitForBit) {
  std::vector<Parameter> ws = {Parameter("w", Tensor({3}, {0.5F, -1.0F, 2.0F})), Parameter("frozen", Tensor({2}, {4, 5}))};
  OptimizerPtr opt = registry().create("schedulefree_adamw", {ws[0], ws[1]}, {{"lr", 0.05}, {"betas", std::vector<double>{0.8, 0.99}}});
  EXPECT_TRUE(opt->has_eval_weights());
  EXPECT_EQ(optreg::optimizer_flag_names(registry().find("schedulefree_adamw")->flags),
            (std::vector<std::string>{"eval_weights"}));
  std::vector<Parameter> trained = {ws[0]};
  train(*opt, trained, 5);
  const std::vector<float> y = ws[0].value().to_vector();
  const std::vector<float> z = opt->state(ws[0]).tensor("z").to_vector();
  {
    optreg::EvalWeights eval(*opt);
    EXPECT_TRUE(eval.active());
    const float weight = static_cast<float>(1.0 - 1.0 / 0.8);  // -0.25: y + weight (z - y)
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(ws[0].value()[i], y[i] + weight * (z[i] - y[i])) << i;
    EXPECT_NE(ws[0].value().to_vector(), y);
    // A parameter that never took a step is evaluated at its own value.
    EXPECT_EQ(ws[1].value().to_vector(), (std::vector<float>{4, 5}));
  }
  EXPECT_EQ(ws[0].value().to_vector(), y);
  EXPECT_EQ(opt->state(ws[0]).tensor("z").to_vector(), z);
}

TEST_F(Flags, EvalWeightsOfAnOptimizerWithoutThemChangeNothing) {
  Parameter w("w", Tensor({2}, {1, 2}));
  OptimizerPtr opt = registry().create("adam", {w}, {{"lr", 0.1}});
  std::vector<Parameter> ws = {w};
  train(*opt, ws, 2);
  const std::vector<float> before = w.value().to_vector();
  optreg::EvalWeights eval(*opt);
  EXPECT_FALSE(eval.active());
  EXPECT_EQ(w.value().to_vector(), before);
}

TEST_F(Flags, EvalWeightsOfBfloat16ParametersComeFromTheirMasterWeightsRoundedToNearest) {
  std::vector<Parameter> ws = {Parameter("w", Tensor({4}, {0.5F, -1.0F, 2.0F, 3.0F}).to(optreg::DType::BFloat16))};
  OptimizerPtr opt = registry().create("schedulefree_adamw", {ws[0]}, {{"lr", 0.05}, {"master_weights", true}});
  train(*opt, ws, 4);
  const Tensor y = opt->state(ws[0]).tensor("master_weight").clone();
  const Tensor z = opt->state(ws[0]).tensor("z").clone();
  const Tensor trained = ws[0].value().clone();
  {
    optreg::EvalWeights eval(*opt);
    const float weight = static_cast<float>(1.0 - 1.0 / 0.9);
    for (std::size_t i = 0; i < 4; ++i) {
      const float x = y[i] + weight * (z[i] - y[i]);
      EXPECT_EQ(ws[0].value().element(i), Tensor({1}, {x}).to(optreg::DType::BFloat16).element(0)) << i;
    }
    EXPECT_EQ(opt->state(ws[0]).tensor("master_weight").to_vector(), y.to_vector());  // the master is untouched
  }
  EXPECT_EQ(std::memcmp(ws[0].value().raw(), trained.raw(), trained.nbytes()), 0);
}

TEST_F(Flags, ScheduleFreeRefusesBeta1ZeroWhoseAverageCannotBeRecovered) {
  Parameter w("w", Tensor({1}, {1}));
  const auto e = optreg_test::message_of<optreg::OptionError>(
      [&] { registry().create("schedulefree_adamw", {w}, {{"betas", std::vector<double>{0.0, 0.999}}}); });
  EXPECT_NE(e.find("option 'betas' needs beta1 > 0"), std::string::npos) << e;
}
