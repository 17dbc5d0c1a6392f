// optreg train, optreg compare and optreg problems: run optimizers on the built-in problems.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <iostream>
#include <memory>

#include <optreg/train/output.hpp>
#include <optreg/train/plot.hpp>
#include <optreg/train/run.hpp>

#include "cli.hpp"
#include "parallel.hpp"

namespace optreg::cli {

namespace {

namespace fs = std::filesystem;
using namespace optreg::train;

const CommandHelp kTrainHelp = {
    "optreg train CONFIG [--out DIR] [--resume CHECKPOINT] [--run LABEL] [--steps N]\n"
    "                           [--slices N] [--plugin-path DIR|FILE]...",
    "train a built-in problem with a config's optimizer",
    "Trains the config's problem with the config's optimizer (docs/train.md). Shows a progress\n"
    "bar on a terminal and plain lines otherwise; writes DIR/metrics.csv and a checkpoint\n"
    "DIR/checkpoint.optreg every train.checkpoint_every steps, at the end, and on Ctrl-C.\n"
    "Under mpirun (mpirun -np N optreg train CONFIG) it trains data-parallel: each rank the\n"
    "gradients of its slices of every batch, the optimizer's state sharded between the ranks,\n"
    "the checkpoint sharded (docs/distributed.md); --slices N fixes the slices per batch, so\n"
    "that any number of ranks dividing N, one process included, trains the same bits.",
    "Exit status: 0 when training finished, 1 on an error (a file that cannot be written\n"
    "included), 2 on a usage error, 3 when the run diverged (its loss or a parameter not\n"
    "finite; train.on_divergence: continue trains on), 130 when interrupted (after saving\n"
    "the checkpoint).",
};

const CommandHelp kCompareHelp = {
    "optreg compare CONFIG [--out DIR] [--plot FILE] [--slices N] [--plugin-path DIR|FILE]...",
    "train a problem with several optimizers; table and plot",
    "Trains the config's problem once per entry of its 'runs' list, from the same seed and\n"
    "data order, then prints a table (final losses, test accuracy, steps to train.target_loss,\n"
    "time, steps/s) and plots the training loss of every run against the step.\n"
    "Writes DIR/compare.csv (every metric row, labelled), DIR/summary.txt (the table) and\n"
    "the plot (default DIR/compare.svg; .png also works), with its data and gnuplot script.\n"
    "A run that diverges is marked so in the table and the CSV, and the next run trains.\n"
    "Under mpirun, or with --slices N, every run trains data-parallel as 'optreg train' does.",
    "Exit status: 0 when every run finished, 1 on an error (a file that cannot be written\n"
    "included), 2 on a usage error, 3 when a run diverged, 130 when interrupted.",
};

const CommandHelp kProblemsHelp = {
    "optreg problems",
    "list the built-in problems",
    "Lists the built-in problems and their options.",
    "",
};

constexpr int kInterrupted = 130;
/// A run stopped because its loss or parameters stopped being finite.
constexpr int kDiverged = 3;

std::atomic<bool> g_interrupt{false};

extern "C" void on_interrupt(int) { g_interrupt.store(true); }

/// Ctrl-C (and SIGTERM) ask the loop to stop after the current step; a second one kills.
void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  }
  return buf;
}

/// A number with `digits` decimals; nan, inf or -inf for one that is not finite.
std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return metric_text(v);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// A bar redrawn in place on a terminal; a line per metric row otherwise.
class ConsoleProgress final : public ProgressSink {
 public:
  ConsoleProgress(std::ostream& err, bool terminal) : err_(err), terminal_(terminal) {}

  void begin(const std::string& label, std::int64_t first, std::int64_t total) override {
    label_ = escape_text(label);
    first_ = first;
    total_ = total;
    start_ = Clock::now();
    last_draw_ = start_ - std::chrono::seconds(1);
    loss_.reset();
    if (first > 0) err_ << label_ << ": resuming at step " << first << " of " << total << '\n';
  }

  void step(std::int64_t step, double loss, const MetricRow* row) override {
    if (row != nullptr) loss_ = row->train_loss;
    if (row != nullptr && row->test_accuracy) accuracy_ = row->test_accuracy;
    const auto now = Clock::now();
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(step - first_) / secs : 0;
    const double left = rate > 0 ? static_cast<double>(total_ - step) / rate : std::nan("");
    if (!loss_) loss_ = loss;
    if (terminal_) {
      if (step != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      constexpr int kWidth = 28;
      const int filled = static_cast<int>(kWidth * static_cast<double>(step) / static_cast<double>(total_));
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(kWidth, '.');
      char line[256];
      std::snprintf(line, sizeof line, "\r%-14.14s [%s] %3d%% %lld/%lld  loss %s%s  %s steps/s  left %s \x1b[K",
                    label_.c_str(), bar.c_str(), static_cast<int>(100.0 * static_cast<double>(step) / static_cast<double>(total_)),
                    static_cast<long long>(step), static_cast<long long>(total_), fixed(*loss_, 4).c_str(),
                    accuracy_ ? ("  test acc " + fixed(100 * *accuracy_, 1) + "%").c_str() : "",
                    fixed(rate, 0).c_str(), duration(left).c_str());
      err_ << line << std::flush;
    } else if (row != nullptr) {
      err_ << label_ << ": step " << step << "/" << total_ << "  loss " << fixed(row->train_loss, 4);
      if (row->lr) {
        char lr[32];
        std::snprintf(lr, sizeof lr, "%.4g", *row->lr);
        err_ << "  lr " << lr;
      }
      if (row->test_loss) err_ << "  test loss " << fixed(*row->test_loss, 4);
      if (row->test_accuracy) err_ << "  test acc " << fixed(100 * *row->test_accuracy, 2) << "%";
      err_ << "  " << fixed(rate, 0) << " steps/s  left " << duration(left) << '\n';
    }
  }

  void end(bool interrupted) override {
    if (terminal_) err_ << '\n';
    if (interrupted) err_ << label_ << ": interrupted\n";
    loss_.reset();
    accuracy_.reset();
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::ostream& err_;
  bool terminal_;
  std::string label_;
  std::int64_t first_ = 0, total_ = 1;
  Clock::time_point start_, last_draw_;
  std::optional<double> loss_;
  std::optional<double> accuracy_;
};

std::string default_out(const std::string& config) { return "runs/" + fs::path(config).stem().string(); }

/// The arguments train and compare share.
struct Common {
  std::string config;
  std::string out;
  PluginOptions plugins;
};

/// The arguments of `optreg train`.
struct TrainArgs {
  Common common;
  std::string resume;
  std::string run_label;
  std::string steps;  // --steps as given
  std::string slices;  // --slices as given
};

/// The arguments of `optreg compare`.
struct CompareArgs {
  Common common;
  std::string plot;
  std::string slices;  // --slices as given
};

/// Adds CONFIG, --out and the plugin options of train and compare.
void add_common(CLI::App& command, Common& c) {
  add_positional(command, "CONFIG", c.config, "the run config");
  command.add_option("--out", c.out, "output folder (default: runs/<config name>)")->type_name("DIR");
  add_plugin_options(command, c.plugins);
}

/// Checks what train and compare share once they are parsed: one config, no unknown option.
void check_common(const CLI::App& command, const Common& c) {
  const std::string name = command.get_name();
  const std::vector<std::string> extra = extra_arguments(command);
  if (!extra.empty() && extra.front().rfind('-', 0) == 0) {
    throw CommandLineError{"unknown option '" + extra.front() + "' for 'optreg " + name + "'"};
  }
  if (!extra.empty()) throw CommandLineError{"one config at a time; got '" + c.config + "' and '" + extra.front() + "'"};
  if (c.config.empty()) throw CommandLineError{"'optreg " + name + "' needs a config file"};
}

/// The number `option` (--steps, --slices) gives: a positive whole number.
std::int64_t parse_count(const std::string& v, const std::string& option) {
  try {
    std::size_t used = 0;
    const std::int64_t n = std::stoll(v, &used);
    if (used == v.size() && n > 0) return n;
  } catch (const std::exception&) {
  }
  throw CommandLineError{option + " needs a positive whole number, not '" + v + "'"};
}

std::string problem_title(const RunConfig& config) {
  std::string s = config.problem;
  if (config.problem == "mlp") {
    std::string layers = "784";
    for (double h : config.problem_options.at("hidden").as_float_list()) layers += "-" + std::to_string(static_cast<long long>(h));
    s = "Fashion-MNIST MLP " + layers + "-10";
  } else if (config.problem == "logreg") {
    s = "Fashion-MNIST logistic regression";
  }
  return s;
}

/// Whether a run stopped because it diverged (rather than training on as the config may ask).
bool stopped_by_divergence(const RunConfig& config, const RunOutcome& r) {
  return r.diverged_at >= 0 && !config.train.continue_on_divergence;
}

/// "LABEL: diverged at step N: WHAT".
std::string divergence_text(const RunOutcome& r) {
  return escape_text(r.label) + ": diverged at step " + std::to_string(r.diverged_at) + ": " + escape_message(r.divergence);
}

/// "120 B", "12.5 KiB", "3.03 MiB": a size in bytes as the table shows it.
std::string size_text(std::size_t bytes) {
  const auto b = static_cast<double>(bytes);
  if (bytes < 1024) return std::to_string(bytes) + " B";
  if (bytes < 1024 * 1024) return fixed(b / 1024.0, 1) + " KiB";
  return fixed(b / (1024.0 * 1024.0), 2) + " MiB";
}

/// The table of runs, then a line for each run that diverged.
std::string summary_table(const RunConfig& config, const std::vector<RunOutcome>& runs) {
  const auto classes = [](const RunOutcome& r) { return !std::isnan(r.test.accuracy); };
  const bool acc = std::any_of(runs.begin(), runs.end(), [&](const RunOutcome& r) {
    return !r.interrupted && !stopped_by_divergence(config, r) && r.steps_done == r.total_steps && classes(r);
  });
  const std::string target = std::isnan(config.train.target_loss) ? "" : fixed(config.train.target_loss, 3);
  std::vector<std::vector<std::string>> rows;
  const bool dtypes = std::any_of(runs.begin(), runs.end(), [](const RunOutcome& r) { return r.param_dtype != DType::Float32; });
  // Runs with a weight average show its test results beside the trained weights' ones.
  const bool averaged = std::any_of(runs.begin(), runs.end(), [](const RunOutcome& r) { return r.average_test.has_value(); });
  rows.push_back({"run", "optimizer", dtypes ? "params" : "", "state", "train loss", "test loss", acc ? "test acc" : "",
                  averaged ? "avg test loss" : "", averaged && acc ? "avg test acc" : "",
                  target.empty() ? "" : "steps to " + target, "time", "steps/s"});
  std::string notes;
  for (const auto& r : runs) {
    const bool diverged = stopped_by_divergence(config, r);
    const bool done = !r.interrupted && !diverged && r.steps_done == r.total_steps;
    if (r.diverged_at >= 0) {
      notes += divergence_text(r) + (diverged ? "; the run stopped there\n" : "; it trained on (on_divergence: continue)\n");
    }
    rows.push_back({escape_text(r.label), escape_text(r.optimizer), dtypes ? dtype_name(r.param_dtype) : "",
                    size_text(r.state_bytes),
                    done ? fixed(r.train.loss, 4) : (diverged ? "diverged" : "-"),
                    done ? fixed(r.test.loss, 4) : "-",
                    acc ? (done ? fixed(100 * r.test.accuracy, 2) + "%" : "-") : "",
                    averaged ? (done && r.average_test ? fixed(r.average_test->loss, 4) : "-") : "",
                    averaged && acc ? (done && r.average_test ? fixed(100 * r.average_test->accuracy, 2) + "%" : "-") : "",
                    target.empty() ? "" : (r.steps_to_target < 0 ? "never" : std::to_string(r.steps_to_target)),
                    fixed(r.seconds, 1) + " s", fixed(r.steps_per_second, 0)});
  }
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (std::size_t c = 0; c < rows[r].size(); ++c) {
      if (width[c] == 0) continue;
      std::string cell = rows[r][c];
      const std::string pad(width[c] - cell.size(), ' ');
      line += (line.empty() ? "" : "  ") + (c < 3 ? cell + pad : pad + cell);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
    if (r == 0) out += std::string(line.size(), '-') + '\n';
  }
  return out + (notes.empty() ? "" : "\n" + notes);
}

/// A word for a POSIX shell: as it is when it holds only safe characters, else single-quoted;
/// one that holds a byte that must not reach a terminal in bash's $'...' with \xNN escapes, so
/// that the line is inert and still runs when pasted.
std::string shell_word(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+") ==
                        std::string::npos) {
    return s;
  }
  const bool inert = escape_message(s) == s;
  std::string out = inert ? "'" : "$'";
  for (char c : inert ? s : escape_text(s)) {
    out += c != '\'' ? std::string(1, c) : inert ? std::string("'\\''") : std::string("\\'");
  }
  return out + "'";
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void warn_nonfinite(std::ostream& err, const RunOutcome& r) {
  if (r.nonfinite_grad_norms > 0) {
    err << escape_text(r.label) << ": warning: " << r.nonfinite_grad_norms
        << " steps had a non-finite total gradient norm (clip: error_if_nonfinite: true stops at the first)\n";
  }
}

void write_text(const std::string& path, const std::string& text) {
  OutputFile f(path);
  f << text;
  f.close();
}

/// Checks standard output as every output file is checked: a full disk there is an error too.
void finish_output(std::ostream& out) {
  out.flush();
  if (!out) throw Error("standard output: cannot write (is the disk full?)");
}

/// The run of `config` that `optreg train` trains: its only one, or the one --run names.
const RunSpec& chosen_run(const RunConfig& config, const TrainArgs& args) {
  const RunSpec& only = config.runs.front();
  if (!config.is_comparison) {
    if (!args.run_label.empty() && args.run_label != only.label) {
      throw CommandLineError{args.common.config + " has one run, '" + only.label + "'; --run " + args.run_label +
                             " names none"};
    }
    return only;
  }
  std::string labels;
  for (const auto& r : config.runs) {
    if (r.label == args.run_label) return r;
    labels += (labels.empty() ? "" : ", ") + r.label;
  }
  throw CommandLineError{args.common.config + " has a 'runs' list (" + labels +
                         "): pick one with --run LABEL, or use 'optreg compare'"};
}

/// The command line that resumes an interrupted `optreg train`.
std::string resume_command(const TrainArgs& args, const RunConfig& config, const RunSpec& run,
                           const std::string& checkpoint, int ranks) {
  const Common& c = args.common;
  // A data-parallel run's checkpoint records its slices, which the resume keeps.
  std::string again = ranks > 1 ? "mpirun -np " + std::to_string(ranks) + " " : std::string();
  again += "optreg train " + shell_word(c.config) + " --resume " + shell_word(checkpoint);
  if (config.is_comparison) again += " --run " + shell_word(run.label);
  if (!c.out.empty()) again += " --out " + shell_word(c.out);
  for (const auto& p : c.plugins.paths) again += " --plugin-path " + shell_word(p);
  if (!c.plugins.default_path) again += " --no-default-path";
  return again;
}

/// Reports how a training run ended; returns the exit status.
int report_training(const TrainArgs& args, const RunConfig& config, const RunSpec& run, const RunOptions& options,
                    const RunOutcome& r, std::ostream& out, std::ostream& err) {
  warn_nonfinite(err, r);
  if (stopped_by_divergence(config, r)) {
    err << "optreg: " << divergence_text(r)
        << "; the run stopped there without saving a checkpoint (train.on_divergence: continue trains on)\n";
    out << "metrics: " << escape_text(options.metrics_path) << '\n';
    finish_output(out);
    return kDiverged;
  }
  if (r.diverged_at >= 0) err << "warning: " << divergence_text(r) << "; trained on (train.on_divergence: continue)\n";
  if (r.interrupted) {
    err << "checkpoint saved at step " << r.steps_done << ": " << escape_text(options.checkpoint_path)
        << "\nresume with: " << resume_command(args, config, run, options.checkpoint_path,
                                                  options.parallel != nullptr ? options.parallel->size() : 1)
        << '\n';
    return kInterrupted;
  }
  if (r.steps_done < r.total_steps) {
    out << "stopped at step " << r.steps_done << " of " << r.total_steps << "; checkpoint "
        << escape_text(options.checkpoint_path) << '\n';
  } else {
    out << summary_table(config, {r}) << "metrics: " << escape_text(options.metrics_path)
        << "\ncheckpoint: " << escape_text(options.checkpoint_path) << '\n';
  }
  finish_output(out);
  return kOk;
}

/// A stream buffer that drops what it is given: the output of every rank but the first.
class Discard final : public std::streambuf {
 protected:
  int overflow(int c) override { return c; }
};

/// Runs `body(out, err, lead)` as a rank of `job`: rank 0 (the lead) writes to `out` and `err`,
/// the others to nowhere. An error that every rank meets alike (in the command line or the
/// config) ends every rank alike, printed by rank 0 only. Any other error on a rank of a job of
/// several is printed by that rank and ends the whole job, whose other ranks may be waiting
/// for this one.
template <typename F>
int as_rank(ParallelJob& job, std::ostream& out, std::ostream& err, F&& body) {
  Discard discard;
  std::ostream none(&discard);
  const bool lead = job.rank() == 0;
  try {
    return body(lead ? out : none, lead ? err : none, lead);
  } catch (const SharedFailure& f) {  // every rank has it: rank 0 reports it, and none waits
    if (lead) std::rethrow_exception(f.error());
    return kFailure;
  } catch (const CommandLineError&) {
    if (lead) throw;
    return kUsage;
  } catch (const ConfigError&) {
    if (lead) throw;
    return kFailure;
  } catch (...) {
    if (job.size() == 1) throw;
    std::cerr << "optreg: rank " << job.rank() << " of " << job.size() << ": "
              << escape_message(current_error_message()) << std::endl;
    out.flush();
    // Time for the launcher to forward the message before the job is torn down.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    job.fail(kFailure);
    return kFailure;
  }
}

/// Whether `command` trains as a rank of an MPI job: started by mpirun, or given --slices.
bool data_parallel(const std::string& slices) { return launched_as_ranks() || !slices.empty(); }

std::int64_t parse_slices(const std::string& text) {
  if (text.empty()) return 0;
  return parse_count(text, "--slices");
}

/// Slices that the ranks of `job` cannot share are a usage error.
void check_slices(std::int64_t slices, const ParallelJob* job) {
  if (job == nullptr || slices == 0 || slices % job->size() == 0) return;
  throw CommandLineError{"--slices " + std::to_string(slices) + " is not a multiple of the " +
                         std::to_string(job->size()) + " ranks: each rank computes as many slices"};
}

int train_as(const TrainArgs& args, std::ostream& out, std::ostream& err, ParallelJob* job, bool lead) {
  const Common& c = args.common;
  const std::int64_t stop_after = args.steps.empty() ? 0 : parse_count(args.steps, "--steps");
  const std::int64_t slices = parse_slices(args.slices);
  const RunConfig config = load_run_config(c.config);
  const RunSpec& run = chosen_run(config, args);
  const std::string dir = c.out.empty() ? default_out(c.config) + (config.is_comparison ? "/" + run.label : "") : c.out;
  Registry registry;
  load_plugins(registry, c.plugins);
  DataCache data;
  ConsoleProgress progress(err, lead && isatty(STDERR_FILENO) != 0);
  RunOptions options;
  options.checkpoint_path = dir + "/checkpoint.optreg";
  options.metrics_path = lead ? dir + "/metrics.csv" : "";  // every rank computes the same rows
  options.resume_path = args.resume;
  options.stop_after = stop_after;
  options.progress = &progress;
  options.interrupt = &g_interrupt;
  check_slices(slices, job);
  std::unique_ptr<DataParallel> parallel = job != nullptr ? job->run() : nullptr;
  options.parallel = parallel.get();
  options.slices = slices;
  install_interrupt_handler();
  const RunOutcome r = run_training(config, run, registry, data, options);
  return report_training(args, config, run, options, r, out, err);
}

int run_train(const TrainArgs& args, std::ostream& out, std::ostream& err) {
  if (!data_parallel(args.slices)) return train_as(args, out, err, nullptr, true);
  parse_slices(args.slices);  // a usage error before the job starts
  const std::unique_ptr<ParallelJob> job = join_parallel_job("train");
  return as_rank(*job, out, err, [&](std::ostream& o, std::ostream& e, bool lead) {
    return train_as(args, o, e, job.get(), lead);
  });
}

/// The plot of a comparison: the training loss of every run against the step.
PlotText compare_plot_text(const RunConfig& config) {
  PlotText text;
  text.title = problem_title(config) + ": training loss per optimizer (seed " + std::to_string(config.train.seed) +
               ", batch " + std::to_string(config.train.batch_size) + ")";
  text.x_label = "step (optimizer updates)";
  text.y_label = "training loss (nats; mean over the last " + std::to_string(config.train.log_every) + " steps)";
  return text;
}

/// Trains every run of a comparison in turn, rows to `csv` and `plot` as they come (when set:
/// on rank 0 of a data-parallel job only), until one is interrupted; sets `diverged` when a run
/// stopped by its divergence.
std::vector<RunOutcome> train_runs(const RunConfig& config, Registry& registry, OutputFile* csv, LossPlot* plot,
                                   bool& diverged, std::ostream& err, ParallelJob* job, std::int64_t slices) {
  DataCache data;
  ConsoleProgress progress(err, (job == nullptr || job->rank() == 0) && isatty(STDERR_FILENO) != 0);
  install_interrupt_handler();
  // Rows go to the CSV and the plot data as they come: nothing grows with the runs' length.
  std::vector<RunOutcome> outcomes;
  for (const auto& run : config.runs) {
    const std::string prefix = csv_field(run.label) + "," + csv_field(optimizer_names(run.optimizer)) + ",";
    if (plot != nullptr) plot->begin_run(run.label);
    RunOptions options;
    options.progress = &progress;
    options.interrupt = &g_interrupt;
    options.on_row = [&](const MetricRow& row) {
      if (csv != nullptr) *csv << prefix << metrics_csv_row(row) << (row.diverged ? ",diverged\n" : ",\n");
      if (plot != nullptr) plot->add(row.step, row.train_loss);
    };
    std::unique_ptr<DataParallel> parallel = job != nullptr ? job->run() : nullptr;
    options.parallel = parallel.get();
    options.slices = slices;
    outcomes.push_back(run_training(config, run, registry, data, options));
    if (csv != nullptr) csv->flush();
    warn_nonfinite(err, outcomes.back());
    if (stopped_by_divergence(config, outcomes.back())) {
      diverged = true;
      err << divergence_text(outcomes.back()) << "; the run stopped there\n";
    }
    if (outcomes.back().interrupted) break;
  }
  return outcomes;
}

int compare_as(const CompareArgs& args, std::ostream& out, std::ostream& err, ParallelJob* job, bool lead) {
  const Common& c = args.common;
  const std::int64_t slices = parse_slices(args.slices);
  const std::string dir = c.out.empty() ? default_out(c.config) : c.out;
  const std::string plot = args.plot.empty() ? dir + "/compare.svg" : args.plot;
  try {
    check_plot_path(plot);  // before anything trains
  } catch (const optreg::UsageError& e) {
    throw CommandLineError{std::string("--") + e.what()};
  }
  const RunConfig config = load_run_config(c.config);
  Registry registry;
  load_plugins(registry, c.plugins);
  check_slices(slices, job);
  // Every run's optimizer config is checked before the first one trains.
  for (const auto& run : config.runs) {
    load_config_plugins(run.optimizer, registry);
    check_config(run.optimizer, registry);
    // Data-parallel, what no run can do is refused before the first one trains.
    if (job != nullptr) check_data_parallel(config, run, job->size(), slices, registry);
  }
  const std::string csv_path = dir + "/compare.csv";
  std::optional<OutputFile> csv;
  std::optional<LossPlot> loss_plot;
  if (lead) {  // the files are rank 0's: every rank computes the same rows
    fs::create_directories(dir);
    csv.emplace(csv_path);
    *csv << "run,optimizer," << kMetricsCsvHeader << ",status\n";
    loss_plot.emplace(plot, compare_plot_text(config));
  }
  bool diverged = false;
  const std::vector<RunOutcome> outcomes = train_runs(config, registry, csv ? &*csv : nullptr,
                                                      loss_plot ? &*loss_plot : nullptr, diverged, err, job, slices);
  if (csv) csv->close();
  const std::string table = summary_table(config, outcomes);
  out << '\n' << escape_text(problem_title(config)) << ", seed " << config.train.seed << ", batch " << config.train.batch_size << ", "
      << outcomes.front().total_steps << " steps\n\n" << table;
  if (lead) {
    write_text(dir + "/summary.txt", table);
    loss_plot->draw();
  }
  out << "\nplot: " << escape_text(plot) << "\nmetrics: " << escape_text(csv_path) << '\n';
  finish_output(out);
  // The outcome, not this rank's own signal: every rank stopped at the same step.
  if (!outcomes.empty() && outcomes.back().interrupted) return kInterrupted;
  return diverged ? kDiverged : kOk;
}

int run_compare(const CompareArgs& args, std::ostream& out, std::ostream& err) {
  if (!data_parallel(args.slices)) return compare_as(args, out, err, nullptr, true);
  parse_slices(args.slices);  // a usage error before the job starts
  const std::unique_ptr<ParallelJob> job = join_parallel_job("compare");
  return as_rank(*job, out, err, [&](std::ostream& o, std::ostream& e, bool lead) {
    return compare_as(args, o, e, job.get(), lead);
  });
}

int run_problems(std::ostream& out) {
  for (const auto& k : problem_kinds()) {
    out << escape_text(k.name) << "  " << escape_text(k.description) << '\n';
    for (const auto& h : k.schema.entries()) {
      out << "    " << escape_text(h.name) << " (" << to_string(h.type) << ", default " << h.default_value.to_string()
          << ")  " << escape_text(h.meaning) << '\n';
    }
  }
  return kOk;
}

}  // namespace

void add_training_commands(CLI::App& root, int& status) {
  auto train = std::make_shared<TrainArgs>();
  CLI::App& train_command = add_command(root, "train", kTrainHelp);
  add_common(train_command, train->common);
  train_command.add_option("--resume", train->resume, "continue bit-exactly from a checkpoint of this config")
      ->type_name("FILE");
  train_command.add_option("--run", train->run_label, "train one run of a config with a 'runs' list")->type_name("LABEL");
  train_command.add_option("--steps", train->steps, "stop after step N (the run's length is unchanged; resume later)")
      ->type_name("N");
  train_command.add_option("--slices", train->slices,
                           "train data-parallel, each batch cut into N slices (default under mpirun: one per rank)")
      ->type_name("N");
  train_command.callback([train, &train_command, &status] {
    check_common(train_command, train->common);
    status = run_train(*train, std::cout, std::cerr);
  });

  auto compare = std::make_shared<CompareArgs>();
  CLI::App& compare_command = add_command(root, "compare", kCompareHelp);
  add_common(compare_command, compare->common);
  compare_command.add_option("--plot", compare->plot, "where the plot goes")->type_name("FILE");
  compare_command.add_option("--slices", compare->slices,
                             "train data-parallel, each batch cut into N slices (default under mpirun: one per rank)")
      ->type_name("N");
  compare_command.callback([compare, &compare_command, &status] {
    check_common(compare_command, compare->common);
    status = run_compare(*compare, std::cout, std::cerr);
  });

  CLI::App& problems_command = add_command(root, "problems", kProblemsHelp);
  run_when_parsed(problems_command, "'optreg problems' takes no argument; got", status,
                  [] { return run_problems(std::cout); });
}

}  // namespace optreg::cli
