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
/// evaluation instead, on the mean training loss since the previous evaluation). With an
/// `accumulate:` section a step is one micro-batch: its gradients are summed, and the clipping,
/// the optimizer's step and the scheduler's step come at the last micro-batch of each
/// accumulation. With an `average:` section the weight average updates after the optimizer's
/// steps, and the run ends with a test evaluation at the averaged weights too.
///
/// Contract:
/// - Config errors are ConfigErrors placed at FILE:LINE:COLUMN.
/// - The data order of step s is a pure function of (seed, s): epoch e visits the training
///   set in a permutation drawn from (seed, e); batches are consecutive slices of it and the
///   last incomplete batch of an epoch is dropped.
/// - A checkpoint holds the optimizer state, the scheduler state, the parameters, the step, the
///   data-order position, the running metric sums, the weight average and the gradient sums of
///   an unfinished accumulation, so resuming from it gives the same bits
///   as never stopping (on the same machine and thread counts).
/// - A resume is refused, before anything changes, when the config differs from the one the
///   checkpoint was written with in its problem, seed, batch size, label, or any setting of its
///   optimizer, parameter groups, scheduler, clipping, averaging or accumulation; the message
///   names the key.
/// - The training loss is checked at every step and the parameters at every metric row: a run
///   whose loss or parameters stop being finite has diverged; it stops at that step (its state
///   is not saved) unless the config says `on_divergence: continue`.
/// - Metric rows are streamed (to the metrics file and RunOptions::on_row), never collected:
///   memory does not grow with the number of steps. Every file write is checked (output.hpp).

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <exception>
#include <functional>
#include <map>
#include <optional>
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
  /// `on_divergence: continue`: a run whose loss or parameters stop being finite trains on
  /// (it is still reported as diverged); by default (`stop`) it stops at that step.
  bool continue_on_divergence = false;
  /// `param_dtype`: the dtype the optimizer steps the problem's parameters in (a run may set its
  /// own). The problem computes its loss and gradients in float32 from the parameters widened,
  /// and the gradients are rounded to this dtype for the optimizer.
  DType param_dtype = DType::Float32;
};

/// One optimizer configuration with its label.
struct RunSpec {
  std::string label;
  /// Where the label was written (the optimizer's name for a config without `runs`).
  ConfigMark label_mark;
  OptimizerConfig optimizer;
  /// The run's own `param_dtype`, when it sets one (else the `train` section's).
  std::optional<DType> param_dtype;
  ConfigMark param_dtype_mark;
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

/// The dtype in which `run` of `config` keeps the problem's parameters.
inline DType param_dtype_of(const RunConfig& config, const RunSpec& run) {
  return run.param_dtype.value_or(config.train.param_dtype);
}

/// Reads a run config; throws ConfigError.
RunConfig load_run_config(const std::string& path);
RunConfig parse_run_config(const std::string& text, const std::string& source, const std::string& base_dir = "");

/// One row of metrics. A value that was not measured at the row is empty; one that was measured
/// and is not finite (a diverged run) keeps its nan or inf.
struct MetricRow {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  /// Mean minibatch loss over the steps since the previous row.
  double train_loss = 0;
  /// Empty where the row has no evaluation.
  std::optional<double> test_loss;
  /// Empty where the row has no evaluation, or the problem no classes.
  std::optional<double> test_accuracy;
  /// The lr of the first parameter group after the step (and the scheduler's step); empty when
  /// that is not a float.
  std::optional<double> lr;
  /// The total gradient norm of the row's step before clipping, when the config clips by norm
  /// (inf or nan when the gradients were not finite); empty otherwise.
  std::optional<double> grad_norm;
  /// Seconds since the run started (resumed runs count on from the checkpoint).
  double seconds = 0;
  /// Set on the row of the step at which the run diverged (RunOutcome::diverged_at).
  bool diverged = false;
};

/// The header of the metrics CSV, and one row of it (numbers as metric_text() writes them; an
/// empty cell where the row has no value).
extern const char kMetricsCsvHeader[];
std::string metrics_csv_row(const MetricRow& row);
/// A metric as the CSV files and the plot data write it: 9 significant digits, and nan, inf or
/// -inf for a value that is not finite.
std::string metric_text(double value);

/// Receives progress; `optreg` draws a bar on a terminal and prints lines otherwise.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void begin(const std::string& label, std::int64_t first_step, std::int64_t total_steps) = 0;
  /// After every step; `row` is set when the step wrote a metric row.
  virtual void step(std::int64_t step, double loss, const MetricRow* row) = 0;
  virtual void end(bool interrupted) = 0;
};

/// Data-parallel training: every rank of a job holds the whole model, computes the gradients of
/// its slices of every batch, and steps an optimizer whose state is sharded between the ranks.
/// The optreg tool implements it over Open MPI (`mpirun -np N optreg train`, optreg::mpi,
/// docs/distributed.md); run_training() only calls it. Every call is collective: every rank
/// makes it, in the same order.
class DataParallel {
 public:
  virtual ~DataParallel() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Makes the run's optimizer over `params`, sharded, as build_optimizer() would; returns the
  /// optimizer of this rank's pieces, whose groups and options are every rank's (what a
  /// scheduler drives). Replaces one made before.
  virtual Optimizer& build(const OptimizerConfig& config, const std::vector<Parameter>& params,
                           const Registry& registry) = 0;
  /// Takes the parameters' gradients as one contribution, of weight `weight`, to the next step.
  virtual void contribute(double weight) = 0;
  /// Reduces every rank's contributions in rank order, steps, and gathers every parameter.
  virtual void step() = 0;
  /// Every rank's `mine` (of the same size on every rank), in rank order.
  virtual std::vector<double> gather(const std::vector<double>& mine) = 0;
  /// Whether `mine` is true on any rank (an interruption seen by one rank stops all at the
  /// same step).
  virtual bool any(bool mine) = 0;
  /// Writes the optimizer's evaluation weights (schedule-free) into every parameter.
  virtual void write_eval_weights() = 0;
  /// A checkpoint of the optimizer, `scheduler` and `metadata` at `path` (a sharded one).
  virtual void save(const std::string& path, const Options& metadata, const Scheduler* scheduler) = 0;
  /// The optimizer, `scheduler` and every parameter's value from the checkpoint at `path`,
  /// sharded (by any number of ranks) or not.
  virtual void load(const std::string& path, Scheduler* scheduler) = 0;
  /// The bytes of optimizer state of every rank together.
  virtual std::size_t state_bytes() = 0;
  /// Every rank's outcome of setting up a run (`failure`: this rank's error, or none): when any
  /// rank failed, throws SharedFailure on every rank.
  virtual void settle(const std::exception_ptr& failure) = 0;
};

/// An error that every rank of a data-parallel job met, or was told of, at the same point
/// (DataParallel::settle()): each rank can end alike, without waiting for the others, and one
/// reports it. `error()` is this rank's own error, or one naming the rank that failed.
class SharedFailure : public std::exception {
 public:
  explicit SharedFailure(std::exception_ptr error) : error_(std::move(error)) {}
  const std::exception_ptr& error() const noexcept { return error_; }
  const char* what() const noexcept override { return "an error on a rank of the job"; }

 private:
  std::exception_ptr error_;
};

/// What data-parallel training cannot do with `run` on `ranks` ranks cutting each batch into
/// `slices` slices (0: one per rank): a ConfigError naming the config's place, before
/// anything is made (run_training() checks it too; `optreg compare` checks every run first).
void check_data_parallel(const RunConfig& config, const RunSpec& run, int ranks, std::int64_t slices,
                         const Registry& registry);

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
  /// Receives every metric row as it is made, after the metrics file; the run keeps none of
  /// them, so that its memory does not grow with its length.
  std::function<void(const MetricRow&)> on_row;
  /// Set (by a signal handler) to stop after the current step, saving a checkpoint first.
  const std::atomic<bool>* interrupt = nullptr;
  /// Trains data-parallel when set: each batch cut into `slices` slices of consecutive
  /// examples (a multiple of the ranks), each rank computing the gradients of its own,
  /// contributed with the slice's share of the batch as weight. The metrics and the bits
  /// depend on `slices`, not on the number of ranks. `slices` 0: a resume keeps the
  /// checkpoint's (recorded in it; a checkpoint of whole batches is refused on several ranks),
  /// a fresh run takes one per rank. Refused with clipping, accumulation, weight averaging, an
  /// optimizer stepped with a closure, stochastic rounding, and full-batch problems. A
  /// checkpoint of a data-parallel run resumes only data-parallel (any number of ranks).
  DataParallel* parallel = nullptr;
  std::int64_t slices = 0;
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
  /// With an `average:` section: the test set evaluated at the averaged weights (the trained
  /// ones when the average has taken no update yet).
  std::optional<Evaluation> average_test;
  /// The first step whose row's training loss was at or below the target; -1: never.
  std::int64_t steps_to_target = -1;
  /// Steps whose total gradient norm was not finite (with clipping by norm); those steps still
  /// ran, as PyTorch's clip_grad_norm_ lets them, unless the config asks for an error.
  std::int64_t nonfinite_grad_norms = 0;
  /// The first step after which the training loss or a parameter was not finite; -1: never.
  /// The run stopped there unless the config says `on_divergence: continue`.
  std::int64_t diverged_at = -1;
  /// What was not finite then: "the training loss is inf", "parameter 'x' holds nan".
  std::string divergence;
  double seconds = 0;
  double steps_per_second = 0;
  /// Bytes of the optimizer's state tensors (every parameter's, block scales included) and of the
  /// weight average's copy of the weights, at the end.
  std::size_t state_bytes = 0;
  /// The dtype the parameters were stepped in.
  DType param_dtype = DType::Float32;
};

/// The steps of one epoch for a problem and batch size (1 for a full-batch problem).
std::int64_t steps_per_epoch(const Problem& problem, std::int64_t batch_size);

/// The training examples of step `step` (0-based); empty for a full-batch problem.
std::vector<std::uint32_t> batch_of(const Problem& problem, std::uint64_t seed, std::int64_t batch_size,
                                    std::int64_t step);

/// Trains one run of `config` from its seed (or from `options.resume_path`). Loads the plugins
/// the run's config names into `registry`. Throws ConfigError, CheckpointError, PluginError,
/// and Error naming the file when an output cannot be written. A divergence is no exception:
/// see RunOutcome::diverged_at.
RunOutcome run_training(const RunConfig& config, const RunSpec& run, Registry& registry, DataCache& data,
                        const RunOptions& options);

}  // namespace optreg::train
