// Wrappers (make_wrapped(), Registry::create_wrapped()) through the in-tree `lookahead`: the
// rule bit for bit, the options and state of both levels, checkpoints, and the refusals.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/registry.hpp>
#include <optreg/scheduler.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

using optreg::OptimizerPtr;
using optreg::Options;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::Tensor;
using optreg::Value;

namespace {

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

OptimizerPtr lookahead_sgd(std::vector<Parameter> params, std::int64_t k, double alpha, double lr) {
  std::vector<ParamGroupSpec> groups(1);
  groups[0].params = std::move(params);
  return registry().create_wrapped("lookahead", {{"k", Value(k)}, {"alpha", alpha}}, "sgd", std::move(groups),
                                   {{"lr", lr}});
}

void step_at_value(optreg::Optimizer& opt, std::vector<Parameter>& params) {
  for (Parameter& p : params) p.set_grad(optreg_test::gradient_at(p.value()));
  opt.step().clear_grad();
}

}  // namespace

TEST(Lookahead, TheInnerStepsAndEveryKStepsTheSlowWeightsPullTheFastOnesBack) {
  std::vector<Parameter> params{Parameter("w", Tensor({5}, {1, -2, 3, 0.5f, -0.25f}))};
  OptimizerPtr opt = lookahead_sgd(params, 3, 0.5, 0.1);
  EXPECT_EQ(opt->name(), "lookahead");
  EXPECT_TRUE(optreg::is_wrapped(*opt));
  ASSERT_NE(optreg::wrapped_inner(*opt), nullptr);
  EXPECT_EQ(optreg::wrapped_inner(*opt)->name(), "sgd");
  std::vector<float> fast = params[0].value().to_vector();
  std::vector<float> slow = fast;
  for (int step = 1; step <= 8; ++step) {
    const Tensor g = optreg_test::gradient_at(Tensor({5}, fast));
    for (std::size_t i = 0; i < fast.size(); ++i) fast[i] = fast[i] + static_cast<float>(-0.1) * g[i];
    if (step % 3 == 0) {
      for (std::size_t i = 0; i < fast.size(); ++i) {
        slow[i] = slow[i] + 0.5f * (fast[i] - slow[i]);
        fast[i] = slow[i];
      }
    }
    step_at_value(*opt, params);
    const std::vector<float> got = params[0].value().to_vector();
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(optreg::float_bits(got[i]), optreg::float_bits(fast[i])) << "step " << step << ", element " << i;
  }
  const optreg::ParamState& s = opt->state(params[0]);
  EXPECT_EQ(std::get<std::int64_t>(s.scalar("lookahead_steps")), 8);
  const std::vector<float> kept = s.tensor("slow_weights").to_vector();
  for (std::size_t i = 0; i < kept.size(); ++i) EXPECT_EQ(optreg::float_bits(kept[i]), optreg::float_bits(slow[i]));
}

TEST(Lookahead, ItsGroupsHoldBothLevelsOptionsAndSchedulersDriveTheInnerLr) {
  Parameter a("a", Tensor({3}, 1.0f));
  Parameter b("b", Tensor({2}, 1.0f));
  std::vector<ParamGroupSpec> groups(2);
  groups[0].params = {a};
  groups[1].params = {b};
  groups[1].options = {{"k", Value(std::int64_t{2})}, {"lr", 0.01}};
  OptimizerPtr opt = registry().create_wrapped("lookahead", {{"alpha", 0.8}}, "adam", std::move(groups), {{"lr", 0.1}});
  const Options& first = opt->param_groups()[0].options();
  EXPECT_EQ(first.at("k").as_int(), 5);
  EXPECT_EQ(first.at("alpha").as_float(), 0.8);
  EXPECT_EQ(first.at("lr").as_float(), 0.1);
  EXPECT_EQ(first.at("inner").as_string(), "adam");
  EXPECT_EQ(opt->param_groups()[1].options().at("k").as_int(), 2);
  EXPECT_EQ(opt->param_groups()[1].options().at("lr").as_float(), 0.01);
  const optreg::ParamState& s = opt->state(a);
  std::vector<std::string> tensors;
  for (const auto& [name, t] : s.tensors()) tensors.push_back(name);
  EXPECT_EQ(tensors, (std::vector<std::string>{"exp_avg", "exp_avg_sq", "slow_weights"}));
  opt->set_option("k", Value(std::int64_t{4}));
  EXPECT_EQ(opt->param_groups()[1].options().at("k").as_int(), 4);
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>([&] { opt->set_option("inner", Value("sgd")); }, "inner"));
  optreg::SchedulerPtr sched =
      registry().create_scheduler("step", *opt, {{"step_size", Value(std::int64_t{1})}, {"gamma", 0.5}});
  a.set_grad(Tensor({3}, 1.0f));
  b.set_grad(Tensor({2}, 1.0f));
  opt->step();
  sched->step();
  EXPECT_EQ(opt->param_groups()[0].options().at("lr").as_float(), 0.05);
}

TEST(Lookahead, ACheckpointHoldsBothLevelsAndResumesWithTheSameBits) {
  optreg_test::TempDir dir;
  const auto make = [] {
    return std::vector<Parameter>{Parameter("w", Tensor({2, 3}, {1, -2, 3, 0.5f, -0.25f, 2})),
                                  Parameter("b", Tensor({3}, {0.1f, 0.2f, -0.3f}))};
  };
  const auto wrapped = [](std::vector<Parameter> ps) {
    std::vector<ParamGroupSpec> groups(1);
    groups[0].params = std::move(ps);
    return registry().create_wrapped("lookahead", {{"k", Value(std::int64_t{4})}}, "adamw", std::move(groups),
                                     {{"lr", 0.05}});
  };
  std::vector<Parameter> whole_params = make();
  OptimizerPtr whole = wrapped(whole_params);
  for (int s = 0; s < 13; ++s) step_at_value(*whole, whole_params);

  std::vector<Parameter> first_params = make();
  OptimizerPtr first = wrapped(first_params);
  for (int s = 0; s < 6; ++s) step_at_value(*first, first_params);
  optreg::save_optimizer(dir / "la.ckpt", *first);
  const optreg::Checkpoint c = optreg::read_checkpoint(dir / "la.ckpt");
  EXPECT_EQ(c.optimizer.optimizer, "lookahead");
  EXPECT_EQ(c.optimizer.param_groups[0].options.at("inner").as_string(), "adamw");
  EXPECT_EQ(c.optimizer.state.at(0).tensors().size(), 3U) << "exp_avg, exp_avg_sq and slow_weights";

  std::vector<Parameter> second_params = make();
  OptimizerPtr second = wrapped(second_params);
  optreg::load_optimizer(dir / "la.ckpt", *second);
  for (int s = 0; s < 7; ++s) step_at_value(*second, second_params);
  EXPECT_TRUE(optreg_test::same_bits(optreg_test::snapshot(*second), optreg_test::snapshot(*whole)));

  // The same checkpoint into lookahead over another optimizer, or into the bare inner one.
  std::vector<Parameter> other_params = make();
  std::vector<ParamGroupSpec> groups(1);
  groups[0].params = other_params;
  OptimizerPtr over_adam =
      registry().create_wrapped("lookahead", {{"k", Value(std::int64_t{4})}}, "adam", std::move(groups));
  EXPECT_TRUE(optreg_test::throws_with<optreg::CheckpointError>(
      [&] { optreg::load_optimizer(dir / "la.ckpt", *over_adam); }, "inner"));
  OptimizerPtr bare = registry().create("adamw", make(), {{"lr", 0.05}});
  EXPECT_TRUE(optreg_test::throws_with<optreg::CheckpointError>(
      [&] { optreg::load_optimizer(dir / "la.ckpt", *bare); },
      "the state dict is of optimizer 'lookahead', but this optimizer is 'adamw'"));
}

TEST(Lookahead, HalfPrecisionParametersWithMasterWeightsKeepFloat32SlowWeights) {
  std::vector<Parameter> params{Parameter("w", Tensor({4}, {1, 2, 3, 4}).to(optreg::DType::BFloat16))};
  std::vector<ParamGroupSpec> groups(1);
  groups[0].params = params;
  OptimizerPtr opt = registry().create_wrapped("lookahead", {{"k", Value(std::int64_t{2})}}, "sgd", std::move(groups),
                                               {{"lr", 0.1}, {"master_weights", true}});
  for (int s = 0; s < 4; ++s) {
    params[0].set_grad(Tensor({4}, {1, -1, 0.5f, 0.25f}).to(optreg::DType::BFloat16));
    opt->step().clear_grad();
  }
  const optreg::ParamState& s = opt->state(params[0]);
  EXPECT_EQ(s.tensor("slow_weights").dtype(), optreg::DType::Float32);
  // After a sync (step 4) the master is the slow weights, and the parameter their rounding.
  EXPECT_TRUE(optreg_test::same_bits(s.tensor("master_weight"), s.tensor("slow_weights")));
  EXPECT_TRUE(optreg_test::same_bits(params[0].value(), s.tensor("slow_weights").to(optreg::DType::BFloat16)));
}

TEST(Lookahead, AWrapperAloneOrInTheWrongPlaceIsRefused) {
  std::vector<Parameter> params{Parameter("w", Tensor({2}, 1.0f))};
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { registry().create("lookahead", params); },
      "optimizer 'lookahead' is a wrapper: it steps with an inner optimizer; make it with Registry::create_wrapped()"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] {
        optreg::make_wrapped(registry().create("adam", std::vector<ParamGroupSpec>{}),
                             registry().create("sgd", std::vector<ParamGroupSpec>{}));
      },
      "make_wrapped: optimizer 'adam' is not a wrapper"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] {
        optreg::make_wrapped(registry().create("lookahead", std::vector<ParamGroupSpec>{}),
                             registry().create("lookahead", std::vector<ParamGroupSpec>{}));
      },
      "the inner optimizer 'lookahead' is a wrapper itself"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] {
        OptimizerPtr once = registry().create_wrapped("lookahead", {}, "sgd", {});
        optreg::make_wrapped(registry().create("lookahead", std::vector<ParamGroupSpec>{}), std::move(once));
      },
      "make_wrapped: the inner optimizer 'lookahead' is wrapped already"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] {
        optreg::make_wrapped(registry().create("lookahead", std::vector<ParamGroupSpec>{}),
                             registry().create("sgd", params));
      },
      "make_wrapped: the inner optimizer 'sgd' has 1 param groups"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { registry().create_wrapped("lookahead", {}, "lbfgs", {}); }, "steps with a closure"));
  // A bare wrapper takes no group, directly or as a composite's part: nothing would move them.
  OptimizerPtr bare = registry().create("lookahead", std::vector<ParamGroupSpec>{});
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { bare->add_param_group(params); }, "optimizer 'lookahead' is a wrapper: it steps with an inner optimizer"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] {
        std::vector<OptimizerPtr> parts;
        parts.push_back(registry().create("adam", std::vector<ParamGroupSpec>{}));
        parts.push_back(registry().create("lookahead", std::vector<ParamGroupSpec>{}));
        optreg::make_composite(std::move(parts));
      },
      "(optimizer 'lookahead') is a wrapper without the optimizer it wraps"));
  // The core's precision options are the groups': given to the wrapper they would be lost.
  EXPECT_TRUE(optreg_test::throws_with<optreg::UsageError>(
      [&] { registry().create_wrapped("lookahead", {{"master_weights", true}}, "sgd", {}); },
      "make_wrapped: wrapper 'lookahead' was made with master_weights = true; give the core's precision options to "
      "the inner optimizer or to the groups"));
  EXPECT_TRUE(optreg_test::throws_with<optreg::OptionError>(
      [&] {
        registry().create_wrapped("lookahead", {{"k", Value(std::int64_t{0})}}, "sgd", {});
      },
      "'k'"));
}

namespace {

/// The first error parse_config() or resolve_config() reports for `yaml` over a weight and a bias, or "".
std::string first_error(const std::string& yaml) {
  optreg::OptimizerConfig c;
  try {
    c = optreg::parse_config(yaml, "c.yaml");
  } catch (const optreg::ConfigError& e) {
    return e.what();
  }
  const optreg::ConfigCheck check =
      optreg::resolve_config(c, registry(), std::vector<std::string>{"fc.weight", "fc.bias"});
  return check.errors.empty() ? std::string() : std::string(check.errors.front().what());
}

}  // namespace

TEST(LookaheadConfig, ANestedOptimizerSectionBuildsTheWrapperAroundItsInnerOptimizer) {
  const optreg::OptimizerConfig c = optreg::parse_config(
      "optimizer:\n  name: lookahead\n  k: 6\n  alpha: 0.25\n  inner: {name: adam, lr: 0.003}\n"
      "param_groups:\n  - {params: '*.bias', k: 2, lr: 0.001}\n",
      "c.yaml");
  EXPECT_EQ(c.optimizer, "adam");
  ASSERT_EQ(c.wrappers.size(), 1U);
  EXPECT_EQ(c.wrappers[0].name, "lookahead");
  EXPECT_EQ(optreg::optimizer_names(c), "lookahead(adam)");
  std::vector<Parameter> params{Parameter("fc.weight", Tensor({3, 2}, 1.0f)), Parameter("fc.bias", Tensor({3}, 1.0f))};
  OptimizerPtr opt = optreg::build_optimizer(c, params, registry());
  ASSERT_TRUE(optreg::is_wrapped(*opt));
  EXPECT_EQ(opt->name(), "lookahead");
  const Options& weights = opt->param_groups()[0].options();
  const Options& biases = opt->param_groups()[1].options();
  EXPECT_EQ(weights.at("k").as_int(), 6);
  EXPECT_EQ(weights.at("alpha").as_float(), 0.25);
  EXPECT_EQ(weights.at("lr").as_float(), 0.003);
  EXPECT_EQ(biases.at("k").as_int(), 2);
  EXPECT_EQ(biases.at("alpha").as_float(), 0.25);
  EXPECT_EQ(biases.at("lr").as_float(), 0.001);
  const optreg::ConfigCheck check = optreg::resolve_config(c, registry());
  ASSERT_TRUE(check.resolved);
  ASSERT_EQ(check.resolved->wrappers.size(), 1U);
  EXPECT_EQ(check.resolved->wrappers[0].options.at("k").as_int(), 6);
}

TEST(LookaheadConfig, MistakesAreReportedWhereTheyAreWritten) {
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n"),
            "c.yaml:2:9: optimizer 'lookahead' is a wrapper: give it the optimizer it wraps as 'inner: {name: ...}'");
  EXPECT_EQ(first_error("optimizer:\n  name: adam\n  inner: {name: sgd}\n"),
            "c.yaml:3:3: optimizer 'adam' takes no 'inner': it is not a wrapper (a wrapper's plugin declares one, as "
            "lookahead's does)");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahed\n  inner: {name: sgd}\n"),
            "c.yaml:2:9: unknown wrapper 'lookahed' (did you mean 'lookahead'?); registered: lookahead");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  k: 0\n  inner: {name: sgd}\n"),
            "c.yaml:3:6: wrapper 'lookahead': option 'k' = 0 is out of range: the value must be in [1, 1000000000] "
            "(fast steps between two slow updates)");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  inner: {name: sgd, k: 3}\n"),
            "c.yaml:3:22: optimizer 'sgd': option 'k' is wrapper 'lookahead''s; write it beside that wrapper's "
            "'inner:', not inside it");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  inner: {name: lookahead, inner: {name: sgd}}\n"),
            "c.yaml:2:9: wrapper 'lookahead' has an option 'k', which the optimizer it wraps has too; a wrapper cannot "
            "wrap an optimizer with an option of its own name");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  master_weights: true\n  inner: {name: sgd}\n"),
            "c.yaml:3:3: wrapper 'lookahead': option 'master_weights' is the core's, which every group holds from the "
            "optimizer it wraps: write it inside 'inner:'");
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: fc.bias\n    optimizer: lookahead\n"),
            "c.yaml:4:16: param_groups[0]: optimizer 'lookahead' is a wrapper, which steps with an optimizer it wraps; "
            "wrap the config's optimizer instead (optimizer: {name: lookahead, inner: {...}})");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  inner: 3\n"),
            "c.yaml:3:10: 'inner' of optimizer 'lookahead' must be a map, not a scalar");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  inner: {lr: 0.1}\n"),
            "c.yaml:3:3: 'inner' of optimizer 'lookahead' needs a 'name' (such as 'name: adam')");
  EXPECT_EQ(
      first_error("optimizer:\n  name: lookahead\n  inner: {name: sgd}\nparam_groups:\n  - params: fc.bias\n"
                  "    alpha: 2.0\n"),
      "c.yaml:6:12: wrapper 'lookahead', param_groups[0]: option 'alpha' = 2.0 is out of range: the value must be "
      "in [0.0, 1.0] (the step of the slow weights towards the fast ones)");
  EXPECT_EQ(first_error("optimizer:\n  name: lookahead\n  inner: {name: adamw}\nparam_groups:\n  - params: fc.weight\n"
                        "    optimizer: muon\n"),
            "c.yaml:6:16: param_groups[0]: wrapper 'lookahead' wraps one optimizer ('adamw'), so a group cannot name "
            "another ('muon')");
}
