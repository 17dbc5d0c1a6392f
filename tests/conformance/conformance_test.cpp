// The conformance kit on every plugin of the in-tree plugin folder (a new plugin is covered by
// being there), and on plugins broken on purpose: each broken one fails exactly the check it is
// broken for, with a detail that says what differed and where.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/conformance.hpp>

namespace fs = std::filesystem;

namespace {

using Status = optreg::ConformanceResult::Status;

const std::vector<std::string> kEveryCheck = {
    "descriptor_valid",
    "defaults_in_range",
    "step_without_gradients_changes_nothing",
    "lr_zero_changes_nothing",
    "state_dict_round_trips_through_a_checkpoint_file",
    "resumed_run_is_bit_exact",
    "load_state_dict_refuses_mismatches",
    "state_outside_its_domain_is_refused",
    "counts_stop_at_the_top_of_their_domain",
    "convex_quadratic_loss_falls",
    "zero_gradients_produce_no_nan",
    "two_instances_on_two_threads_do_not_interfere",
    "every_declared_dtype_resumes_and_splits_alike",
};

const std::vector<std::string> kEverySchedulerCheck = {
    "scheduler_descriptor_valid",
    "scheduler_defaults_accepted",
    "scheduler_state_round_trips_through_a_checkpoint_file",
    "scheduler_resumed_run_is_bit_exact",
    "scheduler_load_state_refuses_other_states",
    "scheduler_counts_stop_at_the_top_of_their_domain",
};

/// Every "*.so" file of the in-tree plugin folder, sorted.
std::vector<std::string> in_tree_plugins() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(OPTREG_TEST_PLUGIN_DIR, ec)) {
    if (e.path().extension() == ".so") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string describe(const optreg::ConformanceResult& r) {
  return std::string(optreg::to_string(r.status)) + "  " + r.optimizer + "  " + r.check + "  (" + r.detail + ")";
}

std::string describe(const std::vector<optreg::ConformanceResult>& results) {
  std::string s;
  for (const auto& r : results) s += describe(r) + "\n";
  return s;
}

/// The results of one optimizer or scheduler by check name.
std::map<std::string, optreg::ConformanceResult> by_check(const std::vector<optreg::ConformanceResult>& results) {
  std::map<std::string, optreg::ConformanceResult> out;
  for (const auto& r : results) out.emplace(r.check, r);
  return out;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST(ConformanceCoverage, InTreePluginFolderHoldsPlugins) {
  const auto plugins = in_tree_plugins();
  EXPECT_FALSE(plugins.empty()) << "no *.so file in " << OPTREG_TEST_PLUGIN_DIR;
  std::vector<std::string> names;
  for (const auto& p : plugins) names.push_back(fs::path(p).filename().string());
  EXPECT_NE(std::find(names.begin(), names.end(), "liboptreg_sgd.so"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "liboptreg_adam.so"), names.end());
}

TEST_P(Conformance, EveryOptimizerOfThePluginPassesEveryCheck) {
  const auto start = std::chrono::steady_clock::now();
  const auto results = optreg::run_conformance(GetParam());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << describe(results) << "(" << seconds << " s)\n";
  ASSERT_FALSE(results.empty());
  std::map<std::string, std::vector<std::string>> checks;
  std::map<std::string, std::vector<std::string>> scheduler_checks;
  for (const auto& r : results) {
    if (r.kind == optreg::ConformanceResult::Kind::Scheduler) {
      EXPECT_EQ(r.status, Status::Passed) << describe(r);
      scheduler_checks[r.optimizer].push_back(r.check);
      continue;
    }
    EXPECT_FALSE(r.optimizer.empty()) << describe(r);
    EXPECT_NE(r.status, Status::Failed) << describe(r);
    if (r.status == Status::Skipped) {
      EXPECT_FALSE(r.detail.empty()) << "a skip must give its reason: " << describe(r);
    }
    checks[r.optimizer].push_back(r.check);
  }
  for (const auto& [optimizer, names] : checks) EXPECT_EQ(names, kEveryCheck) << optimizer;
  for (const auto& [scheduler, names] : scheduler_checks) EXPECT_EQ(names, kEverySchedulerCheck) << scheduler;
}

/// The results of each optimizer or scheduler, by name, in the order they came.
std::vector<std::pair<std::string, std::vector<optreg::ConformanceResult>>> by_subject(
    const std::vector<optreg::ConformanceResult>& results) {
  std::vector<std::pair<std::string, std::vector<optreg::ConformanceResult>>> out;
  for (const auto& r : results) {
    if (out.empty() || out.back().first != r.optimizer) out.emplace_back(r.optimizer, std::vector<optreg::ConformanceResult>{});
    out.back().second.push_back(r);
  }
  return out;
}

TEST(ConformanceSchedulers, EverySchedulerOfTheSchedulerPluginAndTheirSequencePassEveryCheck) {
  const auto results = optreg::run_conformance(OPTREG_TEST_SCHEDULERS_PLUGIN);
  std::vector<std::string> names;
  for (const auto& [name, checks] : by_subject(results)) {
    names.push_back(name);
    std::vector<std::string> checked;
    for (const auto& r : checks) {
      EXPECT_EQ(r.kind, optreg::ConformanceResult::Kind::Scheduler) << describe(r);
      EXPECT_EQ(r.status, Status::Passed) << describe(r);
      checked.push_back(r.check);
    }
    EXPECT_EQ(checked, kEverySchedulerCheck) << name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"step", "multistep", "exponential", "cosine", "linear", "onecycle",
                                             "warm_restarts", "polynomial", "constant", "cyclic", "piecewise", "plateau",
                                             "sequential", "chained"}));
}

TEST(ConformanceSchedulers, EveryInTreeScheduleChangesTheLrAfterTheResumedRunsSave) {
  for (const auto& [name, checks] : by_subject(optreg::run_conformance(OPTREG_TEST_SCHEDULERS_PLUGIN))) {
    const auto c = by_check(checks);
    const auto& made = c.at("scheduler_defaults_accepted");
    EXPECT_FALSE(contains(made.detail, "the lr never changed")) << describe(made);
    const auto& resumed = c.at("scheduler_resumed_run_is_bit_exact");
    EXPECT_FALSE(contains(resumed.detail, "did not change after the save")) << describe(resumed);
  }
}

TEST(ConformanceSchedulers, TheKitChoosesOptionsThatMakeEachInTreeSchedulerMeaningful) {
  const auto results = optreg::run_conformance(OPTREG_TEST_SCHEDULERS_PLUGIN);
  std::map<std::string, std::string> made;
  for (const auto& r : results) {
    if (r.check == "scheduler_defaults_accepted") made[r.optimizer] = r.detail;
  }
  const std::map<std::string, std::string> expected = {
      {"step", "made with step_size = 4 over the stand-in optimizer"},
      {"multistep", "made with milestones = [4.0, 12.0] over"},
      {"exponential", "made with gamma = 0.5 over"},
      {"cosine", "made with T_max = 4 over"},
      {"linear", "made with its defaults over"},
      {"onecycle", "made with max_lr = 0.5, total_steps = 20 over"},
      {"warm_restarts", "made with T_0 = 4 over"},
      {"polynomial", "made with its defaults over"},
      {"constant", "made with its defaults over"},
      {"cyclic", "made with max_lr = 0.5, step_size_down = 4 over"},
      {"piecewise", "made with factors = [4.0, 12.0], steps = [4.0, 12.0] over"},
      {"plateau", "made with its defaults over the stand-in optimizer (2 param groups at lrs [0.1, 0.025]) and stepped 20 "
                  "times with a metric of 1, 1/2, then 1/3 at every step: lrs [0.1, 0.025] after setup, "
                  "[0.010000000000000002, 0.0025000000000000005] at the end"},
      {"sequential", "made with step at step_size = 4, multistep at milestones = [4.0, 12.0], exponential at gamma = 0.5, "
                     "cosine at T_max = 4, linear at its defaults, warm_restarts at T_0 = 4, polynomial at its defaults, "
                     "constant at its defaults, piecewise at factors = [4.0, 12.0], steps = [4.0, 12.0], switching at "
                     "steps 2, 4, 6, 8, 10, 12, 14, 16 over"},
      {"chained", "made with step at step_size = 4, multistep at milestones = [4.0, 12.0], exponential at gamma = 0.5, "
                  "cosine at T_max = 4, linear at its defaults, warm_restarts at T_0 = 4, polynomial at its defaults, "
                  "constant at its defaults, piecewise at factors = [4.0, 12.0], steps = [4.0, 12.0], chained over"},
  };
  for (const auto& [name, words] : expected) {
    EXPECT_TRUE(contains(made[name], words)) << name << ": '" << words << "' missing from: " << made[name];
  }
  EXPECT_TRUE(contains(made["step"], "its defaults alone are refused with an OptionError: scheduler 'step': option "
                                     "'step_size' is required"))
      << made["step"];
  EXPECT_TRUE(contains(made["sequential"],
                       "left out of the sequence: onecycle (it sets base lrs of its own), cyclic (it sets base lrs of its own)"))
      << made["sequential"];
}

TEST(ConformanceSchedulers, PlateauCountsStopAtTheTopAndTheSequenceRefusesItsChildrensStates) {
  const auto results = optreg::run_conformance(OPTREG_TEST_SCHEDULERS_PLUGIN);
  std::map<std::string, std::map<std::string, optreg::ConformanceResult>> c;
  for (const auto& r : results) c[r.optimizer].emplace(r.check, r);
  const auto& counts = c["plateau"].at("scheduler_counts_stop_at_the_top_of_their_domain");
  EXPECT_TRUE(contains(counts.detail, "from num_bad_steps at the top, step() was refused; from cooldown_counter at the top, "
                                      "step() left a state it accepts"))
      << describe(counts);
  const auto& refusals = c["sequential"].at("scheduler_load_state_refuses_other_states");
  EXPECT_TRUE(contains(refusals.detail, "and the states of step, multistep, exponential, cosine, linear, onecycle, "
                                        "warm_restarts, polynomial, constant, cyclic, piecewise, plateau"))
      << describe(refusals);
  const auto& step_refusals = c["step"].at("scheduler_load_state_refuses_other_states");
  EXPECT_TRUE(contains(step_refusals.detail, "load_optimizer() refused with a CheckpointError the checkpoints of multistep, "
                                             "exponential, cosine, linear, onecycle, warm_restarts, polynomial, constant, "
                                             "cyclic, piecewise, whose states hold the same entries"))
      << describe(step_refusals);
}

INSTANTIATE_TEST_SUITE_P(InTreePlugins, Conformance, ::testing::ValuesIn(in_tree_plugins()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = fs::path(info.param).stem().string();
                           for (char& c : s) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return s;
                         });

TEST(ConformanceFixtures, SgdAndAdamSkipNothing) {
  for (const char* plugin : {OPTREG_TEST_SGD_PLUGIN, OPTREG_TEST_ADAM_PLUGIN}) {
    for (const auto& r : optreg::run_conformance(plugin)) EXPECT_EQ(r.status, Status::Passed) << describe(r);
  }
}

/// A broken fixture fails `broken` with a detail holding every one of `words`, and passes the rest.
void expect_only_failure(const char* plugin, const std::string& broken, const std::vector<std::string>& words) {
  const auto results = optreg::run_conformance(plugin);
  ASSERT_EQ(results.size(), kEveryCheck.size()) << describe(results);
  const auto checks = by_check(results);
  for (const auto& name : kEveryCheck) {
    ASSERT_EQ(checks.count(name), 1U) << name << "\n" << describe(results);
    const auto& r = checks.at(name);
    if (name == broken) {
      EXPECT_EQ(r.status, Status::Failed) << describe(r);
      for (const auto& w : words) EXPECT_TRUE(contains(r.detail, w)) << "'" << w << "' missing from: " << describe(r);
    } else {
      EXPECT_EQ(r.status, Status::Passed) << describe(r);
    }
  }
}

TEST(ConformanceFixtures, DecayThatIgnoresTheLearningRateFailsLrZero) {
  expect_only_failure(OPTREG_CONFORMANCE_DRIFTS_AT_LR_ZERO, "lr_zero_changes_nothing",
                      {"step 1 with lr = 0 changed the value of parameter 'weight' (id 0), element 0: ", "(after vs before)"});
}

TEST(ConformanceFixtures, DivisionByTheGradientNormFailsZeroGradients) {
  expect_only_failure(OPTREG_CONFORMANCE_NAN_ON_ZERO_GRADIENTS, "zero_gradients_produce_no_nan",
                      {"after step 1 with all-zero gradients: value of parameter 'weight' (id 0), element 0 = ", "nan"});
}

TEST(ConformanceFixtures, CounterOutsideTheStateFailsResume) {
  expect_only_failure(OPTREG_CONFORMANCE_HIDDEN_COUNTER, "resumed_run_is_bit_exact",
                      {"6 steps, save_optimizer(), load_optimizer() into a fresh optimizer and 6 more steps differ from 12 "
                       "uninterrupted steps: value of parameter 'weight' (id 0), element 0: ",
                       "(resumed vs uninterrupted)"});
}

TEST(ConformanceFixtures, ASeedDrawnOncePerProcessFailsOnlyTheResumeInAFreshProcess) {
  expect_only_failure(OPTREG_CONFORMANCE_PROCESS_SEEDED_NOISE, "resumed_run_is_bit_exact",
                      {"6 steps, save_optimizer(), then in a fresh process load_optimizer() and the 6 more steps' "
                       "gradients differ from 12 uninterrupted steps: value of parameter 'weight' (id 0), element 0: ",
                       "(resumed vs uninterrupted)"});
}

TEST(ConformanceFixtures, ACountAdvancedWithoutTheHelperFailsCountsStopAtTheTop) {
  expect_only_failure(OPTREG_CONFORMANCE_UNCHECKED_COUNT, "counts_stop_at_the_top_of_their_domain",
                      {"step() advanced state count 'step' of parameter 'weight' (id 0) to 9007199254740993, past the top "
                       "of its domain [0, 9007199254740992]; advance counts with sdk::advance_counts()"});
}

TEST(ConformanceFixtures, InTreeDomainsAreEnforcedAndCountsStopAtTheirTop) {
  const auto adam = by_check(optreg::run_conformance(OPTREG_TEST_ADAM_PLUGIN));
  const auto& domains = adam.at("state_outside_its_domain_is_refused");
  EXPECT_EQ(domains.status, Status::Passed) << describe(domains);
  for (const char* w : {"step [0, 9007199254740992]", "exp_avg [-inf, inf]", "exp_avg_sq [0.0, inf]",
                        "not present at the default options: max_exp_avg_sq", "is outside its domain"}) {
    EXPECT_TRUE(contains(domains.detail, w)) << "'" << w << "' missing from: " << describe(domains);
  }
  const auto& counts = adam.at("counts_stop_at_the_top_of_their_domain");
  EXPECT_EQ(counts.status, Status::Passed) << describe(counts);
  EXPECT_TRUE(contains(counts.detail, "refused with a UsageError and changed nothing: \"parameter 'weight' cannot take "
                                      "another step: its state count 'step' = 9007199254740992"))
      << describe(counts);
}

TEST(ConformanceFixtures, GlobalScratchBufferFailsTwoThreads) {
  expect_only_failure(OPTREG_CONFORMANCE_SHARED_SCRATCH, "two_instances_on_two_threads_do_not_interfere",
                      {"concurrent steps differ from the same run on one thread: value of parameter", "element",
                       "(concurrent vs single-thread)"});
}

/// A broken scheduler fixture: its scheduler `name` fails `broken` with a detail holding every
/// one of `words` and passes its other checks; the core's sequential and chained made of it
/// fail the same check when `sequence_fails` (the fault reaches a composite) and pass every
/// check otherwise.
void expect_only_scheduler_failure(const char* plugin, const std::string& name, const std::string& broken,
                                   const std::vector<std::string>& words, bool sequence_fails) {
  const auto results = optreg::run_conformance(plugin);
  const auto subjects = by_subject(results);
  ASSERT_EQ(subjects.size(), 3U) << describe(results);
  EXPECT_EQ(subjects[0].first, name);
  EXPECT_EQ(subjects[1].first, "sequential");
  EXPECT_EQ(subjects[2].first, "chained");
  for (const auto& [subject, checks] : subjects) {
    ASSERT_EQ(checks.size(), kEverySchedulerCheck.size()) << describe(results);
    const bool fails_broken = subject == name || sequence_fails;
    for (std::size_t i = 0; i < checks.size(); ++i) {
      const auto& r = checks[i];
      EXPECT_EQ(r.check, kEverySchedulerCheck[i]);
      EXPECT_EQ(r.kind, optreg::ConformanceResult::Kind::Scheduler);
      if (r.check == broken && fails_broken) {
        EXPECT_EQ(r.status, Status::Failed) << describe(r);
        for (const auto& w : words) EXPECT_TRUE(contains(r.detail, w)) << "'" << w << "' missing from: " << describe(r);
      } else {
        EXPECT_EQ(r.status, Status::Passed) << describe(r);
      }
    }
  }
}

TEST(ConformanceSchedulerFixtures, ARequiredOptionThatValidateLetsThroughFailsDefaultsAccepted) {
  expect_only_scheduler_failure(
      OPTREG_CONFORMANCE_UNCHECKED_REQUIRED_OPTION, "unchecked_required_option", "scheduler_defaults_accepted",
      {"made with its defaults alone over the stand-in optimizer, it threw a UsageError: scheduler "
       "'unchecked_required_option' computed lr = ",
       "its defaults must make it, or be refused by validate() with an OptionError naming a required option left at "
       "its default"},
      false);
}

TEST(ConformanceSchedulerFixtures, AnEntryThatTheLoadForgetsFailsTheStateRoundTrip) {
  expect_only_scheduler_failure(OPTREG_CONFORMANCE_STALE_AFTER_LOAD, "stale_after_load",
                                "scheduler_state_round_trips_through_a_checkpoint_file",
                                {"after load_state() into a fresh scheduler its state differs: state entry '",
                                 "factor': 1.0 vs 0.03125 (loaded vs saved)"},
                                true);
}

TEST(ConformanceSchedulerFixtures, ACounterOutsideTheSchedulersStateFailsResume) {
  expect_only_scheduler_failure(OPTREG_CONFORMANCE_HIDDEN_DECAY_COUNTER, "hidden_decay_counter",
                                "scheduler_resumed_run_is_bit_exact",
                                {"3 steps, save_optimizer(), load_optimizer() into a fresh optimizer and scheduler and 1 "
                                 "more step differ from 4 uninterrupted steps: param group 0, option 'lr': 0.1 vs 0.05 "
                                 "(resumed vs uninterrupted)"},
                                true);
}

TEST(ConformanceSchedulerFixtures, AStateCheckThatChecksNothingFailsTheRefusalOfOtherStates) {
  expect_only_scheduler_failure(OPTREG_CONFORMANCE_LENIENT_STATE, "lenient_state",
                                "scheduler_load_state_refuses_other_states",
                                {"load_state() accepted its state without the entry 'scale'"}, false);
}

TEST(ConformanceSchedulerFixtures, ACountAdvancedWithoutNextCountFailsCountsStopAtTheTop) {
  expect_only_scheduler_failure(
      OPTREG_CONFORMANCE_UNCHECKED_SCHEDULER_COUNT, "unchecked_scheduler_count",
      "scheduler_counts_stop_at_the_top_of_their_domain",
      {"step() from state entry '", "since_decay' = 9007199254740992 (2^53), the top of the count domain, left a state "
       "that its own load_state() refuses: ",
       "state entry 'since_decay' = 9007199254740993 is outside its domain [0, 9007199254740992]; advance a count with "
       "optreg::next_count()"},
      true);
}

TEST(ConformanceFixtures, AFileThatCannotBeLoadedGivesOneFailureWithTheReason) {
  const auto missing = optreg::run_conformance("/nonexistent/libnothing.so");
  ASSERT_EQ(missing.size(), 1U) << describe(missing);
  EXPECT_EQ(missing[0].status, Status::Failed);
  EXPECT_EQ(missing[0].check, "descriptor_valid");
  EXPECT_TRUE(missing[0].optimizer.empty());
  EXPECT_TRUE(contains(missing[0].detail, "/nonexistent/libnothing.so")) << missing[0].detail;

  const auto bad_default = optreg::run_conformance(OPTREG_FIXTURE_BAD_DEFAULT);
  ASSERT_EQ(bad_default.size(), 1U) << describe(bad_default);
  EXPECT_EQ(bad_default[0].status, Status::Failed);
  EXPECT_TRUE(contains(bad_default[0].detail, "the default 1.5 lies outside the declared range")) << bad_default[0].detail;
}

TEST(ConformanceFixtures, AThrowingPluginFailsEveryCheckThatMakesAnOptimizerWithoutCrashing) {
  const auto results = optreg::run_conformance(OPTREG_FIXTURE_THROWING_FACTORY);
  ASSERT_EQ(results.size(), kEveryCheck.size()) << describe(results);
  for (const auto& r : results) {
    if (r.check == "descriptor_valid" || r.check == "defaults_in_range") {
      EXPECT_EQ(r.status, Status::Passed) << describe(r);
    } else if (r.check == "state_outside_its_domain_is_refused" || r.check == "counts_stop_at_the_top_of_their_domain" ||
               r.check == "every_declared_dtype_resumes_and_splits_alike") {
      // Read from the descriptor alone: it keeps no state and steps float32 alone, so no
      // optimizer is made.
      EXPECT_EQ(r.status, Status::Passed) << describe(r);
    } else {
      EXPECT_EQ(r.status, Status::Failed) << describe(r);
      EXPECT_TRUE(contains(r.detail, "fixture_throwing cannot allocate its workspace")) << describe(r);
    }
  }
}

TEST(ConformanceFixtures, StatusNames) {
  EXPECT_STREQ(optreg::to_string(Status::Passed), "passed");
  EXPECT_STREQ(optreg::to_string(Status::Failed), "FAILED");
  EXPECT_STREQ(optreg::to_string(Status::Skipped), "skipped");
}
