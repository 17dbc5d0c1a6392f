// State domains: every value of a state entry lies in its declared domain, or a load refuses it
// (through load_state_dict() and through a checkpoint file forged with a valid checksum) and
// the optimizer is unchanged; a step count at the top of its domain refuses the next step
// instead of overflowing.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

namespace {

using optreg::Checkpoint;
using optreg::Optimizer;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::StateDict;
using optreg::Tensor;
using optreg_test::in_tree_registry;
using optreg_test::message_of;
using optreg_test::same_bits;
using optreg_test::snapshot;
using optreg_test::step_with_gradients;

constexpr std::int64_t kTop = std::int64_t{1} << 53;
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr char kCountDomain[] = "[0, 9007199254740992]";

/// An optimizer over two parameters ('w' of shape [2, 3], 'b' of shape [3]) after two steps.
OptimizerPtr stepped(const std::string& name, const optreg::Options& options = {}) {
  std::vector<Parameter> params = {Parameter("w", Tensor({2, 3}, {0.5F, -1, 2, -0.25F, 1, 3})),
                                   Parameter("b", Tensor({3}, {0.1F, -0.2F, 0.3F}))};
  OptimizerPtr opt = in_tree_registry().create(name, params, options);
  step_with_gradients(*opt);
  step_with_gradients(*opt);
  return opt;
}

/// The optimizer's state dict with one change.
StateDict forged(const Optimizer& opt, const std::function<void(StateDict&)>& edit) {
  StateDict sd = opt.state_dict();
  edit(sd);
  return sd;
}

void set_count(StateDict& sd, std::uint64_t id, const std::string& entry, std::int64_t value) {
  sd.state.at(id).scalar(entry) = value;
}

/// The StateDictError that loading `sd` gives; the optimizer must be unchanged by it.
std::string refusal(Optimizer& opt, const StateDict& sd) {
  const Checkpoint before = snapshot(opt);
  const std::string m = message_of<optreg::StateDictError>([&] { opt.load_state_dict(sd); });
  EXPECT_TRUE(same_bits(snapshot(opt), before)) << "a refused load changed the optimizer";
  return m;
}

/// Writes `sd` with the optimizer's parameter values through the API, so that the file's
/// checksum is valid, and returns the CheckpointError that loading it into `opt` gives; the
/// optimizer must be unchanged by it.
std::string file_refusal(Optimizer& opt, const StateDict& sd, const std::string& path) {
  Checkpoint c = snapshot(opt);
  c.optimizer = sd;
  optreg::save_checkpoint(path, c);
  const Checkpoint before = snapshot(opt);
  const std::string m = message_of<optreg::CheckpointError>([&] { optreg::load_optimizer(path, opt); });
  EXPECT_TRUE(same_bits(snapshot(opt), before)) << "a refused checkpoint changed the optimizer";
  return m;
}

}  // namespace

TEST(StateDomain, AnAdamStepOfMinusOneIsRefusedNamingParameterEntryAndDomain) {
  auto opt = stepped("adam");
  EXPECT_EQ(refusal(*opt, forged(*opt, [](StateDict& sd) { set_count(sd, 1, "step", -1); })),
            std::string("state entry 'step' of parameter id 1 ('b', param group 0, position 1) = -1 is outside its domain ") +
                kCountDomain);
}

TEST(StateDomain, AnAdamStepOfInt64MaxIsRefusedBeforeItCanOverflow) {
  auto opt = stepped("adam");
  EXPECT_EQ(refusal(*opt, forged(*opt, [](StateDict& sd) { set_count(sd, 0, "step", kInt64Max); })),
            std::string("state entry 'step' of parameter id 0 ('w', param group 0, position 0) = 9223372036854775807 is "
                        "outside its domain ") +
                kCountDomain);
}

TEST(StateDomain, ANegativeSecondMomentIsRefusedNamingTheFirstBadElement) {
  auto opt = stepped("adam");
  const StateDict sd = forged(*opt, [](StateDict& d) {
    d.state.at(0).tensor("exp_avg_sq")[4] = -1.0F;
    d.state.at(0).tensor("exp_avg_sq")[5] = -2.0F;
  });
  EXPECT_EQ(refusal(*opt, sd), "state tensor 'exp_avg_sq' of parameter id 0 ('w', param group 0, position 0): element 4 = "
                               "-1.0 is outside its domain [0.0, inf]");
}

TEST(StateDomain, ANanFirstMomentIsRefusedAndAnInfiniteSecondMomentIsNot) {
  auto opt = stepped("adam");
  EXPECT_EQ(refusal(*opt, forged(*opt, [](StateDict& d) { d.state.at(1).tensor("exp_avg")[2] = std::nanf(""); })),
            "state tensor 'exp_avg' of parameter id 1 ('b', param group 0, position 1): element 2 = .nan is outside its "
            "domain [-inf, inf]");
  // The square of a large float32 gradient overflows to inf: a second moment may hold it.
  const StateDict inf = forged(*opt, [](StateDict& d) {
    d.state.at(1).tensor("exp_avg_sq")[0] = std::numeric_limits<float>::infinity();
  });
  opt->load_state_dict(inf);
  EXPECT_TRUE(same_bits(opt->state_dict(), inf));
}

TEST(StateDomain, AFloatScalarOutsideItsDomainIsRefused) {
  auto opt = stepped("nadam");
  EXPECT_EQ(refusal(*opt, forged(*opt, [](StateDict& d) { d.state.at(0).scalar("mu_product") = 1.5; })),
            "state entry 'mu_product' of parameter id 0 ('w', param group 0, position 0) = 1.5 is outside its domain "
            "[0.0, 1.0]");
}

TEST(StateDomain, ForgedCheckpointFilesAreRefusedNamingTheFile) {
  optreg_test::TempDir dir;
  auto opt = stepped("adam");
  const std::string minus_one = dir / "minus_one.ckpt";
  EXPECT_EQ(file_refusal(*opt, forged(*opt, [](StateDict& sd) { set_count(sd, 0, "step", -1); }), minus_one),
            "checkpoint " + minus_one + ": state entry 'step' of parameter id 0 ('w', param group 0, position 0) = -1 "
            "is outside its domain " + kCountDomain);
  const std::string int64_max = dir / "int64_max.ckpt";
  EXPECT_EQ(file_refusal(*opt, forged(*opt, [](StateDict& sd) { set_count(sd, 1, "step", kInt64Max); }), int64_max),
            "checkpoint " + int64_max + ": state entry 'step' of parameter id 1 ('b', param group 0, position 1) = "
            "9223372036854775807 is outside its domain " + kCountDomain);
  const std::string negative = dir / "negative.ckpt";
  EXPECT_EQ(file_refusal(*opt, forged(*opt, [](StateDict& sd) { sd.state.at(1).tensor("exp_avg_sq")[1] = -0.5F; }),
                         negative),
            "checkpoint " + negative + ": state tensor 'exp_avg_sq' of parameter id 1 ('b', param group 0, position 1): "
            "element 1 = -0.5 is outside its domain [0.0, inf]");
}

TEST(StateDomain, AStepCountAtTheTopOfItsDomainRefusesTheNextStepAndChangesNothing) {
  // adam, asgd, adafactor and sgd (with momentum) each advanced an int64 past 2^63 - 1 before.
  const std::vector<std::pair<std::string, optreg::Options>> cases = {
      {"adam", {}}, {"asgd", {}}, {"adafactor", {}}, {"sgd", {{"momentum", 0.9}}}};
  for (const auto& [name, options] : cases) {
    auto opt = stepped(name, options);
    const std::string entry = name == "sgd" ? "momentum_updates" : "step";
    opt->load_state_dict(forged(*opt, [&](StateDict& sd) { set_count(sd, 1, entry, kTop); }));
    for (Parameter& p : opt->parameters()) p.set_grad(Tensor(p.value().shape(), 1.0F));
    const Checkpoint before = snapshot(*opt);
    EXPECT_EQ(message_of<optreg::UsageError>([&] { opt->step(); }),
              "parameter 'b' cannot take another step: its state count '" + entry +
                  "' = 9007199254740992 is at the top of its domain [0, 9007199254740992] (a count stops at 2^53 "
                  "rather than overflow)")
        << name;
    EXPECT_TRUE(same_bits(snapshot(*opt), before)) << name << ": a refused step changed the optimizer";
  }
}

TEST(StateDomain, OneStepBelowTheTopIsStillTaken) {
  auto opt = stepped("adam");
  opt->load_state_dict(forged(*opt, [](StateDict& sd) {
    set_count(sd, 0, "step", kTop - 1);
    set_count(sd, 1, "step", kTop - 1);
  }));
  step_with_gradients(*opt);
  for (const Parameter& p : opt->parameters()) {
    EXPECT_EQ(std::get<std::int64_t>(opt->state(p).scalar("step")), kTop);
    for (std::size_t i = 0; i < p.value().numel(); ++i) EXPECT_TRUE(std::isfinite(p.value()[i])) << p.name();
  }
}

TEST(StateDomain, EveryInTreeOptimizerDeclaresADomainForEveryStateEntryButOne) {
  // rprop's `prev` remembers the last gradient as it came, NaN included: any value is right there.
  for (const auto& d : in_tree_registry().list()) {
    for (const auto& e : *d.state) {
      if (d.name == "rprop" && e.name == "prev") {
        EXPECT_FALSE(e.domain.has_value());
        continue;
      }
      ASSERT_TRUE(e.domain.has_value()) << d.name << ": " << e.name;
      EXPECT_FALSE(e.domain->contains(std::nan(""))) << d.name << ": " << e.name;
      if (e.kind == optreg::StateKind::Int) {
        EXPECT_EQ(e.domain->to_string(optreg::ValueType::Int), kCountDomain) << d.name << ": " << e.name;
      }
    }
  }
}

TEST(StateDomain, APluginBuiltBeforeDomainsLoadsAndItsStateAllowsAnyValue) {
  optreg::Registry r;
  ASSERT_EQ(r.load_file(OPTREG_FIXTURE_OLD_OPTIMIZER_ENTRY), std::vector<std::string>{"fixture_old_optimizer_entry"});
  const auto d = r.find("fixture_old_optimizer_entry");
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ(d->state->size(), 4U);  // its two entries, then the core's precision entries
  for (const auto& e : *d->state) {
    if (!optreg::is_precision_entry(e.name)) {
      EXPECT_FALSE(e.domain.has_value()) << e.name;
    }
  }
  std::vector<Parameter> params = {Parameter("w", Tensor({2}, {1, 2}))};
  auto opt = r.create("fixture_old_optimizer_entry", params);
  step_with_gradients(*opt);
  const StateDict sd = forged(*opt, [](StateDict& s) { set_count(s, 0, "step", -1); });
  opt->load_state_dict(sd);
  EXPECT_TRUE(same_bits(opt->state_dict(), sd));
}

// ------------------------------------------------------------------ schedulers

namespace {

OptimizerPtr sgd_for_schedules() {
  std::vector<Parameter> params = {Parameter("w", Tensor({2}, {1, 2}))};
  return in_tree_registry().create("sgd", params, {{"lr", 0.1}});
}

}  // namespace

TEST(StateDomain, ASchedulerStateOutsideItsDomainIsRefused) {
  auto opt = sgd_for_schedules();
  auto cosine = in_tree_registry().create_scheduler("cosine", *opt, {{"T_max", 10}});
  optreg::Options st = cosine->state();
  st["last_step"] = -1;
  EXPECT_EQ(message_of<optreg::StateDictError>([&] { cosine->load_state(st); }),
            std::string("scheduler 'cosine': state entry 'last_step' = -1 is outside its domain ") + kCountDomain);
  st["last_step"] = kInt64Max;
  EXPECT_EQ(message_of<optreg::StateDictError>([&] { cosine->load_state(st); }),
            std::string("scheduler 'cosine': state entry 'last_step' = 9223372036854775807 is outside its domain ") +
                kCountDomain);
  EXPECT_EQ(cosine->last_step(), 0);

  auto plateau = in_tree_registry().create_scheduler("plateau", *opt);
  optreg::Options ps = plateau->state();
  ps["num_bad_steps"] = kInt64Max;
  EXPECT_EQ(message_of<optreg::StateDictError>([&] { plateau->load_state(ps); }),
            std::string("scheduler 'plateau': state entry 'num_bad_steps' = 9223372036854775807 is outside its domain ") +
                kCountDomain);
  ps = plateau->state();
  ps["best"] = std::nan("");
  EXPECT_EQ(message_of<optreg::StateDictError>([&] { plateau->load_state(ps); }),
            "scheduler 'plateau': state entry 'best' = .nan is outside its domain [-inf, inf]");
}

TEST(StateDomain, ASchedulerAtTheTopOfItsStepCountRefusesTheNextStep) {
  auto opt = sgd_for_schedules();
  auto cosine = in_tree_registry().create_scheduler("cosine", *opt, {{"T_max", 10}});
  optreg::Options st = cosine->state();
  st["last_step"] = kTop;
  cosine->load_state(st);
  const auto lr = opt->param_groups()[0].option("lr");
  EXPECT_EQ(message_of<optreg::UsageError>([&] { cosine->step(); }),
            "scheduler 'cosine' cannot take another step: its state count 'last_step' = 9007199254740992 is at the top "
            "of its domain [0, 9007199254740992] (a count stops at 2^53 rather than overflow)");
  EXPECT_EQ(cosine->last_step(), kTop);
  EXPECT_EQ(opt->param_groups()[0].option("lr"), lr);

  auto plateau = in_tree_registry().create_scheduler("plateau", *opt, {{"patience", kTop}});
  optreg::Options ps = plateau->state();
  ps["num_bad_steps"] = kTop;
  ps["best"] = 0.0;
  plateau->load_state(ps);
  EXPECT_EQ(message_of<optreg::UsageError>([&] { plateau->step(1.0); }),
            "scheduler 'plateau' cannot take another step: its state count 'num_bad_steps' = 9007199254740992 is at the "
            "top of its domain [0, 9007199254740992] (a count stops at 2^53 rather than overflow)");
  EXPECT_EQ(plateau->state(), ps);
}
