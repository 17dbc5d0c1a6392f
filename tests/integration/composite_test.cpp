// Composites (make_composite()): a different optimizer per param group, stepped as one object,
// with one state dict whose groups name their optimizer, and the configs that build them.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg::OptimizerPtr;
using optreg::Options;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::Tensor;
using optreg::Value;

namespace {

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

/// A set-up optimizer without groups: a part of a composite.
OptimizerPtr part(const std::string& name, const Options& options = {}) {
  return registry().create(name, std::vector<ParamGroupSpec>{}, options);
}

Tensor filled(const optreg::Shape& shape, double phase) {
  Tensor t(shape);
  for (std::size_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(std::sin(0.7 * static_cast<double>(i) + phase));
  return t;
}

/// A small model: two matrices and two vectors.
struct Model {
  Parameter w1{"fc1.weight", filled({4, 3}, 0.1)};
  Parameter b1{"fc1.bias", filled({4}, 0.2)};
  Parameter w2{"fc2.weight", filled({2, 4}, 0.3)};
  Parameter b2{"fc2.bias", filled({2}, 0.4)};
  std::vector<Parameter> all() const { return {w1, b1, w2, b2}; }
};

/// Sets a gradient that depends on the value and the step on every parameter of `params`.
void set_grads(const std::vector<Parameter>& params, int step) {
  for (Parameter p : params) {
    Tensor g(p.value().shape());
    for (std::size_t i = 0; i < g.numel(); ++i) {
      g[i] = static_cast<float>(p.value()[i] * 0.5 + std::cos(static_cast<double>(i + 3 * step)));
    }
    p.set_grad(g);
  }
}

/// A composite of the optimizers named, each with its defaults.
OptimizerPtr composite_of(const std::vector<std::pair<std::string, Options>>& specs) {
  std::vector<OptimizerPtr> parts;
  for (const auto& [name, options] : specs) parts.push_back(part(name, options));
  return optreg::make_composite(std::move(parts));
}

/// AdamW for the vectors, Muon for the matrices.
OptimizerPtr muon_adamw(const Model& m) {
  OptimizerPtr opt = composite_of({{"adamw", {{"lr", 0.01}, {"weight_decay", 0.01}}}, {"muon", {{"lr", 0.02}}}});
  opt->add_param_group({m.b1, m.b2});
  opt->add_param_group({m.w1, m.w2}, {{"optimizer", Value(std::string("muon"))}});
  return opt;
}

std::vector<std::vector<float>> values(const std::vector<Parameter>& params) {
  std::vector<std::vector<float>> out;
  for (const auto& p : params) out.push_back(p.value().to_vector());
  return out;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("optreg_composite_" + name)).string();
}

}  // namespace

TEST(Composite, EachGroupStepsBitForBitAsItsOwnOptimizerWould) {
  Model a, b;
  OptimizerPtr composite = muon_adamw(a);
  OptimizerPtr adamw = registry().create("adamw", {b.b1, b.b2}, {{"lr", 0.01}, {"weight_decay", 0.01}});
  OptimizerPtr muon = registry().create("muon", {b.w1, b.w2}, {{"lr", 0.02}});
  for (int s = 0; s < 5; ++s) {
    set_grads(a.all(), s);
    set_grads(b.all(), s);
    composite->step().clear_grad();
    adamw->step().clear_grad();
    muon->step().clear_grad();
  }
  EXPECT_EQ(values(a.all()), values(b.all()));
  EXPECT_NE(values(a.all()), values(Model{}.all()));
  EXPECT_EQ(composite->state(a.w1).tensor("momentum_buffer").to_vector(),
            muon->state(b.w1).tensor("momentum_buffer").to_vector());
  EXPECT_EQ(composite->state(a.b2).tensor("exp_avg_sq").to_vector(), adamw->state(b.b2).tensor("exp_avg_sq").to_vector());
}

TEST(Composite, GroupsNameTheirOptimizerAndStartFromItsDefaults) {
  Model m;
  OptimizerPtr opt = muon_adamw(m);
  EXPECT_EQ(opt->name(), "composite");
  EXPECT_TRUE(optreg::is_composite(*opt));
  ASSERT_EQ(opt->param_groups().size(), 2U);
  EXPECT_EQ(opt->param_groups()[0].option("optimizer").as_string(), "adamw");
  EXPECT_EQ(opt->param_groups()[1].option("optimizer").as_string(), "muon");
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].option("lr").as_float(), 0.01);
  EXPECT_DOUBLE_EQ(opt->param_groups()[1].option("lr").as_float(), 0.02);
  EXPECT_EQ(opt->param_groups()[1].options().count("betas"), 0U);  // muon's options only
  const optreg::StateDict sd = opt->state_dict();
  EXPECT_EQ(sd.optimizer, "composite");
  EXPECT_EQ(sd.param_groups[1].options.at("optimizer").as_string(), "muon");
  EXPECT_NE(sd.plugin_version.find("adamw "), std::string::npos);
  EXPECT_NE(sd.plugin_version.find("muon "), std::string::npos);
}

TEST(Composite, AStateDictRoundTripResumesBitForBit) {
  Model a, b;
  OptimizerPtr first = muon_adamw(a);
  for (int s = 0; s < 3; ++s) {
    set_grads(a.all(), s);
    first->step().clear_grad();
  }
  const std::string path = temp_path("roundtrip.ckpt");
  optreg::save_optimizer(path, *first);
  // b starts from a's values, as a checkpoint's parameters would give them.
  for (std::size_t k = 0; k < 4; ++k) b.all()[k].value().copy_from(a.all()[k].value());
  OptimizerPtr second = muon_adamw(b);
  optreg::load_optimizer(path, *second);
  std::filesystem::remove(path);
  for (int s = 3; s < 6; ++s) {
    set_grads(a.all(), s);
    set_grads(b.all(), s);
    first->step().clear_grad();
    second->step().clear_grad();
  }
  EXPECT_EQ(values(a.all()), values(b.all()));
}

TEST(Composite, ALoadWhoseGroupHasAnotherOptimizerIsRefusedAndChangesNothing) {
  Model a, b;
  OptimizerPtr saved = muon_adamw(a);
  OptimizerPtr other = composite_of({{"adamw", {{"lr", 0.01}, {"weight_decay", 0.01}}}, {"sgd", {{"lr", 0.02}}}});
  other->add_param_group({b.b1, b.b2});
  other->add_param_group({b.w1, b.w2}, {{"optimizer", Value(std::string("sgd"))}});
  const optreg::StateDict before = other->state_dict();
  const std::string e = optreg_test::message_of<optreg::StateDictError>([&] { other->load_state_dict(saved->state_dict()); });
  EXPECT_EQ(e, "state dict, param group 1 is stepped by optimizer 'muon', but this composite's group 1 by optimizer 'sgd'");
  EXPECT_EQ(other->param_groups()[1].option("optimizer").as_string(), "sgd");
  EXPECT_DOUBLE_EQ(other->param_groups()[1].option("lr").as_float(), before.param_groups[1].options.at("lr").as_float());

  OptimizerPtr plain = registry().create("adamw", {Model{}.b1});
  EXPECT_EQ(optreg_test::message_of<optreg::StateDictError>([&] { plain->load_state_dict(saved->state_dict()); }),
            "the state dict is of optimizer 'composite', but this optimizer is 'adamw'");
}

TEST(Composite, AGroupsOptimizerIsFixedAndOptionsGoWhereTheyAreDeclared) {
  Model m;
  OptimizerPtr opt = muon_adamw(m);
  EXPECT_NE(optreg_test::message_of<optreg::OptionError>(
                [&] { opt->set_option(1, "optimizer", Value(std::string("adamw"))); })
                .find("the optimizer of a composite's param group is fixed when the group is added"),
            std::string::npos);
  EXPECT_THROW(opt->set_option("optimizer", Value(std::string("adamw"))), optreg::OptionError);
  // `betas` is adamw's: the muon group keeps its options.
  opt->set_option("betas", Value(std::vector<double>{0.8, 0.9}));
  EXPECT_EQ(opt->param_groups()[0].option("betas").as_float_list(), (std::vector<double>{0.8, 0.9}));
  EXPECT_EQ(opt->param_groups()[1].options().count("betas"), 0U);
  // `lr` is everyone's.
  opt->set_option("lr", Value(0.5));
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].option("lr").as_float(), 0.5);
  EXPECT_DOUBLE_EQ(opt->param_groups()[1].option("lr").as_float(), 0.5);
  // A name no group declares is refused, and nothing changes.
  EXPECT_EQ(optreg_test::message_of<optreg::OptionError>([&] { opt->set_option("no_such", Value(1.0)); }),
            "optimizer 'composite': no param group's optimizer has an option 'no_such'");
  // An option of the group's own optimizer is checked by its schema.
  EXPECT_THROW(opt->set_option(1, "betas", Value(std::vector<double>{0.8, 0.9})), optreg::OptionError);
  EXPECT_THROW(opt->set_option(1, "lr", Value(-1.0)), optreg::OptionError);
  EXPECT_DOUBLE_EQ(opt->param_groups()[1].option("lr").as_float(), 0.5);
}

TEST(Composite, AGroupIsRefusedForAnUnknownPartOrAParameterItsOptimizerCannotStep) {
  Model m;
  OptimizerPtr opt = muon_adamw(m);
  const std::string unknown = optreg_test::message_of<optreg::OptionError>(
      [&] { opt->add_param_group({Parameter("x", Tensor({2, 2}))}, {{"optimizer", Value(std::string("lion"))}}); });
  EXPECT_EQ(unknown,
            "optimizer 'composite', param group 2: option 'optimizer' = \"lion\" names no optimizer of this composite; "
            "its optimizers are 'adamw', 'muon'");
  const std::string vector = optreg_test::message_of<optreg::UsageError>(
      [&] { opt->add_param_group({Parameter("bias", Tensor({3}))}, {{"optimizer", Value(std::string("muon"))}}); });
  EXPECT_EQ(vector,
            "optimizer 'composite', param group 2: parameter 'bias' (position 0) has shape [3], but optimizer 'muon' "
            "steps matrices (2-dimensional parameters) only");
  EXPECT_THROW(opt->add_param_group({Parameter("x", Tensor({2}))}, {{"betas", Value(1.0)}}), optreg::OptionError);
  EXPECT_EQ(opt->param_groups().size(), 2U);
}

TEST(Composite, MakeCompositeRefusesPartsItCannotCombine) {
  using optreg::UsageError;
  EXPECT_EQ(optreg_test::message_of<UsageError>([] { optreg::make_composite({}); }),
            "make_composite: a composite needs at least one optimizer");
  const auto refusal = [](std::vector<OptimizerPtr> parts) {
    return optreg_test::message_of<UsageError>([&] { optreg::make_composite(std::move(parts)); });
  };
  std::vector<OptimizerPtr> with_groups;
  with_groups.push_back(part("adamw"));
  with_groups.push_back(registry().create("sgd", {Parameter("w", Tensor({2}))}));
  EXPECT_EQ(refusal(std::move(with_groups)),
            "make_composite: part 1 (optimizer 'sgd') has 1 param groups; a part has none, its groups are added through "
            "the composite");
  std::vector<OptimizerPtr> twice;
  twice.push_back(part("adamw"));
  twice.push_back(part("adamw", {{"lr", 0.1}}));
  EXPECT_NE(refusal(std::move(twice)).find("has the name of part 0"), std::string::npos);
  std::vector<OptimizerPtr> closure;
  closure.push_back(part("adamw"));
  closure.push_back(part("lbfgs"));
  EXPECT_NE(refusal(std::move(closure)).find("part 1 (optimizer 'lbfgs') steps all its parameters as one vector"),
            std::string::npos);
  std::vector<OptimizerPtr> inner;
  inner.push_back(part("adamw"));
  std::vector<OptimizerPtr> nested;
  nested.push_back(optreg::make_composite(std::move(inner)));
  EXPECT_NE(refusal(std::move(nested)).find("is a composite itself"), std::string::npos);
}

TEST(Composite, EvaluationWeightsComeFromThePartsThatHaveThem) {
  Model m;
  OptimizerPtr opt = composite_of({{"schedulefree_adamw", {{"lr", 0.01}}}, {"sgd", {{"lr", 0.05}, {"momentum", 0.9}}}});
  opt->add_param_group({m.w1, m.b1});
  opt->add_param_group({m.w2, m.b2}, {{"optimizer", Value(std::string("sgd"))}});
  EXPECT_TRUE(opt->has_eval_weights());
  EXPECT_FALSE(opt->needs_closure());
  for (int s = 0; s < 3; ++s) {
    set_grads(m.all(), s);
    opt->step().clear_grad();
  }
  const auto training = values(m.all());
  {
    optreg::EvalWeights eval(*opt);
    EXPECT_TRUE(eval.active());
    EXPECT_NE(m.w1.value().to_vector(), training[0]);  // schedule-free's average
    EXPECT_EQ(m.w2.value().to_vector(), training[2]);  // sgd's group: its training weights
    EXPECT_EQ(m.b2.value().to_vector(), training[3]);
  }
  EXPECT_EQ(values(m.all()), training);
}

TEST(Composite, AConfigGroupNamesItsOptimizerAndTheBuildIsAComposite) {
  const optreg::OptimizerConfig config = optreg::parse_config(
      "optimizer: {name: adamw, lr: 0.001, weight_decay: 0.01}\n"
      "param_groups:\n"
      "  - params: ['*.weight']\n"
      "    optimizer: muon\n"
      "    lr: 0.02\n"
      "  - params: ['fc2.bias']\n"
      "    lr: 0.0005\n",
      "composite.yaml");
  EXPECT_EQ(optreg::optimizer_names(config), "adamw + muon");
  Model m;
  OptimizerPtr opt = optreg::build_optimizer(config, m.all(), registry());
  ASSERT_TRUE(optreg::is_composite(*opt));
  ASSERT_EQ(opt->param_groups().size(), 3U);
  const auto& g = opt->param_groups();
  EXPECT_EQ(g[0].option("optimizer").as_string(), "adamw");  // fc1.bias, the default group
  EXPECT_EQ(g[0].params()[0].name(), "fc1.bias");
  EXPECT_DOUBLE_EQ(g[0].option("weight_decay").as_float(), 0.01);
  EXPECT_EQ(g[1].option("optimizer").as_string(), "muon");
  EXPECT_EQ(g[1].params().size(), 2U);
  EXPECT_DOUBLE_EQ(g[1].option("lr").as_float(), 0.02);
  // A group of another optimizer starts from that optimizer's defaults, not the config's options.
  const double muon_default = registry().find("muon")->schema->find("weight_decay")->default_value.as_float();
  EXPECT_DOUBLE_EQ(g[1].option("weight_decay").as_float(), muon_default);
  EXPECT_EQ(g[2].option("optimizer").as_string(), "adamw");
  EXPECT_DOUBLE_EQ(g[2].option("lr").as_float(), 0.0005);
  EXPECT_DOUBLE_EQ(g[2].option("weight_decay").as_float(), 0.01);  // the config's optimizer's options

  // A scheduler scales every group's lr, whichever optimizer steps it.
  const optreg::OptimizerConfig scheduled = optreg::parse_config(
      "optimizer: {name: adamw, lr: 0.001}\n"
      "param_groups:\n"
      "  - params: ['*.weight']\n"
      "    optimizer: muon\n"
      "    lr: 0.02\n"
      "scheduler: {name: step, step_size: 1, gamma: 0.5}\n",
      "scheduled.yaml");
  Model n;
  OptimizerPtr o = optreg::build_optimizer(scheduled, n.all(), registry());
  optreg::SchedulerPtr sched = optreg::build_scheduler(scheduled, *o, registry());
  set_grads(n.all(), 0);
  o->step().clear_grad();
  sched->step();
  EXPECT_DOUBLE_EQ(o->param_groups()[0].option("lr").as_float(), 0.0005);
  EXPECT_DOUBLE_EQ(o->param_groups()[1].option("lr").as_float(), 0.01);
}

TEST(Composite, AConfigsMistakesInAGroupOfAnotherOptimizerArePlaced) {
  const auto first_error = [](const std::string& text, const std::vector<Parameter>& params) {
    return optreg_test::message_of<optreg::ConfigError>(
        [&] { optreg::build_optimizer(optreg::parse_config(text, "c.yaml"), params, registry()); });
  };
  Model m;
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: ['*.weight']\n    optimizer: muonn\n", m.all()),
            "c.yaml:4:16: param_groups[0]: unknown optimizer 'muonn' (did you mean 'muon'?); registered: adadelta, "
            "adafactor, adagrad, adam, adamax, adamw, adan, adopt, asgd, lamb, lars, lbfgs, lion, lookahead, muon, nadam, "
            "radam, rmsprop, rprop, schedulefree_adamw, sgd");
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: ['*.weight']\n    optimizer: muon\n"
                        "    betas: [0.9, 0.99]\n",
                        m.all()),
            "c.yaml:5:5: optimizer 'muon', param_groups[0]: unknown option 'betas'; known options: lr, weight_decay, "
            "momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr, master_weights, rounding, rounding_seed, "
            "state_dtype");
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: ['fc1.*']\n    optimizer: muon\n", m.all()),
            "c.yaml:4:16: param_groups[0]: optimizer 'composite', param group 1: parameter 'fc1.bias' (position 1) has "
            "shape [4], but optimizer 'muon' steps matrices (2-dimensional parameters) only");
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: ['*.weight']\n    optimizer: lbfgs\n", m.all()),
            "c.yaml:4:16: param_groups[0]: optimizer 'lbfgs' steps all its parameters as one vector with one closure, so "
            "it cannot step some param groups while other optimizers step the rest");
  EXPECT_EQ(first_error("optimizer: {name: adamw}\nparam_groups:\n  - params: ['*.weight']\n    optimizer: [muon]\n", m.all()),
            "c.yaml:4:16: param_groups[0].optimizer must be an optimizer name (the optimizer that steps the group)");
}

TEST(Composite, RegistryCreateMakesOneWhenAGroupNamesAnotherOptimizer) {
  Model a, b;
  std::vector<ParamGroupSpec> groups(2);
  groups[0].params = {a.b1, a.b2};
  groups[1].params = {a.w1, a.w2};
  groups[1].options = {{"optimizer", Value(std::string("muon"))}, {"lr", Value(0.02)}};
  OptimizerPtr made = registry().create("adamw", std::move(groups), {{"lr", 0.01}, {"weight_decay", 0.01}});
  ASSERT_TRUE(optreg::is_composite(*made));
  OptimizerPtr by_hand = muon_adamw(b);
  for (int s = 0; s < 3; ++s) {
    set_grads(a.all(), s);
    set_grads(b.all(), s);
    made->step().clear_grad();
    by_hand->step().clear_grad();
  }
  EXPECT_EQ(values(a.all()), values(b.all()));
  // A group that names the optimizer itself is one of its own groups: no composite.
  std::vector<ParamGroupSpec> own(1);
  own[0].params = {Model{}.w1};
  own[0].options = {{"optimizer", Value(std::string("adamw"))}};
  EXPECT_FALSE(optreg::is_composite(*registry().create("adamw", std::move(own))));
  // An unknown one is the registry's refusal, naming it.
  std::vector<ParamGroupSpec> unknown(1);
  unknown[0].params = {Model{}.w1};
  unknown[0].options = {{"optimizer", Value(std::string("muonn"))}};
  EXPECT_NE(optreg_test::message_of<optreg::PluginError>([&] { registry().create("adamw", std::move(unknown)); })
                .find("no optimizer named 'muonn' is registered (did you mean 'muon'?)"),
            std::string::npos);
}
