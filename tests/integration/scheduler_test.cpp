// Schedulers as the registry's second kind of plugin: loading and refusals, the descriptor of
// the first ABI 1 size, lifetime, and the Scheduler base's contract (stepping kinds, state,
// sequences, errors).

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/abi.hpp>
#include <optreg/registry.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

using optreg_test::canonical;
using optreg_test::message_of;

std::vector<optreg::Parameter> params() {
  return {optreg::Parameter("w", optreg::Tensor({3})), optreg::Parameter("b", optreg::Tensor({2}))};
}

/// sgd with two groups at lrs 0.1 and 0.01.
optreg::OptimizerPtr two_group_sgd(const optreg::Registry& r) {
  auto p = params();
  return r.create("sgd", std::vector<optreg::ParamGroupSpec>{{{p[0]}, {{"lr", 0.1}}}, {{p[1]}, {{"lr", 0.01}}}},
                  {{"momentum", 0.9}});
}

const optreg::Registry& registry() { return optreg_test::reference_registry(); }

/// The number of live schedulers made by the fixture scheduler_like library, or -1 when the
/// library is not loaded.
int live_schedulers() { return optreg_test::live_count(OPTREG_FIXTURE_SCHEDULER_LIKE, "optreg_fixture_live_schedulers"); }

}  // namespace

TEST(SchedulerRegistry, DescriptorOfTheFirstAbi1SizeLoadsAndItsTrailingBytesAreNeverRead) {
  optreg::Registry r;
  EXPECT_EQ(r.load_file(OPTREG_FIXTURE_OLD_DESCRIPTOR), std::vector<std::string>{"fixture_old_descriptor"});
  ASSERT_TRUE(r.find("fixture_old_descriptor").has_value());
  EXPECT_EQ(r.list_schedulers().size(), 2U);  // only the core's sequential and chained
  auto opt = r.create("fixture_old_descriptor", params());
  EXPECT_EQ(opt->name(), "fixture_old_descriptor");
}

TEST(SchedulerRegistry, PluginListsFindsAndCreatesItsSchedulers) {
  optreg::Registry r;
  EXPECT_EQ(r.load_file(OPTREG_TEST_SCHEDULERS_PLUGIN),
            (std::vector<std::string>{"step", "multistep", "exponential", "cosine", "linear", "onecycle", "warm_restarts",
                                      "polynomial", "constant", "cyclic", "piecewise", "plateau"}));
  EXPECT_TRUE(r.list().empty());
  std::vector<std::string> names;
  for (const auto& d : r.list_schedulers()) names.push_back(d.name);
  EXPECT_EQ(names, (std::vector<std::string>{"chained", "constant", "cosine", "cyclic", "exponential", "linear",
                                             "multistep", "onecycle", "piecewise", "plateau", "polynomial", "sequential",
                                             "step", "warm_restarts"}));
  const auto plateau = r.find_scheduler("plateau");
  ASSERT_TRUE(plateau.has_value());
  EXPECT_TRUE(plateau->needs_metric);
  EXPECT_EQ(plateau->source, canonical(OPTREG_TEST_SCHEDULERS_PLUGIN));
  EXPECT_EQ(r.find_scheduler("sequential")->source, "built in");
  EXPECT_FALSE(r.find_scheduler("cosin").has_value());
}

TEST(SchedulerRegistry, UnknownSchedulerNamesTheClosestOnes) {
  auto opt = two_group_sgd(registry());
  EXPECT_EQ(message_of<optreg::PluginError>([&] { registry().create_scheduler("cosin", *opt); }),
            "no scheduler named 'cosin' is registered (did you mean 'cosine'?); registered: constant, cosine, cyclic, "
            "exponential, linear, multistep, onecycle, piecewise, plateau, polynomial, step, warm_restarts, sequential, "
            "chained");
}

TEST(SchedulerRegistry, SequentialIsMadeBySequenceNotByName) {
  auto opt = two_group_sgd(registry());
  EXPECT_EQ(message_of<optreg::PluginError>([&] { registry().create_scheduler("sequential", *opt); }),
            "scheduler 'sequential' composes other schedulers: make it with make_sequential() or a config's "
            "'schedulers' list");
}

TEST(SchedulerRegistry, PluginDeclaringTheCoresSequentialIsRefused) {
  optreg::Registry r;
  EXPECT_EQ(message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_SCHEDULER_RESERVED); }),
            "plugin " + canonical(OPTREG_FIXTURE_SCHEDULER_RESERVED) +
                ": scheduler 'sequential': the name belongs to the core's sequencing scheduler");
}

TEST(SchedulerRegistry, DuplicateSchedulerNameIsRefusedNamingTheFirstFile) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SCHEDULERS_PLUGIN);
  EXPECT_EQ(message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_DUPLICATE_COSINE); }),
            "plugin " + canonical(OPTREG_FIXTURE_DUPLICATE_COSINE) + ": scheduler 'cosine' is already registered by " +
                canonical(OPTREG_TEST_SCHEDULERS_PLUGIN) + "; two plugins cannot share a name");
  EXPECT_EQ(r.refused().size(), 1U);
}

TEST(SchedulerRegistry, ShortSchedulerEntriesAreRefused) {
  optreg::Registry r;
  EXPECT_EQ(message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_SCHEDULER_ENTRY_SIZE); }),
            "plugin " + canonical(OPTREG_FIXTURE_SCHEDULER_ENTRY_SIZE) + ": its scheduler entries are 8 bytes, smaller than the " +
                std::to_string(optreg::abi::kMinSchedulerEntrySize) + " bytes of ABI 3");
}

TEST(SchedulerRegistry, SchedulerKeepsItsLibraryLoadedAfterTheRegistryIsGone) {
  auto p = params();
  optreg::Registry optimizers;
  optimizers.load_file(OPTREG_TEST_SGD_PLUGIN);
  auto opt = optimizers.create("sgd", p, {{"lr", 1.0}});
  optreg::SchedulerPtr s;
  {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_SCHEDULER_LIKE);
    s = r.create_scheduler("fixture_halving", *opt);
  }
  EXPECT_EQ(live_schedulers(), 1);
  s->step();
  EXPECT_EQ(opt->param_groups()[0].option("lr").as_float(), 0.5);
  s.reset();
  EXPECT_EQ(live_schedulers(), -1) << "the library should be unloaded with its last scheduler";
}

TEST(Scheduler, SetsEveryGroupsLrThroughTheOptimizerAndRecordsBaseLrs) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("step", *opt, {{"step_size", 2}, {"gamma", 0.5}});
  EXPECT_EQ(s->base_lrs(), (std::vector<double>{0.1, 0.01}));
  EXPECT_EQ(s->last_step(), 0);
  s->step();
  s->step();
  EXPECT_EQ(s->last_step(), 2);
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.05, 0.005}));
  EXPECT_EQ(opt->param_groups()[1].option("lr").as_float(), 0.005);
  EXPECT_EQ(s->name(), "step");
  EXPECT_EQ(s->plugin_version(), "1.0.0");
  EXPECT_EQ(s->options().at("step_size").as_int(), 2);
}

TEST(Scheduler, ChainableFormCarriesOnFromAnLrTheHostSet) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("exponential", *opt, {{"gamma", 0.5}});
  opt->set_option("lr", 1.0);
  s->step();
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.5, 0.5}));
}

TEST(Scheduler, CallingTheOtherKindOfStepIsAUsageErrorAndChangesNothing) {
  auto opt = two_group_sgd(registry());
  auto cosine = registry().create_scheduler("cosine", *opt, {{"T_max", 10}});
  EXPECT_EQ(message_of<optreg::UsageError>([&] { cosine->step(0.5); }),
            "scheduler 'cosine' is driven by steps, not by a metric: call step() without a metric");
  EXPECT_EQ(cosine->last_step(), 0);
  auto opt2 = two_group_sgd(registry());
  auto plateau = registry().create_scheduler("plateau", *opt2);
  EXPECT_TRUE(plateau->needs_metric());
  EXPECT_EQ(message_of<optreg::UsageError>([&] { plateau->step(); }),
            "scheduler 'plateau' is driven by a metric: call step(metric)");
  EXPECT_EQ(plateau->last_step(), 0);
}

TEST(Scheduler, RequiredOptionLeftOutIsAnOptionError) {
  auto opt = two_group_sgd(registry());
  EXPECT_EQ(message_of<optreg::OptionError>([&] { registry().create_scheduler("cosine", *opt); }),
            "scheduler 'cosine': option 'T_max' is required (a positive number of steps)");
  EXPECT_EQ(message_of<optreg::OptionError>([&] { registry().create_scheduler("multistep", *opt, {{"milestones", {2.5}}}); }),
            "scheduler 'multistep': option 'milestones' must hold whole numbers of steps; 2.5 is not one");
}

TEST(Scheduler, OneCycleNeedsMomentumToCycleIt) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SCHEDULERS_PLUGIN);
  r.load_file(OPTREG_FIXTURE_SGD_LIKE);
  auto opt = r.create("fixture_sgd_like", params());
  EXPECT_EQ(message_of<optreg::OptionError>(
                [&] { r.create_scheduler("onecycle", *opt, {{"max_lr", 1.0}, {"total_steps", 10}}); }),
            "scheduler 'onecycle': option 'cycle_momentum' = true needs an optimizer with a float option 'momentum' or a "
            "list 'betas', and optimizer 'fixture_sgd_like' has neither (set cycle_momentum: false)");
  auto s = r.create_scheduler("onecycle", *opt, {{"max_lr", 1.0}, {"total_steps", 10}, {"cycle_momentum", false}});
  ASSERT_EQ(s->last_lr().size(), 1U);
  EXPECT_NEAR(s->last_lr()[0], 1.0 / 25, 1e-15);  // the start of the rise, as PyTorch rounds it
}

TEST(Scheduler, PiecewiseRefusesPointsThatDoNotMakeASchedule) {
  auto opt = two_group_sgd(registry());
  const auto refusal = [&](const optreg::Options& o) {
    return message_of<optreg::OptionError>([&] { registry().create_scheduler("piecewise", *opt, o); });
  };
  EXPECT_EQ(refusal({}), "scheduler 'piecewise': option 'steps' is required: the steps of at least one point");
  EXPECT_EQ(refusal({{"steps", {0.0, 10.0}}, {"factors", {1.0}}}),
            "scheduler 'piecewise': option 'factors' has 1 values for 2 steps; give one factor per step");
  EXPECT_EQ(refusal({{"steps", {0.0, 10.0, 10.0}}, {"factors", {1.0, 0.5, 0.1}}}),
            "scheduler 'piecewise': option 'steps' must increase: 10.0 follows 10.0");
  EXPECT_EQ(refusal({{"steps", {0.0, 2.5}}, {"factors", {1.0, 0.5}}}),
            "scheduler 'piecewise': option 'steps' must hold whole numbers of steps; 2.5 is not one");
  const std::string negative = refusal({{"steps", {0.0, 5.0}}, {"factors", {1.0, -0.5}}});
  EXPECT_NE(negative.find("'factors'"), std::string::npos) << negative;
}

TEST(Scheduler, PiecewiseHoldsTheEndFactorsOutsideItsPointsAndInterpolatesBetween) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("piecewise", *opt, {{"steps", {2.0, 6.0}}, {"factors", {0.5, 0.1}}});
  const double base = opt->param_groups()[0].option("lr").as_float() / 0.5;  // set to 0.5 x base at setup
  std::vector<double> lrs;
  for (int t = 1; t <= 8; ++t) {
    s->step();
    lrs.push_back(s->last_lr()[0] / base);
  }
  const std::vector<double> expected = {0.5, 0.5, 0.5 + (0.1 - 0.5) * 0.25, 0.5 + (0.1 - 0.5) * 0.5,
                                        0.5 + (0.1 - 0.5) * 0.75, 0.1, 0.1, 0.1};
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(lrs[i], expected[i], 1e-15) << "step " << i + 1;
}

TEST(Scheduler, CyclicNeedsMomentumToCycleItAndWarmRestartsNeedsItsPeriod) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SCHEDULERS_PLUGIN);
  r.load_file(OPTREG_FIXTURE_SGD_LIKE);
  auto opt = r.create("fixture_sgd_like", params());
  EXPECT_EQ(message_of<optreg::OptionError>([&] { r.create_scheduler("cyclic", *opt, {{"max_lr", 1.0}}); }),
            "scheduler 'cyclic': option 'cycle_momentum' = true needs an optimizer with a float option 'momentum' or a "
            "list 'betas', and optimizer 'fixture_sgd_like' has neither (set cycle_momentum: false)");
  auto s = r.create_scheduler("cyclic", *opt, {{"max_lr", 1.0}, {"cycle_momentum", false}});
  EXPECT_EQ(s->last_lr(), (std::vector<double>{1e-3}));  // base_lr
  EXPECT_EQ(message_of<optreg::OptionError>([&] { r.create_scheduler("warm_restarts", *opt); }),
            "scheduler 'warm_restarts': option 'T_0' is required (a positive number of steps)");
  EXPECT_THROW(r.create_scheduler("constant", *opt, {{"factor", 0.0}}), optreg::OptionError);  // 1 / factor at the end
}

TEST(Scheduler, OneCycleHoldsItsFinalValuesAtTotalStepsAndRefusesToGoFurther) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("onecycle", *opt, {{"max_lr", 1.0}, {"total_steps", 4}});
  for (int i = 0; i < 4; ++i) s->step();
  // Step total_steps, one past the cycle's last step, holds the final lr and momentum.
  EXPECT_EQ(s->last_lr(), (std::vector<double>{1.0 / 25 / 1e4, 1.0 / 25 / 1e4}));
  EXPECT_EQ(opt->param_groups()[1].option("momentum").as_float(), 0.95);
  const auto lrs = s->last_lr();
  EXPECT_EQ(message_of<optreg::UsageError>([&] { s->step(); }),
            "scheduler 'onecycle': step 5 is past the 4 total steps of the cycle");
  EXPECT_EQ(s->last_step(), 4);
  EXPECT_EQ(s->last_lr(), lrs);
}

TEST(Scheduler, StateRoundTripsIntoAFreshSchedulerThatThenContinuesIdentically) {
  auto a_opt = two_group_sgd(registry());
  auto a = registry().create_scheduler("plateau", *a_opt, {{"patience", 1}, {"cooldown", 1}});
  for (double m : {1.0, 0.5, 0.6, 0.7, 0.8}) a->step(m);
  auto b_opt = two_group_sgd(registry());
  auto b = registry().create_scheduler("plateau", *b_opt, {{"patience", 1}, {"cooldown", 1}});
  b->load_state(a->state());
  b_opt->load_state_dict(a_opt->state_dict());
  EXPECT_EQ(b->state(), a->state());
  for (double m : {0.9, 1.0, 0.1, 0.2, 0.3}) {
    a->step(m);
    b->step(m);
    EXPECT_EQ(b->last_lr(), a->last_lr());
  }
  EXPECT_EQ(b->state(), a->state());
}

TEST(Scheduler, LoadStateNamesTheKeyAtFaultAndChangesNothing) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("plateau", *opt);
  s->step(1.0);
  const optreg::Options before = s->state();
  const auto broken = [&](const std::function<void(optreg::Options&)>& edit) {
    optreg::Options st = before;
    edit(st);
    return message_of<optreg::StateDictError>([&] { s->load_state(st); });
  };
  EXPECT_EQ(broken([](optreg::Options& st) { st.erase("last_step"); }), "scheduler 'plateau': the state lacks the entry 'last_step'");
  EXPECT_EQ(broken([](optreg::Options& st) { st["last_step"] = 1.5; }),
            "scheduler 'plateau': state entry 'last_step' is a float, expected an int");
  EXPECT_EQ(broken([](optreg::Options& st) { st["base_lrs"] = optreg::Value({0.1}); }),
            "scheduler 'plateau': state entry 'base_lrs' holds 1 lrs, but the optimizer has 2 param groups");
  EXPECT_EQ(broken([](optreg::Options& st) { st.erase("best"); }), "scheduler 'plateau': the state lacks the entry 'best'");
  EXPECT_EQ(broken([](optreg::Options& st) { st["num_bad_steps"] = -1; }),
            "scheduler 'plateau': state entry 'num_bad_steps' = -1 is outside its domain [0, 9007199254740992]");
  EXPECT_EQ(broken([](optreg::Options& st) { st["bset"] = 1.0; }),
            "scheduler 'plateau': unknown state entry 'bset' (did you mean 'best'?)");
  EXPECT_EQ(s->state(), before);
}

TEST(Scheduler, ANameFromAForgedStateIsEscapedAndCutInTheMessage) {
  auto opt = two_group_sgd(registry());
  auto s = registry().create_scheduler("plateau", *opt);
  optreg::Options st = s->state();
  st[std::string(100000, 'b') + "\x1b[2J"] = 1.0;
  EXPECT_EQ(message_of<optreg::StateDictError>([&] { s->load_state(st); }),
            "scheduler 'plateau': unknown state entry '" + std::string(64, 'b') + "'... (100004 bytes)");
}

TEST(Sequential, RefusesBadSequencesNamingWhatIsWrong) {
  auto opt = two_group_sgd(registry());
  const auto two = [&] {
    std::vector<optreg::SchedulerPtr> v;
    v.push_back(registry().create_scheduler("linear", *opt));
    opt->set_option(0, "lr", 0.1);
    opt->set_option(1, "lr", 0.01);
    v.push_back(registry().create_scheduler("exponential", *opt, {{"gamma", 0.9}}));
    return v;
  };
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, two(), {}); }),
            "scheduler 'sequential' needs one milestone fewer than schedulers: got 2 schedulers and 0 milestones");
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, two(), {0}); }),
            "scheduler 'sequential': milestones must be positive and strictly increasing; milestones[0] = 0");
  auto other = two_group_sgd(registry());
  std::vector<optreg::SchedulerPtr> mixed = two();
  mixed[1] = registry().create_scheduler("step", *other, {{"step_size", 1}});
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, std::move(mixed), {3}); }),
            "scheduler 'sequential': schedulers[1] ('step') is bound to another optimizer");
  std::vector<optreg::SchedulerPtr> drifted;
  drifted.push_back(registry().create_scheduler("linear", *opt));
  drifted.push_back(registry().create_scheduler("exponential", *opt, {{"gamma", 0.9}}));  // attached at linear's lrs
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, std::move(drifted), {3}); }),
            "scheduler 'sequential': schedulers[1] ('exponential') was attached when the optimizer held other lrs than "
            "schedulers[0]; attach every scheduler of a sequence at the same base lrs");
  std::vector<optreg::SchedulerPtr> metric;
  metric.push_back(registry().create_scheduler("plateau", *opt));
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, std::move(metric), {}); }),
            "scheduler 'sequential': schedulers[0] ('plateau') is driven by a metric; a sequence steps its schedulers by "
            "count");
}

TEST(Sequential, SwitchesAtTheMilestoneAndRestartsTheNextFromTheBaseLrs) {
  auto opt = two_group_sgd(registry());
  std::vector<optreg::SchedulerPtr> v;
  v.push_back(registry().create_scheduler("exponential", *opt, {{"gamma", 0.5}}));
  opt->set_option(0, "lr", 0.1);
  opt->set_option(1, "lr", 0.01);
  v.push_back(registry().create_scheduler("step", *opt, {{"step_size", 2}, {"gamma", 0.1}}));
  auto s = optreg::make_sequential(*opt, std::move(v), {2});
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.1, 0.01}));
  s->step();
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.05, 0.005}));
  s->step();  // milestone: step restarts at its step 0 from the base lrs
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.1, 0.01}));
  s->step();
  s->step();  // step's step 2
  EXPECT_DOUBLE_EQ(s->last_lr()[0], 0.1 * 0.1);
  EXPECT_EQ(s->state().at("schedulers.1.name").as_string(), "step");
  EXPECT_EQ(s->state().at("schedulers.1.last_step").as_int(), 2);
}

TEST(Chained, StepsEveryChildFromTheLrsTheOneBeforeSetAndItsStateRoundTrips) {
  const auto make = [&](optreg::Optimizer& opt) {
    std::vector<optreg::SchedulerPtr> v;
    v.push_back(registry().create_scheduler("linear", opt, {{"start_factor", 0.5}, {"total_iters", 2}}));
    opt.set_option(0, "lr", 0.1);
    opt.set_option(1, "lr", 0.01);
    v.push_back(registry().create_scheduler("exponential", opt, {{"gamma", 0.5}}));
    return optreg::make_chained(opt, std::move(v));
  };
  auto opt = two_group_sgd(registry());
  auto s = make(*opt);
  EXPECT_EQ(s->name(), "chained");
  EXPECT_EQ(s->last_lr(), (std::vector<double>{0.05, 0.005}));  // the warm-up's start, times 1
  s->step();
  // linear: x (1 + 0.5 / (2 * 0.5 + 0 * 0.5)) = x 1.5; exponential: x 0.5.
  EXPECT_DOUBLE_EQ(s->last_lr()[0], 0.05 * 1.5 * 0.5);
  const optreg::Options saved = s->state();
  const std::vector<double> lrs = s->last_lr();  // a checkpoint holds them in the optimizer's state
  EXPECT_EQ(saved.at("schedulers.0.name").as_string(), "linear");
  EXPECT_EQ(saved.at("schedulers.1.last_step").as_int(), 1);
  s->step();
  s->step();
  // A fresh chain over a fresh optimizer, loaded with the state after one step, continues alike.
  auto opt2 = two_group_sgd(registry());
  auto s2 = make(*opt2);
  s2->load_state(saved);
  for (std::size_t g = 0; g < lrs.size(); ++g) opt2->set_option(g, "lr", lrs[g]);
  s2->step();
  s2->step();
  EXPECT_EQ(s2->last_lr(), s->last_lr());
  EXPECT_EQ(s2->last_step(), 3);
}

TEST(Chained, RefusesWhatCannotBeChainedNamingIt) {
  auto opt = two_group_sgd(registry());
  std::vector<optreg::SchedulerPtr> none;
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_chained(*opt, std::move(none)); }),
            "scheduler 'chained' needs at least one scheduler");
  std::vector<optreg::SchedulerPtr> v;
  v.push_back(registry().create_scheduler("exponential", *opt, {{"gamma", 0.5}}));
  v.push_back(registry().create_scheduler("plateau", *opt));
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_chained(*opt, std::move(v)); }),
            "scheduler 'chained': schedulers[1] ('plateau') is driven by a metric; a chain steps its schedulers by count");
  std::vector<optreg::SchedulerPtr> inner;
  inner.push_back(registry().create_scheduler("exponential", *opt, {{"gamma", 0.5}}));
  std::vector<optreg::SchedulerPtr> outer;
  outer.push_back(optreg::make_chained(*opt, std::move(inner)));
  EXPECT_EQ(message_of<optreg::UsageError>([&] { optreg::make_sequential(*opt, std::move(outer), {}); }),
            "scheduler 'sequential': schedulers[0] ('chained') is a composite scheduler itself; a sequence holds plugin "
            "schedulers only");
}
