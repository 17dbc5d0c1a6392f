// Semantics of the Optimizer base, exercised through the in-tree sgd and adam plugins.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/registry.hpp>

using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::Tensor;

namespace {

class OptimizerBase : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new optreg::Registry();
    registry_->load_file(OPTREG_TEST_SGD_PLUGIN);
    registry_->load_file(OPTREG_TEST_ADAM_PLUGIN);
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
  }
  static optreg::Registry& registry() { return *registry_; }

  static Parameter param(const std::string& name, std::vector<float> values) {
    const auto n = static_cast<std::int64_t>(values.size());
    return Parameter(name, Tensor({n}, values));
  }

 private:
  static optreg::Registry* registry_;
};

optreg::Registry* OptimizerBase::registry_ = nullptr;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const optreg::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_F(OptimizerBase, StepReturnsTheOptimizerSoClearGradChains) {
  Parameter w = param("w", {1, 2});
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.5}});
  w.accumulate_grad(Tensor({2}, {2, 4}));
  optreg::Optimizer& same = opt->step().clear_grad();
  EXPECT_EQ(&same, opt.get());
  EXPECT_EQ(w.value().to_vector(), (std::vector<float>{0, 0}));
  EXPECT_FALSE(w.has_grad());
}

TEST_F(OptimizerBase, SgdWithMomentumMatchesTheUpdateRuleByHand) {
  Parameter w = param("w", {1.0F});
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.1}, {"momentum", 0.5}});
  w.accumulate_grad(Tensor({1}, {1.0F}));
  opt->step().clear_grad();  // buf = 1, w = 1 - 0.1
  w.accumulate_grad(Tensor({1}, {1.0F}));
  opt->step().clear_grad();  // buf = 0.5 + 1 = 1.5, w = 0.9 - 0.15
  EXPECT_FLOAT_EQ(w.value()[0], 0.75F);
  EXPECT_FLOAT_EQ(opt->state(w).tensor("momentum_buffer")[0], 1.5F);
  EXPECT_EQ(std::get<std::int64_t>(opt->state(w).scalar("momentum_updates")), 2);
}

TEST_F(OptimizerBase, ParameterWithoutGradientIsSkippedAndItsStateUntouched) {
  Parameter a = param("a", {1, 1});
  Parameter frozen = param("frozen", {5, 5});
  OptimizerPtr opt = registry().create("adam", {a, frozen}, {{"lr", 0.1}});
  a.accumulate_grad(Tensor({2}, {1, -1}));
  opt->step();
  EXPECT_EQ(frozen.value().to_vector(), (std::vector<float>{5, 5}));
  EXPECT_EQ(std::get<std::int64_t>(opt->state(frozen).scalar("step")), 0);
  EXPECT_EQ(opt->state(frozen).tensor("exp_avg").to_vector(), (std::vector<float>{0, 0}));
  EXPECT_EQ(std::get<std::int64_t>(opt->state(a).scalar("step")), 1);
  EXPECT_NE(a.value()[0], 1.0F);
}

TEST_F(OptimizerBase, StateIsCreatedEagerlyWhenAGroupIsAdded) {
  Parameter w("w", Tensor({2, 3}));
  OptimizerPtr opt = registry().create("adam", {w}, {{"amsgrad", true}});
  const optreg::ParamState& s = opt->state(w);
  ASSERT_EQ(s.num_tensors(), 3U);
  EXPECT_EQ(s.tensor("exp_avg").shape(), (optreg::Shape{2, 3}));
  EXPECT_EQ(s.tensor("max_exp_avg_sq").shape(), (optreg::Shape{2, 3}));
  Parameter later("later", Tensor({4}));
  opt->add_param_group({later}, {{"lr", 0.01}});
  EXPECT_EQ(opt->state(later).tensor("exp_avg_sq").shape(), (optreg::Shape{4}));
}

TEST_F(OptimizerBase, GroupOptionsFallBackToTheOptimizerDefaults) {
  Parameter a = param("a", {1});
  Parameter b = param("b", {1});
  OptimizerPtr opt = registry().create(
      "sgd", std::vector<ParamGroupSpec>{{{a}, {}}, {{b}, {{"lr", 0.01}}}}, {{"lr", 0.1}, {"momentum", 0.9}});
  ASSERT_EQ(opt->param_groups().size(), 2U);
  EXPECT_EQ(opt->param_groups()[0].option("lr").as_float(), 0.1);
  EXPECT_EQ(opt->param_groups()[1].option("lr").as_float(), 0.01);
  EXPECT_EQ(opt->param_groups()[1].option("momentum").as_float(), 0.9);
  EXPECT_EQ(opt->param_groups()[1].option("nesterov").as_bool(), false);
  EXPECT_EQ(opt->defaults().at("lr").as_float(), 0.1);
}

TEST_F(OptimizerBase, LrChangeTakesEffectAtTheNextStep) {
  Parameter w = param("w", {1});
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.5}});
  w.accumulate_grad(Tensor({1}, {1.0F}));
  opt->step();
  EXPECT_FLOAT_EQ(w.value()[0], 0.5F);
  opt->set_option(0, "lr", 0.0);  // freezing by lr = 0
  opt->step();
  EXPECT_FLOAT_EQ(w.value()[0], 0.5F);
  opt->set_option("lr", 0.25);
  opt->step();
  EXPECT_FLOAT_EQ(w.value()[0], 0.25F);
}

TEST_F(OptimizerBase, ParametersHaveIdsByFirstAppearanceAcrossGroups) {
  Parameter a = param("a", {1});
  Parameter b = param("b", {1});
  Parameter c = param("c", {1});
  OptimizerPtr opt = registry().create("sgd", std::vector<ParamGroupSpec>{{{b, a}, {}}, {{c}, {}}});
  const auto all = opt->parameters();
  ASSERT_EQ(all.size(), 3U);
  EXPECT_TRUE(all[0].same_as(b));
  EXPECT_TRUE(all[1].same_as(a));
  EXPECT_TRUE(all[2].same_as(c));
}

TEST_F(OptimizerBase, ParameterTwiceInOneGroupIsAnError) {
  Parameter a = param("a", {1});
  EXPECT_EQ(error_of([&] { registry().create("sgd", {a, a}); }),
            "optimizer 'sgd', param group 0: parameter 'a' (position 1) appears twice in the group (first at position 0)");
}

TEST_F(OptimizerBase, ParameterInTwoGroupsIsAnErrorAndTheOptimizerIsUnchanged) {
  Parameter a = param("a", {1});
  Parameter b = param("b", {1});
  OptimizerPtr opt = registry().create("sgd", {a});
  EXPECT_EQ(error_of([&] { opt->add_param_group({b, a}); }),
            "optimizer 'sgd', param group 1: parameter 'a' (position 1) is already in param group 0");
  EXPECT_EQ(opt->param_groups().size(), 1U);
  EXPECT_THROW(opt->state(b), optreg::UsageError);
}

TEST_F(OptimizerBase, EmptyGroupIsAnError) {
  EXPECT_EQ(error_of([&] { registry().create("adam", std::vector<Parameter>{}); }),
            "optimizer 'adam', param group 0 has no parameters");
}

TEST_F(OptimizerBase, BadGroupOptionNamesTheGroup) {
  Parameter a = param("a", {1});
  Parameter b = param("b", {1});
  const std::string m = error_of([&] {
    registry().create("sgd", std::vector<ParamGroupSpec>{{{a}, {}}, {{b}, {{"lr", -0.1}}}});
  });
  EXPECT_EQ(m, "optimizer 'sgd', param group 1: option 'lr' = -0.1 is out of range: the value must be in "
               "[0.0, inf) (learning rate)");
}

TEST_F(OptimizerBase, SetOptionRejectsABadValueAndLeavesTheGroupUnchanged) {
  Parameter a = param("a", {1});
  OptimizerPtr opt = registry().create("sgd", {a}, {{"lr", 0.1}, {"momentum", 0.9}, {"nesterov", true}});
  EXPECT_THROW(opt->set_option(0, "lr", -1.0), optreg::OptionError);
  EXPECT_EQ(error_of([&] { opt->set_option(0, "momentum", 0.0); }),
            "optimizer 'sgd', param group 0: option 'nesterov' = true needs momentum > 0 and dampening = 0 (got "
            "momentum = 0.0, dampening = 0.0)");
  EXPECT_EQ(opt->param_groups()[0].option("lr").as_float(), 0.1);
  EXPECT_EQ(opt->param_groups()[0].option("momentum").as_float(), 0.9);
  EXPECT_THROW(opt->set_option(3, "lr", 0.1), optreg::UsageError);
}

TEST_F(OptimizerBase, SetOptionForAllGroupsIsAllOrNothing) {
  Parameter a = param("a", {1});
  Parameter b = param("b", {1});
  OptimizerPtr opt = registry().create(
      "sgd", std::vector<ParamGroupSpec>{{{a}, {{"momentum", 0.9}}}, {{b}, {{"momentum", 0.9}, {"nesterov", true}}}});
  EXPECT_THROW(opt->set_option("dampening", 0.5), optreg::OptionError);  // group 1 refuses it
  EXPECT_EQ(opt->param_groups()[0].option("dampening").as_float(), 0.0);
}

TEST_F(OptimizerBase, ParametersMayViewCallerMemory) {
  std::vector<float> weights = {1, 2, 3};
  std::vector<float> grads = {1, 1, 1};
  Parameter w("w", Tensor::view(weights.data(), {3}));
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 1.0}});
  w.set_grad(Tensor::view(grads.data(), {3}));
  opt->step();
  EXPECT_EQ(weights, (std::vector<float>{0, 1, 2}));
}

TEST_F(OptimizerBase, SetupTwiceIsAnError) {
  Parameter a = param("a", {1});
  OptimizerPtr opt = registry().create("sgd", {a});
  EXPECT_THROW(opt->setup(optreg::OptimizerInfo{"sgd", "1", std::make_shared<const optreg::Schema>()}, {}, {}),
               optreg::UsageError);
}

TEST_F(OptimizerBase, AdamAmsgradTurnedOnLaterCreatesItsBufferOnce) {
  Parameter w = param("w", {1, 2});
  OptimizerPtr opt = registry().create("adam", {w});
  EXPECT_EQ(opt->state(w).num_tensors(), 2U);
  opt->set_option(0, "amsgrad", true);
  w.accumulate_grad(Tensor({2}, {1, 1}));
  opt->step();
  opt->step();
  EXPECT_EQ(opt->state(w).num_tensors(), 3U);
  EXPECT_GT(opt->state(w).tensor("max_exp_avg_sq")[0], 0.0F);
}
