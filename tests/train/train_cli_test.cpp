// optreg train, compare and problems, run as a user runs them: separate processes, files on
// disk, signals.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>

#include "state_support.hpp"
#include "test_support.hpp"

namespace {

using optreg_test::contains;
using optreg_test::read_file;
using optreg_test::shell_word;
using optreg_test::TempDir;
using optreg_test::write_file;

optreg_test::CommandRun tool(const std::string& args) {
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " " + args);
}

const char* kCompare =
    "problem: {name: quadratic, dim: 10}\n"
    "train: {steps: 100, batch_size: 16, log_every: 10, target_loss: 1.5}\n"
    "runs:\n"
    "  - {label: \"SGD & <co> \\\"q\\\"\", optimizer: {name: sgd, lr: 0.5}}\n"
    "  - {label: SGD momentum, optimizer: {name: sgd, lr: 0.1, momentum: 0.9}}\n"
    "  - {label: Adam, optimizer: {name: adam, lr: 0.05}}\n";

TEST(CompareCommand, PrintsATableAndWritesAWellFormedPlotNamingEveryRun) {
  TempDir dir;
  write_file(dir / "c.yaml", kCompare);
  const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(dir / "out"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "run             optimizer  train loss  test loss  steps to 1.500   time  steps/s\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nSGD momentum    sgd  ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nAdam            adam  ")) << r.out;
  EXPECT_TRUE(contains(r.out, "plot: " + (dir / "out") + "/compare.svg")) << r.out;

  const std::string svg = read_file(dir / "out/compare.svg");
  ASSERT_FALSE(svg.empty());
  const auto lint = optreg_test::run_command("xmllint --noout " + shell_word(dir / "out/compare.svg"));
  EXPECT_EQ(lint.status, 0) << "the SVG is not well-formed XML: " << lint.out;
  EXPECT_TRUE(contains(svg, ">SGD &amp; &lt;co")) << "the label, escaped";
  EXPECT_TRUE(contains(svg, ">SGD momentum</text>"));
  EXPECT_TRUE(contains(svg, ">Adam</text>"));
  EXPECT_TRUE(contains(svg, ">step (optimizer updates)</text>"));
  EXPECT_TRUE(contains(svg, "training loss per optimizer"));

  const std::string csv = read_file(dir / "out/compare.csv");
  EXPECT_TRUE(contains(csv, "run,optimizer,step,epoch,train_loss,test_loss,test_accuracy,lr,grad_norm,seconds\n"));
  EXPECT_TRUE(contains(csv, "\n\"SGD & <co> \"\"q\"\"\",sgd,10,")) << "RFC 4180 quoting";
  EXPECT_TRUE(contains(csv, "\nAdam,adam,100,"));
  EXPECT_TRUE(contains(read_file(dir / "out/summary.txt"), "SGD momentum"));
}

TEST(CompareCommand, AnUnknownOptimizerInAnyRunIsPlacedBeforeTraining) {
  TempDir dir;
  write_file(dir / "c.yaml", "problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - optimizer: {name: sgd}\n  - optimizer: {name: adamm}\n");
  const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(dir / "out"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "c.yaml:5:23: unknown optimizer 'adamm' (did you mean 'adam'?)")) << r.out;
  EXPECT_FALSE(contains(r.out, "sgd: step")) << "no run trains before every run is checked";
}

const char* kTrain =
    "problem: {name: mlp, hidden: [16]}\n"
    "train: {seed: 2, steps: 150, batch_size: 50, log_every: 10, checkpoint_every: 40}\n"
    "optimizer: {name: adam, lr: 0.003}\n"
    "param_groups:\n  - {params: \"*.bias\", lr: 0.001}\n";

/// The final checkpoint of a run, without the wall-clock time it holds.
optreg::Checkpoint final_state(const std::string& path) {
  optreg::Checkpoint c = optreg::read_checkpoint(path);
  c.metadata.erase("train.seconds");
  return c;
}

/// The metrics file without its `seconds` column.
std::string metrics_without_time(const std::string& path) {
  std::string out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

TEST(TrainCommand, AResumeInAFreshProcessContinuesBitExactly) {
  TempDir dir;
  write_file(dir / "t.yaml", kTrain);
  const auto whole = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "whole"));
  ASSERT_EQ(whole.status, 0) << whole.out;
  EXPECT_TRUE(contains(whole.out, "metrics: " + (dir / "whole") + "/metrics.csv")) << whole.out;

  const auto first = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "split") + " --steps 67");
  ASSERT_EQ(first.status, 0) << first.out;
  EXPECT_TRUE(contains(first.out, "stopped at step 67 of 150")) << first.out;
  const auto rest = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "split") + " --resume " +
                         shell_word(dir / "split/checkpoint.optreg"));
  ASSERT_EQ(rest.status, 0) << rest.out;
  EXPECT_TRUE(contains(rest.out, "resuming at step 67 of 150")) << rest.out;

  EXPECT_TRUE(optreg_test::same_bits(final_state(dir / "whole/checkpoint.optreg"),
                                     final_state(dir / "split/checkpoint.optreg")));
  EXPECT_EQ(metrics_without_time(dir / "whole/metrics.csv"), metrics_without_time(dir / "split/metrics.csv"));
}

TEST(TrainCommand, CtrlCSavesACheckpointThatResumesBitExactly) {
  TempDir dir;
  // Long enough that the signal arrives mid-run.
  write_file(dir / "t.yaml",
             "problem: {name: mlp, hidden: [32]}\n"
             "train: {seed: 3, steps: 20000, batch_size: 32, log_every: 20}\n"
             "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n");
  const std::string err = dir / "err.txt";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freopen(err.c_str(), "w", stderr);
    freopen("/dev/null", "w", stdout);
    setenv("OPTREG_PLUGIN_PATH", "", 1);
    execl(OPTREG_TEST_TOOL, "optreg", "train", (dir / "t.yaml").c_str(), "--out", (dir / "run").c_str(), nullptr);
    _exit(127);
  }
  // Wait for the first progress line, then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!contains(read_file(err), "step 20/20000") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string text = read_file(err);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 130) << text;
  EXPECT_TRUE(contains(text, "interrupted")) << text;
  EXPECT_TRUE(contains(text, "checkpoint saved at step ")) << text;
  const optreg::Checkpoint saved = optreg::read_checkpoint(dir / "run/checkpoint.optreg");
  const std::int64_t step = saved.metadata.at("train.step").as_int();
  EXPECT_GE(step, 20);
  EXPECT_LT(step, 20000);

  // The interrupted run continues as if never stopped: compare a short continuation with a
  // fresh run stopped at the same step plus 30.
  const std::string stop = std::to_string(step + 30);
  const auto resumed = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "run") + " --resume " +
                            shell_word(dir / "run/checkpoint.optreg") + " --steps " + stop);
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  const auto straight = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "straight") +
                             " --steps " + stop);
  ASSERT_EQ(straight.status, 0) << straight.out;
  EXPECT_TRUE(optreg_test::same_bits(final_state(dir / "run/checkpoint.optreg"),
                                     final_state(dir / "straight/checkpoint.optreg")));
}

TEST(TrainCommand, AStepThatThrowsThePluginsOwnExceptionExitsWithItsMessage) {
  TempDir dir;
  write_file(dir / "t.yaml",
             "problem: {name: quadratic, dim: 4}\ntrain: {steps: 5, batch_size: 4}\n"
             "optimizer: {name: fixture_throws_own_class, throw_in: update_group}\n");
  const auto r = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "out") + " --plugin-path " +
                      shell_word(OPTREG_FIXTURE_THROWS_OWN_CLASS));
  EXPECT_EQ(r.status, 1) << r.out;  // not a signal (-1)
  EXPECT_TRUE(contains(r.out, "optreg: optimizer 'fixture_throws_own_class' (plugin " +
                                  optreg_test::canonical(OPTREG_FIXTURE_THROWS_OWN_CLASS) +
                                  "): update_group() threw: fixture_throws_own_class failed its step\n"))
      << r.out;
}

TEST(TrainCommand, AThreadCountOutOfRangeInTheEnvironmentIsIgnored) {
  TempDir dir;
  write_file(dir / "t.yaml", "problem: {name: quadratic, dim: 4}\ntrain: {steps: 3, batch_size: 4}\noptimizer: {name: sgd}\n");
  for (const char* threads : {"99999999999999999999", "100000", "0", "-2", "two"}) {
    const auto env = optreg_test::run_command("OPTREG_NUM_THREADS=" + std::string(threads) + " OPTREG_PLUGIN_PATH= " +
                                              shell_word(OPTREG_TEST_TOOL) + " train " + shell_word(dir / "t.yaml") +
                                              " --out " + shell_word(dir / "out"));
    EXPECT_EQ(env.status, 0) << threads << ": " << env.out;
  }
}

TEST(TrainCommand, MissingDataNamesTheFile) {
  TempDir dir;
  write_file(dir / "t.yaml", "problem: {name: logreg, data: " + (dir / "nothing") +
                                 "}\ntrain: {steps: 5}\noptimizer: {name: sgd}\n");
  const auto r = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "out"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg: " + (dir / "nothing") + "/train-images-idx3-ubyte.gz: no such file")) << r.out;
}

TEST(TrainCommand, AComparisonConfigNeedsARunLabel) {
  TempDir dir;
  write_file(dir / "c.yaml", kCompare);
  const auto r = tool("train " + shell_word(dir / "c.yaml"));
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "has a 'runs' list (SGD & <co> \"q\", SGD momentum, Adam): pick one with --run LABEL")) << r.out;
  const auto one = tool("train " + shell_word(dir / "c.yaml") + " --run Adam --out " + shell_word(dir / "a"));
  EXPECT_EQ(one.status, 0) << one.out;
  EXPECT_TRUE(contains(one.out, "\nAdam  adam ")) << one.out;
}

TEST(TrainCommand, AResumeOfAnotherConfigIsRefusedWithTheKey) {
  TempDir dir;
  write_file(dir / "t.yaml", kTrain);
  ASSERT_EQ(tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "a") + " --steps 5").status, 0);
  std::string other = kTrain;
  other.replace(other.find("batch_size: 50"), 14, "batch_size: 60");
  write_file(dir / "u.yaml", other);
  const auto r = tool("train " + shell_word(dir / "u.yaml") + " --resume " + shell_word(dir / "a/checkpoint.optreg"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "it was written with train.batch_size = 50, but " + (dir / "u.yaml") + " gives 60")) << r.out;
}

TEST(ProblemsCommand, ListsEveryBuiltInProblemWithItsOptions) {
  const auto r = tool("problems");
  EXPECT_EQ(r.status, 0) << r.out;
  for (const char* p : {"quadratic  ", "rosenbrock  ", "logreg  ", "mlp  ", "    hidden (list of floats, default [256.0, 128.0])"}) {
    EXPECT_TRUE(contains(r.out, p)) << p << "\n" << r.out;
  }
}

}  // namespace
