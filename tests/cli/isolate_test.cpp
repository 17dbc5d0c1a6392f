// Plugin code in a child process: `optreg list --isolate` and `optreg conformance` report a plugin
// that crashes, aborts or hangs by name, and the tool itself survives.
#include <string>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using optreg_test::contains;
using optreg_test::shell_word;
using ToolRun = optreg_test::CommandRun;

ToolRun run(const std::string& args) {
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " " + args);
}

const std::string kInTree = shell_word(OPTREG_TEST_PLUGIN_DIR);
const std::string kHostile = shell_word(OPTREG_HOSTILE_PLUGIN_DIR);

}  // namespace

TEST(Isolate, ListRefusesAPluginThatAbortsOrHangsWhileLoadingAndListsTheRest) {
  const ToolRun r = run("list --isolate --timeout 2 --no-default-path --plugin-path " + kInTree + " --plugin-path " + kHostile);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "sgd  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "fixture_step_crashes  1.0.0")) << "loads cleanly, so it is listed\n" << r.out;
  const std::string aborts = optreg_test::canonical(OPTREG_HOSTILE_LOAD_ABORTS);
  EXPECT_TRUE(contains(r.out, "  " + aborts + ": loading it in a separate process failed: the process was killed by signal 6 "
                              "(SIGABRT: Aborted); its last line on standard error: fixture_load_aborts: aborting while "
                              "the library is loaded\n"))
      << r.out;
  const std::string hangs = optreg_test::canonical(OPTREG_HOSTILE_LOAD_HANGS);
  EXPECT_TRUE(contains(r.out, "  " + hangs + ": loading it in a separate process failed: the process did not finish within "
                              "2 s and was killed\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "2 plugins were refused")) << r.out;
}

TEST(Isolate, ListKeepsTheLoadersOwnRefusalReasons) {
  const ToolRun r = run("list --isolate --json --no-default-path --plugin-path /etc/hostname --plugin-path " +
                        shell_word(OPTREG_FIXTURE_ABI_MAJOR));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "\"reason\": \"the dynamic loader refused it: /etc/hostname: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "it was built for optreg plugin ABI 999, but this host supports ABI 3")) << r.out;
}

TEST(Isolate, WithoutIsolateAPluginThatAbortsAtLoadTakesTheToolDown) {
  // What --isolate exists for: loading a library runs its static constructors, before any check.
  const ToolRun r = run("list --no-default-path --plugin-path " + shell_word(OPTREG_HOSTILE_LOAD_ABORTS));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "fixture_load_aborts: aborting while the library is loaded")) << r.out;
}

TEST(Isolate, TimeoutIsAPositiveNumberOfSecondsAndGoesWithIsolate) {
  EXPECT_EQ(run("list --isolate --timeout 0").status, 2);
  EXPECT_EQ(run("list --isolate --timeout abc").status, 2);
  EXPECT_EQ(run("list --isolate --timeout inf").status, 2);
  const ToolRun alone = run("list --timeout 5");
  EXPECT_EQ(alone.status, 2) << alone.out;
  EXPECT_TRUE(contains(alone.out, "--timeout goes with --isolate")) << alone.out;
  EXPECT_EQ(run("conformance --timeout -1 x.so").status, 2);
}

TEST(Isolate, ConformanceNamesTheCheckAStepCrashedInAndKeepsTheResultsBeforeIt) {
  const ToolRun r = run("conformance " + shell_word(OPTREG_HOSTILE_STEP_CRASHES));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "passed  fixture_step_crashes  descriptor_valid  (")) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED  fixture_step_crashes  step_without_gradients_changes_nothing  (the process running the conformance "
                              "kit on plugin " +
                              std::string(OPTREG_HOSTILE_STEP_CRASHES) + " was killed by signal "))
      << r.out;
  EXPECT_TRUE(contains(r.out, " during this check)\n2 passed, 1 failed, 0 skipped\n")) << r.out;
}

TEST(Isolate, ConformanceStopsAHangingStepAtItsTimeout) {
  const ToolRun r = run("conformance --json --timeout 2 " + shell_word(OPTREG_HOSTILE_STEP_HANGS));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "{\"optimizer\": \"fixture_step_hangs\", \"check\": \"step_without_gradients_changes_nothing\", \"status\": "
                              "\"failed\", \"detail\": \"the process running the conformance kit on plugin " +
                              std::string(OPTREG_HOSTILE_STEP_HANGS) +
                              " did not finish within 2 s and was killed during this check\"}"))
      << r.out;
}

TEST(Isolate, ConformanceReportsAPluginThatAbortsWhileLoading) {
  const ToolRun r = run("conformance " + shell_word(OPTREG_HOSTILE_LOAD_ABORTS));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "FAILED  -  descriptor_valid  (the process running the conformance kit on plugin " +
                              std::string(OPTREG_HOSTILE_LOAD_ABORTS) + " was killed by signal 6 (SIGABRT: Aborted); its "
                              "last line on standard error: fixture_load_aborts: aborting while the library is loaded "
                              "while loading the plugin)\n0 passed, 1 failed, 0 skipped\n"))
      << r.out;
}

TEST(Isolate, APluginFileWhoseNameBeginsWithADashLoadsInTheChildAsAFile) {
  optreg_test::TempDir dir;
  const std::string odd = dir / "-odd.so";
  ASSERT_EQ(optreg_test::run_command("cp " + shell_word(OPTREG_TEST_SGD_PLUGIN) + " " + shell_word(odd)).status, 0);
  const ToolRun list =
      optreg_test::run_command("cd " + shell_word(dir.path()) + " && OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) +
                               " list --isolate --no-default-path --plugin-path=-odd.so");
  EXPECT_EQ(list.status, 0) << list.out;
  EXPECT_TRUE(contains(list.out, "sgd  1.0.0")) << list.out;
  const ToolRun kit = optreg_test::run_command("cd " + shell_word(dir.path()) + " && " + shell_word(OPTREG_TEST_TOOL) +
                                               " conformance -- -odd.so");
  EXPECT_EQ(kit.status, 0) << kit.out;
  EXPECT_TRUE(contains(kit.out, " passed, 0 failed")) << kit.out;
}
