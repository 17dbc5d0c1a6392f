// Bit-exact resume in a fresh process, for every plugin the in-tree plugin folder registers:
// N + K steps in one process must equal N steps, a checkpoint, and K steps in another process,
// parameters and every state tensor and scalar bit for bit.
//
// The plugins come from the registry, so a new plugin is covered at its default options; the
// plugins named below have further cases (several groups, a frozen parameter, each option).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

extern char** environ;

namespace fs = std::filesystem;

namespace {

constexpr int kFirstSteps = 20;
constexpr int kMoreSteps = 15;

struct ResumeCase {
  std::string optimizer;
  std::string label;
  /// Options as resume_helper takes them: KEY=VALUE defaults, then `--group` sections.
  std::vector<std::string> args;
};

std::ostream& operator<<(std::ostream& os, const ResumeCase& c) {
  os << c.optimizer;
  for (const auto& a : c.args) os << " " << a;
  return os;
}

/// Cases beyond the default options, for the plugins this project ships.
const std::map<std::string, std::vector<ResumeCase>>& known_cases() {
  static const std::map<std::string, std::vector<ResumeCase>> cases = {
      // A wrapper over a stateful optimizer, with a group of its own k.
      {"lookahead",
       {
           {"lookahead", "over_adamw_two_groups",
            {"inner=adamw", "k=3", "alpha=0.6", "lr=0.01", "--group", "--group", "k=2", "lr=0.02"}},
       }},
      {"sgd",
       {
           {"sgd", "plain_weight_decay", {"lr=0.05", "weight_decay=0.01"}},
           {"sgd", "momentum", {"lr=0.05", "momentum=0.9"}},
           {"sgd", "nesterov_three_groups",
            {"lr=0.03", "momentum=0.9", "nesterov=true", "--group", "--group", "lr=0.05", "--group", "lr=0.01",
             "weight_decay=0.001"}},
           {"sgd", "dampening_maximize", {"lr=0.01", "momentum=0.7", "dampening=0.25", "maximize=true"}},
           {"sgd", "group_frozen_by_lr_zero", {"lr=0.05", "momentum=0.5", "--group", "--group", "lr=0"}},
           {"sgd", "momentum_only_in_second_group", {"lr=0.04", "--group", "--group", "momentum=0.95"}},
       }},
      {"adam",
       {
           {"adam", "lr", {"lr=0.01"}},
           {"adam", "amsgrad_betas", {"lr=0.02", "amsgrad=true", "betas=[0.8,0.95]"}},
           {"adam", "weight_decay_two_groups",
            {"lr=0.01", "weight_decay=0.05", "--group", "--group", "amsgrad=true", "lr=0.005", "eps=1e-6"}},
           {"adam", "maximize", {"lr=0.001", "maximize=true"}},
           {"adam", "three_groups_one_frozen_by_lr_zero", {"lr=0.01", "--group", "lr=0", "--group", "--group", "amsgrad=true"}},
       }},
      {"adagrad",
       {
           {"adagrad", "lr_decay_accumulator_maximize",
            {"lr=0.05", "lr_decay=0.01", "initial_accumulator_value=0.1", "maximize=true"}},
           {"adagrad", "eps_inside_sqrt_two_groups",
            {"lr=0.05", "eps_inside_sqrt=true", "--group", "--group", "weight_decay=0.01", "eps=1e-6"}},
       }},
      {"adadelta", {{"adadelta", "weight_decay_maximize", {"rho=0.8", "weight_decay=0.01", "maximize=true"}}}},
      {"rmsprop",
       {
           {"rmsprop", "centered_momentum", {"lr=0.005", "momentum=0.9", "centered=true", "weight_decay=0.01"}},
           {"rmsprop", "momentum_only_in_second_group", {"lr=0.005", "--group", "--group", "momentum=0.5"}},
       }},
      {"adamax", {{"adamax", "betas_maximize", {"betas=[0.8,0.99]", "weight_decay=0.01", "maximize=true"}}}},
      {"nadam", {{"nadam", "two_groups", {"lr=0.01", "--group", "--group", "momentum_decay=0.05", "weight_decay=0.01"}}}},
      {"radam", {{"radam", "rectified_early", {"lr=0.01", "betas=[0.9,0.9]", "weight_decay=0.01"}}}},
      {"asgd",
       {
           {"asgd", "averaging_and_decay", {"lr=0.02", "lambd=0.01", "t0=5.0", "maximize=true"}},
           {"asgd", "two_groups", {"t0=0.0", "--group", "--group", "lr=0.005", "alpha=1.0", "weight_decay=0.01"}},
       }},
      {"rprop", {{"rprop", "etas_step_sizes_maximize", {"etas=[0.3,1.5]", "step_sizes=[1e-4,0.05]", "maximize=true"}}}},
      {"lamb",
       {
           {"lamb", "weight_decay", {"lr=0.01", "weight_decay=0.01"}},
           {"lamb", "always_adapt_no_bias_correction", {"lr=0.02", "always_adapt=true", "bias_correction=false"}},
           {"lamb", "three_groups_one_frozen_by_lr_zero",
            {"lr=0.01", "--group", "lr=0", "--group", "weight_decay=0.1", "betas=[0.8,0.95]", "--group", "eps=1e-6"}},
       }},
      {"lars",
       {
           {"lars", "weight_decay_nesterov", {"lr=2", "weight_decay=0.01", "nesterov=true"}},
           {"lars", "momentum_only_in_second_group", {"lr=1", "momentum=0", "--group", "--group", "momentum=0.9"}},
           {"lars", "two_groups_one_frozen_by_lr_zero", {"lr=1", "trust_coefficient=0.01", "--group", "lr=0", "--group"}},
       }},
      {"lion",
       {
           {"lion", "weight_decay_betas", {"lr=0.001", "weight_decay=0.1", "betas=[0.95,0.98]"}},
           {"lion", "maximize_two_groups", {"lr=0.002", "maximize=true", "--group", "--group", "lr=0.0005"}},
       }},
      {"adafactor",
       {
           {"adafactor", "beta1_weight_decay", {"beta1=0.9", "weight_decay=0.01"}},
           {"adafactor", "absolute_step_clip", {"lr=0.01", "relative_step=false", "scale_parameter=false", "clip_threshold=0.5"}},
           {"adafactor", "first_moment_only_in_second_group",
            {"decay_rate=0.5", "--group", "--group", "beta1=0.8", "eps=[1e-20,0.01]"}},
       }},
      {"lbfgs",
       {
           {"lbfgs", "short_steps", {"lr=0.05", "max_iter=2", "history_size=3"}},
       }},
      // Composites: a group of another optimizer (make_composite()).
      {"adamw",
       {
           {"adamw", "composite_with_muon",
            {"lr=0.01", "weight_decay=0.01", "--group", "--group", "optimizer=muon", "lr=0.02", "--group", "lr=0.005"}},
       }},
      {"schedulefree_adamw",
       {
           {"schedulefree_adamw", "composite_with_sgd_momentum",
            {"lr=0.01", "--group", "optimizer=sgd", "lr=0.05", "momentum=0.9", "--group"}},
       }},
  };
  return cases;
}

/// Every optimizer registered from the in-tree plugin folder at its defaults, then the known cases.
std::vector<ResumeCase> all_cases() {
  std::vector<ResumeCase> out;
  for (const auto& d : optreg_test::in_tree_registry().list()) {
    out.push_back({d.name, "defaults", {}});
    const auto it = known_cases().find(d.name);
    if (it != known_cases().end()) out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

std::string test_name(const ResumeCase& c) {
  std::string s = c.optimizer + "_" + c.label;
  for (char& ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

/// Runs resume_helper with `args`; returns its exit status (or 128 + the signal).
int run_helper(const std::vector<std::string>& args) {
  std::vector<std::string> all = {OPTREG_TEST_RESUME_HELPER, "--plugins", OPTREG_TEST_PLUGIN_DIR};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(rc);
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class Resume : public ::testing::TestWithParam<ResumeCase> {
 protected:
  std::string path(const std::string& name) const { return dir_ / name; }

  optreg_test::TempDir dir_;
};

}  // namespace

TEST(ResumeCoverage, InTreePluginFolderRegistersSgdAndAdam) {
  const optreg::Registry& registry = optreg_test::in_tree_registry();
  EXPECT_TRUE(registry.refused().empty());
  std::vector<std::string> names;
  for (const auto& d : registry.list()) names.push_back(d.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "sgd"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "adam"), names.end());
}

TEST_P(Resume, BitExactInAFreshProcess) {
  const ResumeCase& c = GetParam();
  std::vector<std::string> run = {"run", c.optimizer};
  run.insert(run.end(), c.args.begin(), c.args.end());
  const auto with_tail = [&](std::vector<std::string> args, int steps, const std::string& out) {
    args.insert(args.end(), {"--steps", std::to_string(steps), "--out", out});
    return args;
  };
  ASSERT_EQ(run_helper(with_tail(run, kFirstSteps + kMoreSteps, path("uninterrupted.ckpt"))), 0);
  ASSERT_EQ(run_helper(with_tail(run, kFirstSteps, path("first.ckpt"))), 0);
  ASSERT_EQ(run_helper(with_tail({"resume", path("first.ckpt")}, kMoreSteps, path("resumed.ckpt"))), 0);

  const optreg::Checkpoint uninterrupted = optreg::read_checkpoint(path("uninterrupted.ckpt"));
  const optreg::Checkpoint first = optreg::read_checkpoint(path("first.ckpt"));
  const optreg::Checkpoint resumed = optreg::read_checkpoint(path("resumed.ckpt"));
  EXPECT_TRUE(optreg_test::same_bits(resumed, uninterrupted));
  EXPECT_EQ(resumed.metadata.at("steps").as_int(), kFirstSteps + kMoreSteps);

  // The comparison is about a trajectory: the later steps moved the parameters, except the
  // frozen one, and the checkpoint holds every parameter and the state of each.
  ASSERT_EQ(first.parameters.size(), uninterrupted.parameters.size());
  ASSERT_EQ(uninterrupted.optimizer.state.size(), uninterrupted.parameters.size());
  bool moved = false;
  for (std::size_t i = 0; i < first.parameters.size(); ++i) {
    const bool same = static_cast<bool>(optreg_test::same_bits(first.parameters[i].value, uninterrupted.parameters[i].value));
    if (first.parameters[i].name == "frozen") {
      EXPECT_TRUE(same) << "the frozen parameter moved";
    } else {
      moved = moved || !same;
    }
  }
  // At its defaults (20 iterations a step) L-BFGS reaches the minimum within the first steps;
  // its other cases move to the end.
  if (!(GetParam().optimizer == "lbfgs" && GetParam().label == "defaults")) {
    EXPECT_TRUE(moved) << "no parameter moved in the last " << kMoreSteps << " steps";
  }
}

INSTANTIATE_TEST_SUITE_P(Plugins, Resume, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<ResumeCase>& info) { return test_name(info.param); });
