// `optreg check` on configs with several mistakes: every error in one run, each at its
// file:line:column, in the order of the file, and all of them in --json.
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace {

using optreg_test::contains;
using optreg_test::TempDir;

optreg_test::CommandRun run(const std::string& args) {
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= '" + std::string(OPTREG_TEST_TOOL) + "' " + args);
}

// Four mistakes in four places: an unknown option, a value out of range in a group, a rule
// broken in another group, and a scheduler option of the wrong type.
const char* kFourMistakes = R"(optimizer:
  name: sgd
  lr: 0.1
  momentun: 0.9
param_groups:
  - params: "*.bias"
    lr: -1.0
  - params: "*.weight"
    nesterov: true
scheduler:
  name: cosine
  T_max: 10.5
)";

/// Writes `text` as opt.yaml in `dir`; returns its path.
std::string config_file(const TempDir& dir, const char* text) {
  const std::string path = dir.path() + "/opt.yaml";
  std::ofstream(path) << text;
  return path;
}

/// The JSON object: the first line (the messages on standard error follow it).
std::string first_line(const std::string& out) { return out.substr(0, out.find('\n')); }

}  // namespace

TEST(CheckErrors, EveryErrorIsReportedInOneRunAtItsLineAndColumn) {
  TempDir dir;
  const std::string path = config_file(dir, kFourMistakes);
  const auto r = run("check '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + path + ":4:3: optimizer 'sgd': unknown option 'momentun'")) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + path + ":7:9: optimizer 'sgd', param_groups[0]: option 'lr' = -1.0 "
                              "is out of range")) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + path + ":9:5: optimizer 'sgd', param_groups[1]: option 'nesterov' = "
                              "true needs momentum > 0")) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + path + ":12:10: scheduler 'cosine': option 'T_max' = 10.5 has the "
                              "wrong type")) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: 4 errors in " + path)) << r.out;
  EXPECT_LT(r.out.find(":4:3:"), r.out.find(":7:9:"));
  EXPECT_LT(r.out.find(":9:5:"), r.out.find(":12:10:"));
}

TEST(CheckErrors, JsonListsEveryErrorWithItsFields) {
  TempDir dir;
  const std::string path = config_file(dir, kFourMistakes);
  const auto r = run("check --json '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  const auto j = nlohmann::json::parse(first_line(r.out));
  EXPECT_FALSE(j["valid"].get<bool>());
  ASSERT_EQ(j["errors"].size(), 4U) << r.out;
  const auto& rule = j["errors"][2];
  EXPECT_EQ(rule["file"], path);
  EXPECT_EQ(rule["line"], 9);
  EXPECT_EQ(rule["column"], 5);
  EXPECT_TRUE(contains(rule["reason"].get<std::string>(), "option 'nesterov' = true needs momentum > 0")) << r.out;
  EXPECT_EQ(j["error"], j["errors"][0]["message"]);
}

TEST(CheckErrors, EveryMalformedSectionIsReportedAndTheOthersAreStillChecked) {
  TempDir dir;
  const std::string path =
      config_file(dir, "optimizer:\n  name: adam\n  lr: fast\nclip: 1.0\nscheduler:\n  name: cosin\nextra: 1\n");
  const auto r = run("check '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":3:7: optimizer 'adam': option 'lr' = \"fast\" has the wrong type")) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":4:7: section 'clip' must be a map")) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":6:9: unknown scheduler 'cosin' (did you mean 'cosine'?)")) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":7:1: unknown section 'extra'")) << r.out;
}

TEST(CheckErrors, AnUnknownOptimizerLeavesItsOptionsUncheckedButNotTheRest) {
  TempDir dir;
  const std::string path = config_file(dir, "optimizer:\n  name: sdg\n  bogus: 1\nscheduler: {name: step}\n");
  const auto r = run("check --json '" + path + "'");
  const auto j = nlohmann::json::parse(first_line(r.out));
  ASSERT_EQ(j["errors"].size(), 2U) << r.out;
  EXPECT_EQ(j["errors"][0]["line"], 2);
  EXPECT_TRUE(contains(j["errors"][0]["reason"].get<std::string>(), "unknown optimizer 'sdg' (did you mean 'sgd'?)"));
  EXPECT_EQ(j["errors"][1]["line"], 4);
  EXPECT_TRUE(contains(j["errors"][1]["reason"].get<std::string>(), "option 'step_size' is required")) << r.out;
}

TEST(CheckErrors, ASchedulerThatDoesNotFitTheOptimizerIsReportedAtTheOptionItNames) {
  TempDir dir;
  const std::string path = config_file(
      dir, "optimizer: {name: adagrad}\nscheduler:\n  name: onecycle\n  max_lr: 0.1\n  total_steps: 10\n  cycle_momentum: true\n");
  const auto r = run("check '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":6:3: scheduler 'onecycle': option 'cycle_momentum' = true needs an optimizer with "
                              "a float option 'momentum'")) << r.out;
}

TEST(CheckErrors, AMissingPluginPathAndABadParamsFileDoNotHideTheConfigsOwnErrors) {
  TempDir dir;
  const std::string path = config_file(dir, "optimizer:\n  name: adam\n  lr: -1\nplugins:\n  paths: [nowhere/]\n");
  std::ofstream(dir.path() + "/params.yaml") << "w: [3, x]\n";
  const auto r = run("check '" + path + "' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":3:7: optimizer 'adam': option 'lr' = -1 is out of range")) << r.out;
  EXPECT_TRUE(contains(r.out, path + ":5:11: plugin path " + dir.path() + "/nowhere/ does not exist")) << r.out;
  EXPECT_TRUE(contains(r.out, dir.path() + "/params.yaml:1:8: the shape of 'w' must hold non-negative integers")) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: 3 errors in " + path)) << r.out;
  // The config's own errors come first, in the order of its lines.
  EXPECT_LT(r.out.find(":3:7:"), r.out.find(":5:11:"));
  EXPECT_LT(r.out.find(":5:11:"), r.out.find("params.yaml:1:8:"));
}
