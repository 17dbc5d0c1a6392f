// Optimizer::state_dict(), check_state_dict() and load_state_dict() through the in-tree sgd and
// adam plugins: the layout, copying, bit-exact round trips, and every refusal leaving the
// optimizer exactly as it was.
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"

using optreg::OptimizerPtr;
using optreg::Options;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::ParamState;
using optreg::Shape;
using optreg::StateScalar;
using optreg::Tensor;
using optreg_test::same_bits;
using optreg_test::snapshot;
using optreg_test::step_with_gradients;

namespace {

class StateDictTest : public optreg_test::RegistryTest {
 protected:
  /// A parameter of the given shape with distinct, non-zero values.
  static Parameter param(const std::string& name, const Shape& shape, float offset = 0.0F) {
    Tensor t(shape);
    for (std::size_t i = 0; i < t.numel(); ++i) t[i] = offset + 0.25F * static_cast<float>(i + 1) - 0.6F;
    return Parameter(name, t);
  }

  /// Three parameters in two groups: {w [2, 3], b [3]} and {v [4]} with its own lr.
  static OptimizerPtr two_groups(const std::string& name, const Options& options, float offset = 0.0F) {
    Parameter w = param("w", {2, 3}, offset);
    Parameter b = param("b", {3}, offset);
    Parameter v = param("v", {4}, offset);
    return registry().create(name, std::vector<ParamGroupSpec>{{{w, b}, {}}, {{v}, {{"lr", 0.02}}}}, options);
  }
};

/// A copy of `s` without the entry `name`.
ParamState without(const ParamState& s, const std::string& name) {
  ParamState out;
  for (const auto& [n, t] : s.tensors()) {
    if (n != name) out.add_tensor(n, t);
  }
  for (const auto& [n, v] : s.scalars()) {
    if (n != name) out.add_scalar(n, v);
  }
  return out;
}

ParamState with_tensor(const ParamState& s, const std::string& name, Tensor t) {
  ParamState out = without(s, name);
  out.add_tensor(name, std::move(t));
  return out;
}

ParamState with_scalar(const ParamState& s, const std::string& name, StateScalar v) {
  ParamState out = without(s, name);
  out.add_scalar(name, v);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------- layout

TEST_F(StateDictTest, LayoutNamesTheOptimizerAndItsPluginVersion) {
  OptimizerPtr opt = two_groups("adam", {});
  const optreg::StateDict sd = opt->state_dict();
  EXPECT_EQ(sd.optimizer, "adam");
  EXPECT_EQ(sd.plugin_version, "1.0.0");
  EXPECT_EQ(sd.plugin_version, registry().find("adam")->plugin_version);
}

TEST_F(StateDictTest, LayoutHoldsEveryOptionOfEveryGroup) {
  OptimizerPtr opt = two_groups("sgd", {{"lr", 0.1}, {"momentum", 0.9}});
  const optreg::StateDict sd = opt->state_dict();
  ASSERT_EQ(sd.param_groups.size(), 2U);
  const Options group0 = {{"lr", 0.1},           {"momentum", 0.9},         {"dampening", 0.0},
                          {"weight_decay", 0.0}, {"nesterov", false},       {"maximize", false},
                          {"master_weights", false}, {"rounding", std::string("nearest")},
                          {"rounding_seed", std::int64_t{0}}, {"state_dtype", std::string("float32")}};
  Options group1 = group0;
  group1["lr"] = 0.02;
  EXPECT_TRUE(same_bits(sd.param_groups[0].options, group0));
  EXPECT_TRUE(same_bits(sd.param_groups[1].options, group1));
  for (const auto& g : sd.param_groups) {
    for (const auto& h : opt->schema().entries()) EXPECT_EQ(g.options.count(h.name), 1U) << h.name;
  }
}

TEST_F(StateDictTest, LayoutGivesIdsByFirstAppearanceAcrossGroups) {
  Parameter a("a", Tensor({2}));
  Parameter b("b", Tensor({3}));
  Parameter c("c", Tensor({4}));
  OptimizerPtr opt = registry().create("sgd", std::vector<ParamGroupSpec>{{{b, a}, {}}, {{c}, {}}}, {{"momentum", 0.5}});
  const optreg::StateDict sd = opt->state_dict();
  ASSERT_EQ(sd.param_groups.size(), 2U);
  EXPECT_EQ(sd.param_groups[0].params, (std::vector<std::uint64_t>{0, 1}));
  EXPECT_EQ(sd.param_groups[1].params, (std::vector<std::uint64_t>{2}));
  ASSERT_EQ(sd.state.size(), 3U);
  EXPECT_EQ(sd.state.at(0).tensor("momentum_buffer").shape(), (Shape{3}));  // b
  EXPECT_EQ(sd.state.at(1).tensor("momentum_buffer").shape(), (Shape{2}));  // a
  EXPECT_EQ(sd.state.at(2).tensor("momentum_buffer").shape(), (Shape{4}));  // c
}

TEST_F(StateDictTest, LayoutHoldsNamedTensorsAndExactScalarsPerId) {
  OptimizerPtr opt = two_groups("adam", {{"lr", 0.01}});
  const std::vector<Parameter> params = opt->parameters();
  for (int i = 0; i < 3; ++i) step_with_gradients(*opt, "v");  // v stays frozen
  const optreg::StateDict sd = opt->state_dict();
  ASSERT_EQ(sd.state.size(), 3U);
  for (std::uint64_t id = 0; id < 3; ++id) {
    const ParamState& s = sd.state.at(id);
    ASSERT_EQ(s.num_tensors(), 2U);
    EXPECT_EQ(s.tensors()[0].first, "exp_avg");
    EXPECT_EQ(s.tensors()[1].first, "exp_avg_sq");
    EXPECT_EQ(s.tensor(0).shape(), params[id].value().shape());
    EXPECT_TRUE(same_bits(s.tensor(0), opt->state(params[id]).tensor("exp_avg")));
    EXPECT_TRUE(same_bits(s.tensor(1), opt->state(params[id]).tensor("exp_avg_sq")));
    ASSERT_EQ(s.num_scalars(), 1U);
    EXPECT_EQ(s.scalars()[0].first, "step");
    ASSERT_TRUE(std::holds_alternative<std::int64_t>(s.scalar(0)));
  }
  EXPECT_EQ(std::get<std::int64_t>(sd.state.at(0).scalar("step")), 3);
  EXPECT_EQ(std::get<std::int64_t>(sd.state.at(1).scalar("step")), 3);
  EXPECT_EQ(std::get<std::int64_t>(sd.state.at(2).scalar("step")), 0);
}

TEST_F(StateDictTest, SgdMomentumStateIsCompleteBeforeTheFirstStep) {
  OptimizerPtr opt = two_groups("sgd", {{"momentum", 0.9}});
  const optreg::StateDict sd = opt->state_dict();
  const std::vector<Parameter> params = opt->parameters();
  ASSERT_EQ(sd.state.size(), 3U);
  for (std::uint64_t id = 0; id < 3; ++id) {
    const ParamState& s = sd.state.at(id);
    ASSERT_EQ(s.num_tensors(), 1U);
    EXPECT_EQ(s.tensors()[0].first, "momentum_buffer");
    EXPECT_TRUE(same_bits(s.tensor(0), Tensor(params[id].value().shape())));
    ASSERT_EQ(s.num_scalars(), 1U);
    EXPECT_EQ(s.scalars()[0].first, "momentum_updates");
    ASSERT_TRUE(std::holds_alternative<std::int64_t>(s.scalar(0)));
    EXPECT_EQ(std::get<std::int64_t>(s.scalar(0)), 0);
  }
}

TEST_F(StateDictTest, AdamStateIsCompleteBeforeTheFirstStep) {
  OptimizerPtr opt = two_groups("adam", {});
  const optreg::StateDict sd = opt->state_dict();
  const std::vector<Parameter> params = opt->parameters();
  ASSERT_EQ(sd.state.size(), 3U);
  for (std::uint64_t id = 0; id < 3; ++id) {
    const ParamState& s = sd.state.at(id);
    ASSERT_EQ(s.num_tensors(), 2U);
    EXPECT_TRUE(same_bits(s.tensor("exp_avg"), Tensor(params[id].value().shape())));
    EXPECT_TRUE(same_bits(s.tensor("exp_avg_sq"), Tensor(params[id].value().shape())));
    EXPECT_THROW(s.tensor("max_exp_avg_sq"), optreg::UsageError);
    ASSERT_TRUE(std::holds_alternative<std::int64_t>(s.scalar("step")));
    EXPECT_EQ(std::get<std::int64_t>(s.scalar("step")), 0);
  }
}

TEST_F(StateDictTest, AdamAmsgradStateHasMaxExpAvgSqBeforeTheFirstStep) {
  OptimizerPtr opt = two_groups("adam", {{"amsgrad", true}});
  const optreg::StateDict sd = opt->state_dict();
  const std::vector<Parameter> params = opt->parameters();
  for (std::uint64_t id = 0; id < 3; ++id) {
    const ParamState& s = sd.state.at(id);
    ASSERT_EQ(s.num_tensors(), 3U);
    EXPECT_EQ(s.tensors()[2].first, "max_exp_avg_sq");
    EXPECT_TRUE(same_bits(s.tensor(2), Tensor(params[id].value().shape())));
  }
}

// ---------------------------------------------------------------------------------- copies

TEST_F(StateDictTest, DeepCopyDoesNotChangeWhenTheOptimizerDoes) {
  OptimizerPtr opt = two_groups("adam", {{"amsgrad", true}});
  step_with_gradients(*opt);
  const optreg::StateDict sd = opt->state_dict();
  const optreg::StateDict reference = opt->state_dict();
  for (const auto& [id, s] : sd.state) {
    for (std::size_t i = 0; i < s.num_tensors(); ++i) {
      EXPECT_FALSE(s.tensor(i).shares_memory_with(opt->state(opt->parameters()[id]).tensor(i)));
    }
  }
  step_with_gradients(*opt);
  opt->set_option("lr", 0.5);
  Tensor exp_avg = opt->state(opt->parameters()[0]).tensor("exp_avg");  // a handle: it shares the elements
  exp_avg.fill(7.0F);
  EXPECT_TRUE(same_bits(sd, reference));
  EXPECT_FALSE(same_bits(sd, opt->state_dict()));
}

TEST_F(StateDictTest, SharedCopySharesTheOptimizersMemory) {
  OptimizerPtr opt = two_groups("sgd", {{"momentum", 0.9}});
  step_with_gradients(*opt);
  const optreg::StateDict shared = opt->state_dict(optreg::TensorCopy::Shared);
  const std::vector<Parameter> params = opt->parameters();
  for (const auto& [id, s] : shared.state) {
    EXPECT_TRUE(s.tensor("momentum_buffer").shares_memory_with(opt->state(params[id]).tensor("momentum_buffer")));
  }
  step_with_gradients(*opt);
  const optreg::StateDict deep = opt->state_dict();
  for (const auto& [id, s] : shared.state) {
    EXPECT_TRUE(same_bits(s.tensor("momentum_buffer"), deep.state.at(id).tensor("momentum_buffer")));
  }
}

// ---------------------------------------------------------------------------------- round trips

namespace {

struct RoundTripCase {
  std::string label;
  std::string optimizer;
  Options options;
};

std::ostream& operator<<(std::ostream& os, const RoundTripCase& c) { return os << c.label; }

class StateDictRoundTrip : public StateDictTest, public ::testing::WithParamInterface<RoundTripCase> {};

}  // namespace

// A steps N times; a fresh B (default options, other values) loads A's state dict and parameter
// values; then both step K times with gradients computed from their parameters.
TEST_P(StateDictRoundTrip, ResumesBitForBit) {
  const RoundTripCase& c = GetParam();
  OptimizerPtr a = two_groups(c.optimizer, c.options);
  for (int i = 0; i < 5; ++i) step_with_gradients(*a);
  OptimizerPtr b = two_groups(c.optimizer, {}, 3.0F);
  b->load_state_dict(a->state_dict());
  const std::vector<Parameter> pa = a->parameters();
  std::vector<Parameter> pb = b->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) pb[i].value().copy_from(pa[i].value());
  ASSERT_TRUE(same_bits(snapshot(*a), snapshot(*b)));
  for (int i = 0; i < 7; ++i) {
    step_with_gradients(*a);
    step_with_gradients(*b);
  }
  EXPECT_TRUE(same_bits(snapshot(*a), snapshot(*b)));
  for (std::size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].value().numel(), pb[i].value().numel());
    EXPECT_EQ(std::memcmp(pa[i].value().data(), pb[i].value().data(), pa[i].value().numel() * sizeof(float)), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Plugins, StateDictRoundTrip,
    ::testing::Values(
        RoundTripCase{"sgd_plain", "sgd", {{"lr", 0.1}}},
        RoundTripCase{"sgd_momentum", "sgd", {{"lr", 0.05}, {"momentum", 0.9}}},
        RoundTripCase{"sgd_nesterov", "sgd", {{"lr", 0.05}, {"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 0.01}}},
        RoundTripCase{"sgd_dampening", "sgd", {{"lr", 0.05}, {"momentum", 0.8}, {"dampening", 0.3}}},
        RoundTripCase{"adam_default", "adam", {}},
        RoundTripCase{"adam_amsgrad", "adam", {{"lr", 0.01}, {"amsgrad", true}}},
        RoundTripCase{"adam_weight_decay", "adam", {{"lr", 0.01}, {"weight_decay", 0.1}, {"betas", {0.8, 0.99}}}}),
    [](const ::testing::TestParamInfo<RoundTripCase>& info) { return info.param.label; });

TEST_F(StateDictTest, LoadCopiesIntoTheExistingStateTensors) {
  OptimizerPtr a = two_groups("adam", {{"amsgrad", true}});
  for (int i = 0; i < 3; ++i) step_with_gradients(*a);
  OptimizerPtr b = two_groups("adam", {{"amsgrad", true}}, 1.0F);
  const Parameter w = b->parameters()[0];
  const Tensor exp_avg = b->state(w).tensor("exp_avg");
  const Tensor max_sq = b->state(w).tensor("max_exp_avg_sq");
  const float* exp_avg_data = exp_avg.data();
  const float* max_sq_data = max_sq.data();
  b->load_state_dict(a->state_dict());
  EXPECT_EQ(b->state(w).tensor("exp_avg").data(), exp_avg_data);
  EXPECT_EQ(b->state(w).tensor("max_exp_avg_sq").data(), max_sq_data);
  const ParamState& loaded = a->state(a->parameters()[0]);
  EXPECT_TRUE(same_bits(exp_avg, loaded.tensor("exp_avg")));
  EXPECT_TRUE(same_bits(max_sq, loaded.tensor("max_exp_avg_sq")));
  EXPECT_FALSE(exp_avg.shares_memory_with(loaded.tensor("exp_avg")));
}

TEST_F(StateDictTest, LoadCreatesAnOptionalEntryTheOptimizerDidNotHave) {
  OptimizerPtr a = two_groups("sgd", {{"momentum", 0.9}});
  step_with_gradients(*a);
  OptimizerPtr b = two_groups("sgd", {});
  ASSERT_EQ(b->state(b->parameters()[0]).num_tensors(), 0U);
  b->load_state_dict(a->state_dict());
  EXPECT_TRUE(same_bits(b->state(b->parameters()[0]).tensor("momentum_buffer"),
                        a->state(a->parameters()[0]).tensor("momentum_buffer")));
  EXPECT_EQ(b->param_groups()[0].option("momentum").as_float(), 0.9);
}

TEST_F(StateDictTest, LoadedOptionsTakeEffect) {
  OptimizerPtr a = two_groups("sgd", {{"lr", 0.125}});
  OptimizerPtr b = two_groups("sgd", {{"lr", 0.5}});
  b->load_state_dict(a->state_dict());
  EXPECT_EQ(b->param_groups()[0].option("lr").as_float(), 0.125);
  EXPECT_EQ(b->param_groups()[1].option("lr").as_float(), 0.02);
  const Parameter w = b->parameters()[0];
  const Tensor before = w.value().clone();
  const Tensor g = optreg_test::gradient_at(before);
  step_with_gradients(*b);
  EXPECT_EQ(w.value()[0], before[0] + -0.125F * g[0]);
  step_with_gradients(*a);
  EXPECT_TRUE(same_bits(snapshot(*a), snapshot(*b)));
}

// ---------------------------------------------------------------------------------- refusals

namespace {

/// An adam optimizer with state worth keeping: {w [2, 3], b [3]}, {v [4]}, three steps.
class StateDictValidation : public StateDictTest {
 protected:
  void SetUp() override {
    opt_ = two_groups("adam", {{"lr", 0.01}});
    for (int i = 0; i < 3; ++i) step_with_gradients(*opt_);
  }

  /// Asserts that check_state_dict() and load_state_dict() both refuse `sd` with a
  /// StateDictError whose message is `message`, and that the optimizer is exactly as it was:
  /// options, every state tensor and scalar bit for bit, and the same state storage.
  void expect_refused(const optreg::Optimizer& before_opt, optreg::Optimizer& opt, const optreg::StateDict& sd,
                      const std::string& message) {
    const optreg::Checkpoint before = snapshot(before_opt);
    std::vector<const float*> storage;
    for (const Parameter& p : opt.parameters()) {
      for (const auto& entry : opt.state(p).tensors()) storage.push_back(entry.second.data());
    }
    EXPECT_EQ(refusal_of([&] { opt.check_state_dict(sd); }), message);
    EXPECT_EQ(refusal_of([&] { opt.load_state_dict(sd); }), message);
    EXPECT_TRUE(same_bits(snapshot(opt), before));
    std::vector<const float*> after;
    for (const Parameter& p : opt.parameters()) {
      for (const auto& entry : opt.state(p).tensors()) after.push_back(entry.second.data());
    }
    EXPECT_EQ(after, storage);
  }
  void expect_refused(const optreg::StateDict& sd, const std::string& message) { expect_refused(*opt_, *opt_, sd, message); }

  template <typename F>
  static std::string refusal_of(F&& f) {
    try {
      f();
    } catch (const optreg::StateDictError& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("(not a StateDictError) ") + e.what();
    }
    return "(no error)";
  }

  OptimizerPtr opt_;
};

}  // namespace

TEST_F(StateDictValidation, ItsOwnStateDictIsAccepted) {
  const optreg::Checkpoint before = snapshot(*opt_);
  EXPECT_NO_THROW(opt_->check_state_dict(opt_->state_dict()));
  EXPECT_NO_THROW(opt_->load_state_dict(opt_->state_dict(optreg::TensorCopy::Shared)));
  EXPECT_TRUE(same_bits(snapshot(*opt_), before));
}

TEST_F(StateDictValidation, OtherOptimizerNameIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.optimizer = "sgd";
  expect_refused(sd, "the state dict is of optimizer 'sgd', but this optimizer is 'adam'");
}

TEST_F(StateDictValidation, GroupCountMismatchIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups.pop_back();
  sd.state.erase(2);
  expect_refused(sd, "the state dict has 1 param groups, but this optimizer has 2");
}

TEST_F(StateDictValidation, GroupSizeMismatchIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[0].params.pop_back();
  expect_refused(sd, "state dict, param group 0 has 1 parameters, but this optimizer's group has 2");
}

TEST_F(StateDictValidation, UnknownOptionIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[1].options["lrr"] = 0.1;
  expect_refused(sd,
                 "state dict, param group 1: unknown option 'lrr' (did you mean 'lr'?); known options: lr, betas, eps, "
                 "weight_decay, amsgrad, maximize, master_weights, rounding, rounding_seed, state_dtype");
}

TEST_F(StateDictValidation, OptionOfWrongTypeIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[0].options["amsgrad"] = 1.0;
  expect_refused(sd, "state dict, param group 0: option 'amsgrad' = 1.0 has the wrong type: expected a bool, got a float");
  sd = opt_->state_dict();
  sd.param_groups[1].options["lr"] = 1;
  expect_refused(sd, "state dict, param group 1: option 'lr' = 1 has the wrong type: expected a float, got an int");
}

TEST_F(StateDictValidation, OptionOutOfRangeIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[1].options["betas"] = optreg::Value({0.9, 1.0});
  expect_refused(sd,
                 "state dict, param group 1: option 'betas' = [0.9, 1.0] is out of range: element 1 must be in "
                 "[0.0, 1.0) (decay rates of the first and second moment estimates)");
  sd = opt_->state_dict();
  sd.param_groups[0].options["lr"] = -0.5;
  expect_refused(sd,
                 "state dict, param group 0: option 'lr' = -0.5 is out of range: the value must be in [0.0, inf) "
                 "(learning rate)");
}

TEST_F(StateDictValidation, NesterovRuleIsEnforcedOnLoadedOptions) {
  OptimizerPtr sgd = two_groups("sgd", {{"momentum", 0.9}, {"nesterov", true}});
  step_with_gradients(*sgd);
  optreg::StateDict sd = sgd->state_dict();
  sd.param_groups[1].options["dampening"] = 0.5;
  expect_refused(*sgd, *sgd, sd,
                 "state dict, param group 1: option 'nesterov' = true needs momentum > 0 and dampening = 0 (got "
                 "momentum = 0.9, dampening = 0.5)");
}

TEST_F(StateDictValidation, StateTensorShapeMismatchIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[1] = with_tensor(sd.state[1], "exp_avg_sq", Tensor({4}));
  expect_refused(sd,
                 "state tensor 'exp_avg_sq' of parameter id 1 ('b', param group 0, position 1) has shape [4], "
                 "expected [3]");
}

TEST_F(StateDictValidation, MissingRequiredStateEntryIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[2] = without(sd.state[2], "exp_avg");
  expect_refused(sd, "the state dict lacks state entry 'exp_avg' of parameter id 2 ('v', param group 1, position 0)");
  sd = opt_->state_dict();
  sd.state[0] = without(sd.state[0], "step");
  expect_refused(sd, "the state dict lacks state entry 'step' of parameter id 0 ('w', param group 0, position 0)");
}

TEST_F(StateDictValidation, UndeclaredStateEntryIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[0] = with_tensor(sd.state[0], "velocity", Tensor({2, 3}));
  expect_refused(sd,
                 "unexpected state entry 'velocity' for parameter id 0 ('w', param group 0, position 0): optimizer "
                 "'adam' keeps no such state");
  sd = opt_->state_dict();
  sd.state[1] = with_scalar(sd.state[1], "updates", std::int64_t{3});
  expect_refused(sd,
                 "unexpected state entry 'updates' for parameter id 1 ('b', param group 0, position 1): optimizer "
                 "'adam' keeps no such state");
}

TEST_F(StateDictValidation, WrongScalarKindIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[0] = with_scalar(sd.state[0], "step", 3.0);
  expect_refused(sd,
                 "state entry 'step' of parameter id 0 ('w', param group 0, position 0) is a float, but optimizer "
                 "'adam' keeps it as an int");
}

TEST_F(StateDictValidation, TensorWhereAScalarIsDeclaredIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[0] = with_tensor(without(sd.state[0], "step"), "step", Tensor({2, 3}));
  expect_refused(sd,
                 "state entry 'step' of parameter id 0 ('w', param group 0, position 0) is a tensor, but optimizer "
                 "'adam' keeps it as an int");
}

TEST_F(StateDictValidation, MissingStateForAnIdIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state.erase(1);
  expect_refused(sd, "the state dict has no state for parameter id 1 ('b', param group 0, position 1)");
}

TEST_F(StateDictValidation, IdOutOfRangeIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[1].params[0] = 7;
  expect_refused(sd,
                 "state dict, param group 1, position 0 (parameter 'v'): parameter id 7 is out of range; this "
                 "optimizer has 3 parameters");
}

TEST_F(StateDictValidation, IdListedTwiceIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.param_groups[1].params[0] = 0;
  expect_refused(sd, "state dict, param group 1, position 0 (parameter 'v'): parameter id 0 appears twice");
}

TEST_F(StateDictValidation, StateForAnUnlistedIdIsRefused) {
  optreg::StateDict sd = opt_->state_dict();
  sd.state[3] = sd.state[2];
  expect_refused(sd, "the state dict holds state for parameter id 3, which no param group lists");
}

TEST_F(StateDictValidation, RefusalInALaterGroupLeavesEarlierGroupsUnchanged) {
  // Group 0 is valid and differs from the live state; group 1 is refused.
  OptimizerPtr other = two_groups("adam", {{"lr", 0.3}}, 2.0F);
  for (int i = 0; i < 2; ++i) step_with_gradients(*other);
  optreg::StateDict sd = other->state_dict();
  sd.param_groups[1].options["eps"] = 0.0;
  expect_refused(sd,
                 "state dict, param group 1: option 'eps' = 0.0 is out of range: the value must be in (0.0, inf) "
                 "(term added to the denominator for numerical stability)");
}

TEST_F(StateDictValidation, NamesFromAStateDictAreEscapedAndCutInMessages) {
  // A state dict read from a file may hold any bytes, of any length, in its names and values.
  optreg::StateDict sd = opt_->state_dict();
  sd.optimizer = "\x1b[2J" + std::string(100000, 'a');
  expect_refused(sd, "the state dict is of optimizer '\\x1b[2J" + std::string(60, 'a') +
                         "'... (100004 bytes), but this optimizer is 'adam'");
  sd = opt_->state_dict();
  sd.param_groups[1].options[std::string("l\0r", 3) + std::string(5000, 'x')] = 0.1;
  expect_refused(sd, "state dict, param group 1: unknown option 'l\\x00r" + std::string(61, 'x') +
                         "'... (5003 bytes); known options: lr, betas, eps, weight_decay, amsgrad, maximize, master_weights, rounding, rounding_seed, state_dtype");
  sd = opt_->state_dict();
  sd.param_groups[0].options["amsgrad"] = optreg::Value(std::vector<double>(100000, 0.5));
  expect_refused(sd,
                 "state dict, param group 0: option 'amsgrad' = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, ...] "
                 "(100000 elements) has the wrong type: expected a bool, got a list of floats");
  sd = opt_->state_dict();
  sd.state[0] = with_tensor(sd.state[0], "\x1b]0;title\x07\n", Tensor({2, 3}));
  expect_refused(sd,
                 "unexpected state entry '\\x1b]0;title\\x07\\x0a' for parameter id 0 ('w', param group 0, "
                 "position 0): optimizer 'adam' keeps no such state");
}
