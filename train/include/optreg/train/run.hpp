#pragma once
/// \file
/// Training runs: the config of `optreg train` / `optreg compare`, and the loop that trains a
/// problem with an optimizer, logs metrics, evaluates, checkpoints and resumes bit-exactly.
///
/// A run config (docs/train.md) holds a `problem` section, a `train` section, and either one
/// optimizer config (the `optimizer`, `param_groups`, `scheduler`, `clip` and `plugins`
/// sections of docs/config.md) or a `runs` list of labelled optimizer configs to compare.
///
/// Each step: the problem's loss and gradients, the config's clipping, the optimizer's step,
/// then the scheduler's step (a metric-driven scheduler such as `plateau` steps at each
/// evaluation instead, on the mean training loss since the previous evaluation).
///
/// Contract:
/// - Config errors are ConfigErrors placed at FILE:LINE:COLUMN.
/// - The data order of step s is a pure function of (seed, s): epoch e visits the training
///   set in a permutation drawn from (seed, e); batches are consecutive slices of it and the
///   last incomplete batch of an epoch is dropped.
/// - A checkpoint holds the optimizer state, the scheduler state, the parameters, the step, the
///   data-order position and the running metric sums, so resuming from it gives the same bits
///   as never stopping (on the same machine and thread counts).

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <optreg/config.hpp>
#include <optreg/registry.hpp>
#include <optreg/train/problem.hpp>

namespace optreg::train {

/// The `train` section.
struct TrainSettings {
  std::uint64_t seed = 0;
  /// Total steps; when the config gives `epochs` instead, steps = epochs * steps_per_epoch.
  std::int64_t steps = 0;
  double epochs = 0;
  std::int64_t batch_size = 128;
  /// Steps between metric rows (and plain progress lines).
  std::int64_t log_every = 50;
  /// Steps between test-set evaluations; 0: once per epoch (every log row for full-batch
  /// problems). The last step is always evaluated.
  std::int64_t eval_every = 0;
  /// Steps between checkpoints of `optreg train`; 0: only at the end.
  std::int64_t checkpoint_every = 0;
  /// The training loss that `steps to target` counts up to; NaN: none.
  double target_loss = std::numeric_limits<double>::quiet_NaN();
};

/// One optimizer configuration with its label.
struct RunSpec {
  std::string label;
  OptimizerConfig optimizer;
};

struct RunConfig {
  std::string source;
  std::string problem;
  ConfigMark problem_mark;
  /// The problem's options, resolved against its schema (defaults filled in).
  Options problem_options;
  TrainSettings train;
  /// One run for a single-optimizer config; the `runs` list otherwise.
  std::vector<RunSpec> runs;
  /// Whether the config had a `runs` list.
  bool is_comparison = false;
  /// Where each key of the `train` section was written (and "train": the section itself).
  std::map<std::string, ConfigMark> train_marks;
};

/// Reads a run config; throws ConfigError.
RunConfig load_run_config(const std::string& path);
RunConfig parse_run_config(const std::string& text, const std::string& source, const std::string& base_dir = "");

/// One row of metrics.
struct MetricRow {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  /// Mean minibatch loss over the steps since the previous row.
  double train_loss = 0;
  /// NaN where the row has no evaluation.
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  double test_accuracy = std::numeric_limits<double>::quiet_NaN();
  /// The lr of the first parameter group after the step (and the scheduler's step).
  double lr = 0;
  /// The total gradient norm of the row's step before clipping, when the config clips by
  /// norm; NaN otherwise (and when the norm itself is not finite).
  double grad_norm = std::numeric_limits<double>::quiet_NaN();
  /// Seconds since the run started (resumed runs count on from the checkpoint).
  double seconds = 0;
};

/// The header of the metrics CSV, and one row of it (numbers with 9 significant digits; an
/// empty cell where the row has no value).
extern const char kMetricsCsvHeader[];
std::string metrics_csv_row(const MetricRow& row);

/// Receives progress; `optreg` draws a bar on a terminal and prints lines otherwise.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void begin(const std::string& label, std::int64_t first_step, std::int64_t total_steps) = 0;
  /// After every step; `row` is set when the step wrote a metric row.
  virtual void step(std::int64_t step, double loss, const MetricRow* row) = 0;
  virtual void end(bool interrupted) = 0;
};

struct RunOptions {
  /// Where checkpoints go (every `checkpoint_every` steps, at the end, and on interruption);
  /// empty: none.
  std::string checkpoint_path;
  /// The CSV file of metric rows; empty: none. A resumed run keeps the rows up to its step.
  std::string metrics_path;
  /// A checkpoint to continue from; empty: start fresh.
  std::string resume_path;
  /// Stop after this step (for tests and for splitting a run); 0: run to the end.
  std::int64_t stop_after = 0;
  ProgressSink* progress = nullptr;
  /// Set (by a signal handler) to stop after the current step, saving a checkpoint first.
  const std::atomic<bool>* interrupt = nullptr;
};

/// What a run achieved.
struct RunOutcome {
  std::string label;
  std::string optimizer;
  std::int64_t total_steps = 0;
  std::int64_t steps_done = 0;
  bool interrupted = false;
  /// Loss (and accuracy) over the whole training and test sets after the last step.
  Evaluation train;
  Evaluation test;
  /// The first step whose row's training loss was at or below the target; -1: never.
  std::int64_t steps_to_target = -1;
  /// Steps whose total gradient norm was not finite (with clipping by norm); those steps still
  /// ran, as PyTorch's clip_grad_norm_ lets them, unless the config asks for an error.
  std::int64_t nonfinite_grad_norms = 0;
  double seconds = 0;
  double steps_per_second = 0;
  std::vector<MetricRow> rows;
};

/// The steps of one epoch for a problem and batch size (1 for a full-batch problem).
std::int64_t steps_per_epoch(const Problem& problem, std::int64_t batch_size);

/// The training examples of step `step` (0-based); empty for a full-batch problem.
std::vector<std::uint32_t> batch_of(const Problem& problem, std::uint64_t seed, std::int64_t batch_size,
                                    std::int64_t step);

/// Trains one run of `config` from its seed (or from `options.resume_path`). Loads the plugins
/// the run's config names into `registry`. Throws ConfigError, CheckpointError, PluginError.
RunOutcome run_training(const RunConfig& config, const RunSpec& run, Registry& registry, DataCache& data,
                        const RunOptions& options);

}  // namespace optreg::train
