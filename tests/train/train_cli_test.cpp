// optreg train, compare and problems, run as a user runs them: separate processes, files on
// disk, signals.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/text.hpp>
#include <optreg/state_dict.hpp>

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
  EXPECT_TRUE(contains(r.out, "run             optimizer  state  train loss  test loss  steps to 1.500   time  steps/s\n")) << r.out;
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
  EXPECT_TRUE(contains(csv, "run,optimizer,step,epoch,train_loss,test_loss,test_accuracy,lr,grad_norm,seconds,status\n"));
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

TEST(TrainCommand, AResumeInTheMiddleOfAnAccumulationOfALookaheadWithAWeightAverageContinuesBitExactly) {
  TempDir dir;
  write_file(dir / "t.yaml",
             "problem: {name: mlp, hidden: [16]}\n"
             "train: {seed: 3, steps: 120, batch_size: 25, log_every: 10, checkpoint_every: 40}\n"
             "optimizer: {name: lookahead, k: 4, alpha: 0.5, inner: {name: adam, lr: 0.003}}\n"
             "scheduler: {name: step, step_size: 10, gamma: 0.9}\n"
             "clip: {max_norm: 1.0}\n"
             "average: {kind: ema, decay: 0.9, warmup: true, every: 2}\n"
             "accumulate: {steps: 3, reduce: mean}\n");
  const auto whole = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "whole"));
  ASSERT_EQ(whole.status, 0) << whole.out;
  EXPECT_TRUE(contains(whole.out, "avg test loss")) << whole.out;
  EXPECT_TRUE(contains(whole.out, "lookahead(adam)")) << whole.out;
  EXPECT_TRUE(contains(whole.out, "avg test acc")) << whole.out;
  // Step 67 is the first micro-batch of an accumulation of 3: the checkpoint holds its sum.
  const auto first = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "split") + " --steps 67");
  ASSERT_EQ(first.status, 0) << first.out;
  const optreg::Checkpoint mid = optreg::read_checkpoint(dir / "split/checkpoint.optreg");
  ASSERT_EQ(mid.sections.size(), 2U);
  EXPECT_EQ(mid.sections[0].name, "average");
  EXPECT_EQ(mid.sections[1].name, "accumulate");
  EXPECT_EQ(mid.sections[1].scalars.at("pending").as_int(), 1);
  EXPECT_EQ(mid.sections[0].scalars.at("steps").as_int(), 22) << "the optimizer stepped once every 3 batches";
  const auto rest = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "split") + " --resume " +
                         shell_word(dir / "split/checkpoint.optreg"));
  ASSERT_EQ(rest.status, 0) << rest.out;
  EXPECT_TRUE(optreg_test::same_bits(final_state(dir / "whole/checkpoint.optreg"),
                                     final_state(dir / "split/checkpoint.optreg")));
  EXPECT_EQ(metrics_without_time(dir / "whole/metrics.csv"), metrics_without_time(dir / "split/metrics.csv"));

  // Another accumulation, or no average, is another run: the resume is refused naming the key.
  write_file(dir / "u.yaml", read_file(dir / "t.yaml").substr(0, read_file(dir / "t.yaml").find("accumulate")) +
                                 "accumulate: {steps: 4, reduce: mean}\n");
  const auto other = tool("train " + shell_word(dir / "u.yaml") + " --out " + shell_word(dir / "u") + " --resume " +
                          shell_word(dir / "split/checkpoint.optreg"));
  EXPECT_EQ(other.status, 1) << other.out;
  EXPECT_TRUE(contains(other.out, "accumulate.steps")) << other.out;
}

TEST(TrainCommand, AnAccumulationForAClosureOptimizerIsRefusedAtItsSection) {
  TempDir dir;
  write_file(dir / "t.yaml",
             "problem: {name: quadratic, dim: 4}\n"
             "train: {steps: 10}\n"
             "optimizer: {name: lbfgs}\n"
             "accumulate: {steps: 2}\n");
  const auto r = tool("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "o"));
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "t.yaml:4:13: section 'accumulate': optimizer 'lbfgs' re-evaluates the loss with a closure"))
      << r.out;
}

/// Runs `optreg train ARGS` with its standard error going to the file `err`, interrupts it with
/// SIGINT once that file holds `wait_for`, and returns its wait status.
int interrupted_train(const std::vector<std::string>& args, const std::string& err, const std::string& wait_for) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    freopen(err.c_str(), "w", stderr);
    freopen("/dev/null", "w", stdout);
    setenv("OPTREG_PLUGIN_PATH", "", 1);
    std::vector<char*> argv = {const_cast<char*>("optreg"), const_cast<char*>("train")};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(OPTREG_TEST_TOOL, argv.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!contains(read_file(err), wait_for) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(TrainCommand, CtrlCSavesACheckpointThatResumesBitExactly) {
  TempDir dir;
  // Long enough that the signal arrives mid-run.
  write_file(dir / "t.yaml",
             "problem: {name: mlp, hidden: [32]}\n"
             "train: {seed: 3, steps: 20000, batch_size: 32, log_every: 20}\n"
             "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n");
  const std::string err = dir / "err.txt";
  const int status = interrupted_train({dir / "t.yaml", "--out", dir / "run"}, err, "step 20/20000");
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
  EXPECT_TRUE(contains(r.out, "it was written with train.batch_size = 50, but " + (dir / "u.yaml") + ":2:42 gives 60")) << r.out;
}

TEST(TrainCommand, ASliceCountThatIsNotPositiveIsAUsageErrorAndWithoutMpiSlicesNameWhatToInstall) {
  TempDir dir;
  write_file(dir / "t.yaml", kTrain);
  write_file(dir / "c.yaml", kCompare);
  for (const std::string& command : {"train " + shell_word(dir / "t.yaml"), "compare " + shell_word(dir / "c.yaml")}) {
    for (const char* bad : {"0", "-3", "2x"}) {
      const auto r = tool(command + " --out " + shell_word(dir / "out") + " --slices " + bad);
      EXPECT_EQ(r.status, 2) << r.out;
      EXPECT_TRUE(contains(r.out, std::string("--slices needs a positive whole number, not '") + bad + "'")) << r.out;
    }
#ifndef OPTREG_TEST_TOOL_HAS_MPI
    const auto r = tool(command + " --out " + shell_word(dir / "out") + " --slices 2");
    EXPECT_EQ(r.status, 2) << r.out;
    EXPECT_TRUE(contains(r.out, "was built without optreg::mpi (Open MPI was not found: apt-get install")) << r.out;
#endif
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out")) << "nothing trained";
}

// ---------------------------------------------------------------------------------------------
// Hostile text, full disks, divergence.

/// `optreg train CONFIG --out OUT MORE...`.
optreg_test::CommandRun train_into(const std::string& config, const std::string& out, const std::string& more = "") {
  return tool("train " + shell_word(config) + " --out " + shell_word(out) + more);
}

const char* kQuick =
    "problem: {name: quadratic, dim: 10}\n"
    "train: {steps: 60, batch_size: 16, log_every: 10}\n"
    "optimizer: {name: sgd, lr: 0.1}\n";

/// The files under `dir` whose name begins with "ran": what the hostile commands below create.
std::vector<std::string> ran_files(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().filename().string().rfind("ran", 0) == 0) found.push_back(e.path().string());
  }
  return found;
}

TEST(CompareCommand, ALabelWithBackticksRunsNothingAndThePlotStillShowsIt) {
  TempDir dir;
  const std::string ran = dir / "ran";
  // gnuplot would run the backquotes and the pipes; the shell the `$(...)`.
  write_file(dir / "c.yaml", "problem: {name: quadratic, dim: 5}\n"
                             "train: {steps: 20, batch_size: 16, log_every: 10}\n"
                             "runs:\n"
                             "  - {label: \"`touch " + ran + "-bq` $(touch " + ran + "-sh) @m \\\\ '\\\" two\\nlines\", "
                             "optimizer: {name: sgd, lr: 0.1}}\n"
                             "  - {label: \"esc \\e[31m \xff end\\\\\", optimizer: {name: sgd, lr: 0.2}}\n");
  // An output folder with a quote, a backquote and a line break; plot names that gnuplot would
  // open as pipes.
  const std::string out = dir / "o'`touch ran-out`\nx";
  for (const std::string plot : {"|touch ran-output #.svg", "<touch ran-data #.png"}) {
    const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(out) + " --plot " +
                        shell_word(out + "/" + plot));
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_FALSE(read_file(out + "/" + plot).empty()) << plot;
  }
  EXPECT_EQ(ran_files(dir.path()), std::vector<std::string>{}) << "a command ran";

  const std::string svg = out + "/|touch ran-output #.svg";
  const auto lint = optreg_test::run_command("xmllint --noout " + shell_word(svg));
  EXPECT_EQ(lint.status, 0) << lint.out;
  const std::string text = read_file(svg);
  EXPECT_TRUE(contains(text, ">`touch " + ran + "-bq` $(touch " + ran + "-sh) @m \\ '\" two</text>")) << text;
  EXPECT_TRUE(contains(text, ">lines</text>"));
  EXPECT_TRUE(contains(text, ">esc \\x1b[31m \\xff end\\</text>")) << "control and non-UTF-8 bytes shown, not sent";

  // Redrawing from the saved script runs nothing either.
  const auto redraw = optreg_test::run_command("cd " + shell_word(out) + " && gnuplot './|touch ran-output #.svg.gp'");
  EXPECT_EQ(redraw.status, 0) << redraw.out;
  EXPECT_EQ(ran_files(dir.path()), std::vector<std::string>{}) << "a command ran on the redraw";
}

TEST(CompareCommand, APlotFileOfAnotherKindIsRefusedBeforeAnyRunTrains) {
  TempDir dir;
  write_file(dir / "c.yaml", kCompare);
  const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(dir / "out") + " --plot x.pdf");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg: --plot x.pdf: the file name must end in .svg or .png\n")) << r.out;
  EXPECT_FALSE(contains(r.out, "step ")) << "nothing trained";
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
}

/// A run of the tool with its standard output on a full disk (its errors still come back).
optreg_test::CommandRun tool_to_full_disk(const std::string& args) {
  return optreg_test::run_command("{ OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " " + args +
                                  " >/dev/full; }");
}

TEST(CompareCommand, AFullDiskForAnyOutputIsAnErrorNamingTheFile) {
  TempDir dir;
  write_file(dir / "c.yaml", kCompare);
  for (const std::string name : {"compare.csv", "summary.txt", "compare.svg", "compare.svg.dat", "compare.svg.gp"}) {
    const std::string out = dir / name;
    std::filesystem::create_directories(out);
    std::filesystem::create_symlink("/dev/full", out + "/" + name);
    const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(out));
    EXPECT_EQ(r.status, 1) << name << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, "optreg: " + out + "/" + name + ": cannot write")) << name << "\n" << r.out;
    EXPECT_FALSE(contains(r.out, "metrics: ")) << name;
  }
  const auto r = tool_to_full_disk("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(dir / "stdout"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg: standard output: cannot write")) << r.out;
}

TEST(TrainCommand, AFullDiskForTheMetricsFileIsAnErrorNamingIt) {
  TempDir dir;
  write_file(dir / "t.yaml", kQuick);
  std::filesystem::create_directories(dir / "out");
  std::filesystem::create_symlink("/dev/full", dir / "out/metrics.csv");
  const std::string message = "optreg: " + (dir / "out") + "/metrics.csv: cannot write: No space left on device\n";
  const auto fresh = train_into(dir / "t.yaml", dir / "out");
  EXPECT_EQ(fresh.status, 1) << fresh.out;
  EXPECT_TRUE(contains(fresh.out, message)) << fresh.out;

  // A resume reads back the rows to keep only from a regular file (/dev/full reads forever).
  ASSERT_EQ(train_into(dir / "t.yaml", dir / "a", " --steps 20").status, 0);
  const auto resumed = train_into(dir / "t.yaml", dir / "out", " --resume " + shell_word(dir / "a/checkpoint.optreg"));
  EXPECT_EQ(resumed.status, 1) << resumed.out;
  EXPECT_TRUE(contains(resumed.out, message)) << resumed.out;

  const auto r = tool_to_full_disk("train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "b"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg: standard output: cannot write")) << r.out;
}

/// The exit status and standard error of the tool run with files limited to `max_bytes`
/// (RLIMIT_FSIZE; a write past it fails with EFBIG).
std::pair<int, std::string> tool_with_file_limit(std::uint64_t max_bytes, const std::vector<std::string>& args,
                                                 const std::string& err) {
  const pid_t pid = fork();
  if (pid == 0) {
    freopen(err.c_str(), "w", stderr);
    freopen("/dev/null", "w", stdout);
    signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{max_bytes, max_bytes};
    setrlimit(RLIMIT_FSIZE, &limit);
    setenv("OPTREG_PLUGIN_PATH", "", 1);
    std::vector<char*> argv{const_cast<char*>("optreg")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(OPTREG_TEST_TOOL, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(err)};
}

TEST(TrainCommand, AWriteThatFailsOnResumeKeepsTheRowsAlreadyWritten) {
  TempDir dir;
  write_file(dir / "t.yaml", kQuick);
  const std::string t = dir / "t.yaml";
  const std::string out = dir / "out";
  ASSERT_EQ(train_into(t, out, " --steps 20").status, 0);
  std::filesystem::copy_file(out + "/checkpoint.optreg", dir / "at20.optreg");
  ASSERT_EQ(train_into(t, out, " --resume " + shell_word(out + "/checkpoint.optreg") + " --steps 40").status, 0);
  const std::string before = read_file(out + "/metrics.csv");
  const std::size_t kept = before.find("\n30,") + 1;  // the header and the rows up to step 20
  ASSERT_NE(kept, 0U);

  // Resuming at step 20 keeps those rows and appends after them; the first append fails.
  const auto [status, err] =
      tool_with_file_limit(kept + 10, {"train", t, "--out", out, "--resume", dir / "at20.optreg"}, dir / "err.txt");
  EXPECT_EQ(status, 1) << err;
  EXPECT_TRUE(contains(err, "optreg: " + out + "/metrics.csv: cannot write: File too large\n")) << err;
  const std::string after = read_file(out + "/metrics.csv");
  EXPECT_EQ(after.substr(0, kept), before.substr(0, kept)) << "the rows written before are intact";

  // A resume with room drops the cut-off row and ends as a run that never stopped.
  ASSERT_EQ(train_into(t, out, " --resume " + shell_word(dir / "at20.optreg")).status, 0);
  ASSERT_EQ(train_into(t, dir / "whole").status, 0);
  EXPECT_EQ(metrics_without_time(out + "/metrics.csv"), metrics_without_time(dir / "whole/metrics.csv"));
}

const char* kDiverging =
    "problem: {name: quadratic, dim: 10}\n"
    "train: {steps: 50, batch_size: 16, log_every: 10}\n"
    "optimizer: {name: sgd, lr: 1.0e30}\n";

TEST(TrainCommand, ADivergingRunStopsWithStatus3NamingTheStep) {
  TempDir dir;
  write_file(dir / "d.yaml", kDiverging);
  const auto r = train_into(dir / "d.yaml", dir / "out");
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg: sgd: diverged at step 3: the training loss is nan; the run stopped there without "
                              "saving a checkpoint (train.on_divergence: continue trains on)\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "sgd: step 3/50  loss nan  lr 1e+30")) << "the loss is shown, not '-'\n" << r.out;
  EXPECT_TRUE(contains(read_file(dir / "out/metrics.csv"), "\n3,0,nan,,,1e+30,,"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out/checkpoint.optreg"));
}

TEST(CompareCommand, ADivergedRunIsMarkedInTheTableAndTheCsvAndTheOthersTrainOn) {
  TempDir dir;
  write_file(dir / "c.yaml",
             "problem: {name: quadratic, dim: 10}\n"
             "train: {steps: 50, batch_size: 16, log_every: 10}\n"
             "runs:\n"
             "  - {label: SGD, optimizer: {name: sgd, lr: 0.5}}\n"
             "  - {label: huge lr, optimizer: {name: sgd, lr: 1.0e30}}\n"
             "  - {label: Adam, optimizer: {name: adam, lr: 0.05}}\n");
  const auto r = tool("compare " + shell_word(dir / "c.yaml") + " --out " + shell_word(dir / "out"));
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_TRUE(contains(r.out, "\nhuge lr  sgd          0 B    diverged          -  ")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nhuge lr: diverged at step 3: the training loss is nan; the run stopped there\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nAdam     adam  ")) << "the next run trained\n" << r.out;
  const std::string csv = read_file(dir / "out/compare.csv");
  EXPECT_TRUE(contains(csv, "\nhuge lr,sgd,3,0,nan,,,1e+30,,")) << csv;
  EXPECT_TRUE(contains(csv, ",diverged\nAdam,adam,10,")) << csv;
  EXPECT_TRUE(contains(csv, "\nAdam,adam,50,")) << csv;
  EXPECT_TRUE(contains(read_file(dir / "out/summary.txt"), "huge lr: diverged at step 3"));
  const auto lint = optreg_test::run_command("xmllint --noout " + shell_word(dir / "out/compare.svg"));
  EXPECT_EQ(lint.status, 0) << lint.out;
  EXPECT_TRUE(contains(read_file(dir / "out/compare.svg"), ">huge lr</text>")) << "in the key, without a line";
}

TEST(TrainCommand, HostileLabelsAndPathsReachTheTerminalInertAndTheResumeHintStillRuns) {
  TempDir dir;
  const std::string config = dir / "cfg\x1b[31m\xff.yaml";
  const std::string out = dir / "out\x1b]0;t\x07";
  const std::string label = "evil\x1b[2J'\\";
  // Long enough that the signal arrives mid-run.
  write_file(config,
             "problem: {name: quadratic, dim: 10}\n"
             "train: {steps: 2000000, batch_size: 16, log_every: 10}\n"
             "runs:\n"
             "  - {label: \"evil\\e[2J'\\\\\", optimizer: {name: sgd, lr: 0.1}}\n"
             "  - {label: plain, optimizer: {name: sgd, lr: 0.2}}\n");
  const std::string err = dir / "err.txt";
  const std::string progress = "evil\\x1b[2J'\\x5c: step 20/2000000";
  const int status = interrupted_train({config, "--run", label, "--out", out}, err, progress);
  const std::string text = read_file(err);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 130) << text;
  for (std::size_t at = 0, next = 0; at < text.size(); at = next + 1) {
    next = std::min(text.find('\n', at), text.size());
    const std::string line = text.substr(at, next - at);
    EXPECT_EQ(optreg::escape_message(line), line) << "a line on the terminal is not inert";
  }
  EXPECT_TRUE(contains(text, progress)) << text;
  EXPECT_TRUE(contains(text, "evil\\x1b[2J'\\x5c: interrupted")) << text;
  // The hint quotes each hostile word for bash as $'...' with the same \xNN escapes: pasted
  // into bash, it resumes the run.
  const std::string hint = "resume with: optreg train ";
  const auto at = text.find(hint);
  ASSERT_NE(at, std::string::npos) << text;
  const std::string command = text.substr(at + hint.size(), text.find('\n', at) - at - hint.size());
  EXPECT_TRUE(contains(command, "--run $'evil\\x1b[2J\\'\\x5c'")) << command;
  const optreg::Checkpoint saved = optreg::read_checkpoint(out + "/checkpoint.optreg");
  const std::string stop = std::to_string(saved.metadata.at("train.step").as_int() + 5);
  write_file(dir / "resume.sh", "OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " train " + command +
                                    " --steps " + stop + "\n");
  const auto resumed = optreg_test::run_command("bash " + shell_word(dir / "resume.sh"));
  EXPECT_EQ(resumed.status, 0) << resumed.out;
  EXPECT_TRUE(contains(resumed.out, "stopped at step " + stop + " of 2000000; checkpoint " + optreg::escape_text(out)))
      << resumed.out;
}

TEST(ProblemsCommand, ListsEveryBuiltInProblemWithItsOptions) {
  const auto r = tool("problems");
  EXPECT_EQ(r.status, 0) << r.out;
  for (const char* p : {"quadratic  ", "rosenbrock  ", "logreg  ", "mlp  ", "    hidden (list of floats, default [256.0, 128.0])"}) {
    EXPECT_TRUE(contains(r.out, p)) << p << "\n" << r.out;
  }
}

// ---------------------------------------------------------------------------------------------
// Files that are not regular files, and small memory limits: every command ends, never hangs.

/// `args` run with a time limit, so that a command that hangs fails its test (exit 124) rather
/// than stopping the suite; with `address_space_kib`, under `ulimit -v` that many KiB.
optreg_test::CommandRun bounded_tool(const std::string& args, int address_space_kib = 0) {
  const std::string limit = address_space_kib > 0 ? "ulimit -v " + std::to_string(address_space_kib) + "; " : "";
  return optreg_test::run_command("(" + limit + "OPTREG_PLUGIN_PATH= exec timeout 120 " + shell_word(OPTREG_TEST_TOOL) +
                                  " " + args + ")");
}

TEST(FilesNamedByTheUser, AFifoIsRefusedWithoutWaitingForAWriter) {
  TempDir dir;
  const std::string fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  write_file(dir / "t.yaml", "problem: {name: rosenbrock}\ntrain: {steps: 5}\noptimizer: {name: sgd}\n");
  write_file(dir / "opt.yaml", "optimizer: {name: sgd}\n");
  const std::string regular = ", not a regular file";
  const std::pair<std::string, std::string> cases[] = {
      {"inspect " + shell_word(fifo), "checkpoint " + fifo + ": it is a FIFO (named pipe)" + regular},
      {"check " + shell_word(fifo), fifo + ": the config file is a FIFO (named pipe)" + regular},
      {"check " + shell_word(dir / "opt.yaml") + " --params " + shell_word(fifo),
       fifo + ": the parameter list is a FIFO (named pipe)" + regular},
      {"train " + shell_word(fifo), fifo + ": the config file is a FIFO (named pipe)" + regular},
      {"compare " + shell_word(fifo), fifo + ": the config file is a FIFO (named pipe)" + regular},
      {"train " + shell_word(dir / "t.yaml") + " --out " + shell_word(dir / "out") + " --resume " + shell_word(fifo),
       "checkpoint " + fifo + ": it is a FIFO (named pipe)" + regular},
  };
  for (const auto& [args, message] : cases) {
    const auto r = bounded_tool(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, message)) << args << "\n" << r.out;
  }
}

TEST(FilesNamedByTheUser, AFolderAsConfigIsNamedAsAFolder) {
  TempDir dir;
  const auto r = bounded_tool("check " + shell_word(dir.path()));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + dir.path() + ": the config file is a folder, not a regular file")) << r.out;
}

/// About 176 MiB: enough for every command, not for OpenBLAS's work buffer with its library.
constexpr int kSmallAddressSpaceKib = 180000;

TEST(MemoryLimit, CommandsWithoutLinearAlgebraRunUnderASmallAddressSpace) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  TempDir dir;
  write_file(dir / "opt.yaml", "optimizer: {name: adam, lr: 0.01}\n");
  write_file(dir / "params.yaml", "w: [4, 3]\nb: [4]\n");
  write_file(dir / "r.yaml", "problem: {name: rosenbrock}\ntrain: {steps: 20, log_every: 5}\noptimizer: {name: adam}\n");
  write_file(dir / "rc.yaml",
             "problem: {name: rosenbrock}\ntrain: {steps: 20, log_every: 5}\nruns:\n"
             "  - {label: a, optimizer: {name: sgd, lr: 0.001}}\n  - {label: b, optimizer: {name: adam, lr: 0.01}}\n");
  optreg::StateDict state;
  state.optimizer = "sgd";
  state.plugin_version = "1.0.0";
  optreg::save_checkpoint(dir / "s.ckpt", state);
  const std::string commands[] = {
      "--version",
      "--help",
      "list",
      "show adam",
      "problems",
      "check " + shell_word(dir / "opt.yaml") + " --params " + shell_word(dir / "params.yaml"),
      "inspect " + shell_word(dir / "s.ckpt"),
      "conformance " + shell_word(OPTREG_TEST_SGD_PLUGIN),
      "train " + shell_word(dir / "r.yaml") + " --out " + shell_word(dir / "r"),
      "compare " + shell_word(dir / "rc.yaml") + " --out " + shell_word(dir / "rc"),
  };
  for (const auto& args : commands) {
    const auto r = bounded_tool(args, kSmallAddressSpaceKib);
    EXPECT_EQ(r.status, 0) << args << " (124: it hung)\n" << r.out;
  }
}

TEST(MemoryLimit, CommandsWithLinearAlgebraFailCleanlyUnderASmallAddressSpace) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  TempDir dir;
  write_file(dir / "q.yaml", "problem: {name: quadratic, dim: 10}\ntrain: {steps: 20}\noptimizer: {name: sgd}\n");
  write_file(dir / "qc.yaml",
             "problem: {name: quadratic, dim: 10}\ntrain: {steps: 20}\nruns:\n  - {label: a, optimizer: {name: sgd}}\n");
  write_file(dir / "l.yaml", "problem: {name: logreg}\ntrain: {steps: 2}\noptimizer: {name: sgd}\n");
  const std::string blas = "optreg: problem 'quadratic' needs OpenBLAS (libopenblas.so.0), which takes about ";
  const std::pair<std::string, std::string> cases[] = {
      {"train " + shell_word(dir / "q.yaml") + " --out " + shell_word(dir / "q"), blas},
      {"compare " + shell_word(dir / "qc.yaml") + " --out " + shell_word(dir / "qc"), blas},
      // Fashion-MNIST as floats does not fit before OpenBLAS is even needed.
      {"train " + shell_word(dir / "l.yaml") + " --out " + shell_word(dir / "l"),
       "optreg: /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz: out of memory: its 47040000 pixels as "
       "floats asks for 188160000 bytes (179.4 MiB)"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = bounded_tool(args, kSmallAddressSpaceKib);
    EXPECT_EQ(r.status, 1) << args << " (124: it hung)\n" << r.out;
    EXPECT_TRUE(contains(r.out, message)) << args << "\n" << r.out;
  }
  // With room for OpenBLAS, the same run trains.
  EXPECT_EQ(bounded_tool("train " + shell_word(dir / "q.yaml") + " --out " + shell_word(dir / "q2"), 4 * kSmallAddressSpaceKib)
                .status,
            0);
}

}  // namespace
