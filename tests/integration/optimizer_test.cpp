// Semantics of the Optimizer base, exercised through the in-tree sgd and adam plugins.
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::Tensor;
using optreg_test::error_of;

namespace {

/// Optimizers from the in-tree sgd and adam plugins over one-dimensional parameters.
class OptimizerBase : public optreg_test::RegistryTest {
 protected:
  static Parameter param(const std::string& name, std::vector<float> values) {
    const auto n = static_cast<std::int64_t>(values.size());
    return Parameter(name, Tensor({n}, values));
  }
};

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

// ------------------------------------------------- parameters whose tensors are replaced

/// Adam over two groups, {a} and {w, b}, after one step.
class ReplacedTensors : public OptimizerBase {
 protected:
  void SetUp() override {
    opt = registry().create("adam", std::vector<ParamGroupSpec>{{{a}, {}}, {{w, b}, {}}}, {{"lr", 0.1}});
    for (Parameter* p : {&a, &w, &b}) p->accumulate_grad(Tensor(p->value().shape(), 1.0F));
    opt->step();
  }

  /// The values and the state, to show that a refused call changed nothing.
  std::vector<std::vector<float>> snapshot() const {
    std::vector<std::vector<float>> out;
    for (const Parameter* p : {&a, &w, &b}) {
      out.push_back(p->value().to_vector());
      for (const auto& [name, t] : opt->state(*p).tensors()) out.push_back(t.to_vector());
    }
    return out;
  }

  Parameter a = param("a", {1, 2});
  Parameter w = Parameter("w", Tensor({2, 3}, 1.0F));
  Parameter b = param("b", {3});
  OptimizerPtr opt;
};

TEST_F(ReplacedTensors, AValueOfAnotherShapeIsRefusedByStepBeforeAnyGroupChanges) {
  const std::vector<float> a_before = a.value().to_vector();
  const std::vector<float> a_state = opt->state(a).tensor("exp_avg").to_vector();
  w.value() = Tensor({4096});
  w.set_grad(Tensor({4096}, 1.0F));
  EXPECT_EQ(error_of([&] { opt->step(); }),
            "optimizer 'adam', param group 1, parameter 'w' (position 0): its value has shape [4096], but it had shape "
            "[2, 3] when the optimizer took it; a parameter keeps its shape while an optimizer manages it");
  EXPECT_EQ(a.value().to_vector(), a_before) << "group 0, before w's group, is left as it was";
  EXPECT_EQ(opt->state(a).tensor("exp_avg").to_vector(), a_state);
  w.clear_grad();
  EXPECT_THROW(opt->step(), optreg::UsageError) << "refused even without a gradient";
  w.value() = Tensor({2, 3}, 1.0F);  // another tensor of the same shape is fine
  opt->step();
  EXPECT_NE(a.value().to_vector(), a_before);
}

TEST_F(ReplacedTensors, AGradientOfAnotherShapeIsRefusedByStep) {
  const auto before = snapshot();
  b.grad() = Tensor({0});  // smaller than the value: step would read past it
  EXPECT_EQ(error_of([&] { opt->step(); }),
            "optimizer 'adam', param group 1, parameter 'b' (position 1): its gradient has shape [0], but its value "
            "has shape [1]");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(ReplacedTensors, AValueOrGradientOfTheSameElementCountInAnotherShapeIsRefusedByStep) {
  const auto before = snapshot();
  const Tensor w_value = w.value(), b_value = b.value();  // handles to the same memory
  const auto refusal = [&](const std::string& name, const std::string& position, const std::string& have,
                           const std::string& had) {
    return "optimizer 'adam', param group 1, parameter '" + name + "' (position " + position +
           "): its value has shape " + have + ", but it had shape " + had +
           " when the optimizer took it; a parameter keeps its shape while an optimizer manages it";
  };
  w.value() = Tensor({3, 2}, 1.0F);  // the same rank and count, other dimensions
  EXPECT_EQ(error_of([&] { opt->step(); }), refusal("w", "0", "[3, 2]", "[2, 3]"));
  w.value() = w_value;
  b.value() = Tensor({1, 1});  // one element, one dimension more
  EXPECT_EQ(error_of([&] { opt->step(); }), refusal("b", "1", "[1, 1]", "[1]"));
  b.value() = Tensor({}, {0.5F});  // one element, no dimension
  EXPECT_EQ(error_of([&] { opt->step(); }), refusal("b", "1", "[]", "[1]"));
  b.value() = b_value;
  b.grad() = Tensor({1, 1}, 1.0F);
  EXPECT_EQ(error_of([&] { opt->step(); }),
            "optimizer 'adam', param group 1, parameter 'b' (position 1): its gradient has shape [1, 1], but its value "
            "has shape [1]");
  w.grad() = Tensor({6}, 1.0F);
  b.grad() = Tensor({1}, 1.0F);
  EXPECT_EQ(error_of([&] { opt->step(); }),
            "optimizer 'adam', param group 1, parameter 'w' (position 0): its gradient has shape [6], but its value "
            "has shape [2, 3]");
  EXPECT_EQ(snapshot(), before);
}

TEST_F(ReplacedTensors, StateDictLoadAndCheckpointsRefuseAValueOfAnotherShape) {
  const optreg::StateDict sd = opt->state_dict();
  w.value() = Tensor({3, 2});
  const std::string m =
      "optimizer 'adam', param group 1, parameter 'w' (position 0): its value has shape [3, 2], but it had shape [2, 3] "
      "when the optimizer took it; a parameter keeps its shape while an optimizer manages it";
  EXPECT_EQ(error_of([&] { opt->state_dict(); }), m);
  EXPECT_EQ(error_of([&] { opt->check_state_dict(sd); }), m);
  EXPECT_EQ(error_of([&] { opt->load_state_dict(sd); }), m);
  const std::string path = ::testing::TempDir() + "replaced_tensors.optreg";
  EXPECT_EQ(error_of([&] { optreg::save_optimizer(path, *opt); }), m);
  w.value() = Tensor({2, 3});
  optreg::save_optimizer(path, *opt);
  w.value() = Tensor({6});
  EXPECT_EQ(error_of([&] { optreg::load_optimizer(path, *opt); }),
            "optimizer 'adam', param group 1, parameter 'w' (position 0): its value has shape [6], but it had shape "
            "[2, 3] when the optimizer took it; a parameter keeps its shape while an optimizer manages it")
      << "the optimizer is at fault, not the file";
  std::remove(path.c_str());
}

// ---- element types ----

TEST_F(OptimizerBase, AParameterOfADTypeThePluginDoesNotStepIsAnOptionErrorNamingAll) {
  Parameter ok = param("ok", {1, 2});
  Parameter half("half", Tensor({2}, optreg::DType::Float16));
  try {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_SGD_LIKE);  // declares float32 parameters only
    (void)r.create("fixture_sgd_like", {ok, half}, {{"lr", 0.1}});
    FAIL() << "fixture_sgd_like took a float16 parameter it does not declare";
  } catch (const optreg::OptionError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("parameter 'half' (position 1) is float16"), std::string::npos) << m;
    EXPECT_NE(m.find("optimizer 'fixture_sgd_like' steps parameters of float32 only"), std::string::npos) << m;
    EXPECT_EQ(e.option(), "dtype");
  }
  EXPECT_EQ(registry().find("adam")->param_dtypes, optreg::kAllDTypes);
}

TEST_F(OptimizerBase, AValueReplacedByAnotherDTypeRefusesTheStepNamingBoth) {
  Parameter w = param("w", {1, 2});
  OptimizerPtr opt = registry().create("sgd", {w}, {{"lr", 0.1}});
  w.value() = Tensor({2}, optreg::DType::Float64);
  w.set_grad(Tensor({2}, optreg::DType::Float64));
  const std::string m = optreg_test::message_of<optreg::UsageError>([&] { opt->step(); });
  EXPECT_NE(m.find("parameter 'w' (position 0): its value is float64, but it was float32 when the optimizer took it"),
            std::string::npos)
      << m;
}

TEST_F(OptimizerBase, AStateDictWhoseTensorsHaveAnotherDTypeIsRefusedNamingBoth) {
  Parameter w = param("w", {1, 2});
  OptimizerPtr opt = registry().create("adam", {w}, {{"lr", 0.1}});
  optreg::StateDict sd = opt->state_dict();
  optreg::ParamState& s = sd.state.at(0);
  optreg::ParamState converted;
  for (const auto& [name, t] : s.tensors()) converted.add_tensor(name, t.to(optreg::DType::BFloat16));
  for (const auto& [name, v] : s.scalars()) converted.add_scalar(name, v);
  s = converted;
  const std::string m = optreg_test::message_of<optreg::StateDictError>([&] { opt->load_state_dict(sd); });
  EXPECT_NE(m.find("state tensor 'exp_avg' of parameter id 0"), std::string::npos) << m;
  EXPECT_NE(m.find("is bfloat16, but this optimizer keeps it as float32"), std::string::npos) << m;
  EXPECT_EQ(opt->state(w).tensor("exp_avg").dtype(), optreg::DType::Float32);
}
