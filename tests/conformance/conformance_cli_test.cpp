// `optreg conformance`, run as a plugin author runs it: output and exit status.
#include <unistd.h>

#include <filesystem>
#include <iterator>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using optreg_test::contains;
using ToolRun = optreg_test::CommandRun;

ToolRun run(const std::string& args) {
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= '" + std::string(OPTREG_TEST_TOOL) + "' " + args);
}

std::string quoted(const std::string& path) { return "'" + path + "'"; }

}  // namespace

TEST(ConformanceCli, SgdPassesWithOneLinePerCheckAndASummary) {
  const ToolRun r = run("conformance " + quoted(OPTREG_TEST_SGD_PLUGIN));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  sgd  descriptor_valid  (plugin sgd 1.0.0: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  sgd  resumed_run_is_bit_exact  (")) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  sgd  two_instances_on_two_threads_do_not_interfere  (")) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n13 passed, 0 failed, 0 skipped\n$"))) << r.out;
}

TEST(ConformanceCli, AStaleWorkFolderOfAKilledRunIsRemovedAndALiveOneKept) {
  const optreg_test::TempDir tmp;
  const std::string stale = tmp / ("optreg-conformance-" + std::to_string(optreg_test::ended_pid()) + "-Stale1");
  const std::string live = tmp / ("optreg-conformance-" + std::to_string(::getpid()) + "-Live01");
  std::filesystem::create_directories(stale + "/inner");
  optreg_test::write_file(stale + "/inner/checkpoint", "left by a run killed with kill -9");
  std::filesystem::create_directories(live);
  const ToolRun r = optreg_test::run_command("TMPDIR=" + optreg_test::shell_word(tmp.path()) + " OPTREG_PLUGIN_PATH= '" +
                                             std::string(OPTREG_TEST_TOOL) + "' conformance " + quoted(OPTREG_TEST_SGD_PLUGIN));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(tmp.path()), std::filesystem::directory_iterator()), 1)
      << "the run removes its own folder";
}

TEST(ConformanceCli, ABrokenPluginFailsWithExitStatusOne) {
  const ToolRun r = run("conformance " + quoted(OPTREG_CONFORMANCE_DRIFTS_AT_LR_ZERO));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED  drifts_at_lr_zero  lr_zero_changes_nothing  (step 1 with lr = 0 changed the value of "
                              "parameter 'weight' (id 0), element 0: "))
      << r.out;
  EXPECT_TRUE(contains(r.out, "\n12 passed, 1 failed, 0 skipped\n")) << r.out;
}

TEST(ConformanceCli, TheSchedulerPluginPassesWithALinePerSchedulerCheckAndTheirSequence) {
  const ToolRun r = run("conformance " + quoted(OPTREG_TEST_SCHEDULERS_PLUGIN));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  cosine  scheduler_defaults_accepted  (2 defaults accepted by the schema; made with "
                              "T_max = 4 over the stand-in optimizer"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "passed  plateau  scheduler_resumed_run_is_bit_exact  (3 + 17 steps resumed from a checkpoint "
                              "file equal 20 uninterrupted steps bit for bit"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "passed  sequential  scheduler_counts_stop_at_the_top_of_their_domain  (")) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  chained  scheduler_resumed_run_is_bit_exact  (")) << r.out;
  // 12 schedulers and the core's sequential and chain of them, 6 checks each.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n84 passed, 0 failed, 0 skipped\n$"))) << r.out;
}

TEST(ConformanceCli, ABrokenSchedulerFailsWithExitStatusOne) {
  const ToolRun r = run("conformance " + quoted(OPTREG_CONFORMANCE_LENIENT_STATE));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED  lenient_state  scheduler_load_state_refuses_other_states  (load_state() accepted its "
                              "state without the entry 'scale')"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "\n17 passed, 1 failed, 0 skipped\n")) << r.out;  // it, sequential and chained
}

TEST(ConformanceCli, AFileThatCannotBeLoadedFails) {
  const ToolRun r = run("conformance /nonexistent/libnothing.so");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED  -  descriptor_valid  (plugin /nonexistent/libnothing.so: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "0 passed, 1 failed, 0 skipped")) << r.out;
}

TEST(ConformanceCli, JsonHoldsEveryResultAndTheCounts) {
  const ToolRun r = run("conformance --json " + quoted(OPTREG_TEST_ADAM_PLUGIN));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "\"results\": [")) << r.out;
  EXPECT_TRUE(contains(r.out, "{\"optimizer\": \"adam\", \"check\": \"convex_quadratic_loss_falls\", \"status\": \"passed\", "
                              "\"detail\": \"loss "))
      << r.out;
  EXPECT_TRUE(contains(r.out, "\"passed\": 13,\n  \"failed\": 0,\n  \"skipped\": 0\n}\n")) << r.out;

  const ToolRun broken = run("conformance " + quoted(OPTREG_CONFORMANCE_SHARED_SCRATCH) + " --json");
  EXPECT_EQ(broken.status, 1) << broken.out;
  EXPECT_TRUE(contains(broken.out, "\"check\": \"two_instances_on_two_threads_do_not_interfere\", \"status\": \"failed\""))
      << broken.out;
  EXPECT_TRUE(contains(broken.out, "\"passed\": 12,\n  \"failed\": 1,\n  \"skipped\": 0")) << broken.out;
}

TEST(ConformanceCli, UsageErrorsExitWithTwo) {
  const ToolRun none = run("conformance");
  EXPECT_EQ(none.status, 2) << none.out;
  EXPECT_TRUE(contains(none.out, "name the plugin file to check")) << none.out;
  EXPECT_EQ(run("conformance a.so b.so").status, 2);
  EXPECT_EQ(run("conformance --verbose a.so").status, 2);
  const ToolRun help = run("conformance --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_TRUE(contains(help.out, "usage: optreg conformance PLUGIN.so [--json]")) << help.out;
  EXPECT_TRUE(contains(help.out, "every learning-rate scheduler")) << help.out;
  EXPECT_TRUE(contains(run("--help").out, "conformance  check that a plugin file behaves")) << "listed in the tool's help";
}
