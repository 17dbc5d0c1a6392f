// The training loop: batches in a seeded order, metrics, evaluation, checkpoints, resume.
#include <optreg/train/run.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/sharded_checkpoint.hpp>
#include <optreg/train/format.hpp>
#include <optreg/train/output.hpp>
#include <optreg/train/random.hpp>

#include "memory.hpp"

namespace optreg::train {

namespace {

namespace fs = std::filesystem;

/// The name of the data-order algorithm a checkpoint was written with: a change to it (or to
/// the problems' initialisation) must change this name, so old checkpoints are refused.
constexpr char kDataOrder[] = "mt19937_64-fisher-yates-v1";
constexpr char kKey[] = "train.";

using Clock = std::chrono::steady_clock;

/// The prefix of the metadata entries that record the run's optimizer settings as written in
/// its config; the rest of such a key is the key in the config ("optimizer.lr").
constexpr char kConfigKey[] = "train.config.";

/// One setting that must agree between a checkpoint and the config resuming from it.
struct Setting {
  std::string key;    // the metadata key
  Value value;        // what the config gives
  std::string where;  // where the config gives it: FILE:LINE:COLUMN
};

std::string at(const std::string& source, const ConfigMark& m) {
  return source + ":" + std::to_string(m.line) + ":" + std::to_string(m.column);
}

/// The key a setting is known by in messages: a config key for the optimizer settings.
std::string shown(const std::string& key) {
  return key.rfind(kConfigKey, 0) == 0 ? key.substr(sizeof kConfigKey - 1) : key;
}

/// Values that mean the same setting: equal, or equal numbers (`lr: 1` and `lr: 1.0`).
bool same_setting(const Value& a, const Value& b) {
  const auto numeric = [](const Value& v) { return v.type() == ValueType::Int || v.type() == ValueType::Float; };
  if (numeric(a) && numeric(b)) return a.as_float() == b.as_float();
  return a == b;
}

void add_scheduler(std::vector<Setting>& out, const SchedulerConfig& s, const std::string& prefix,
                   const std::string& source) {
  out.push_back({kConfigKey + prefix + "name", Value(s.name), at(source, s.name_mark)});
  for (const auto& o : s.options) out.push_back({kConfigKey + prefix + o.name, o.value, at(source, o.value_mark)});
  for (std::size_t i = 0; i < s.schedulers.size(); ++i) {
    add_scheduler(out, s.schedulers[i], prefix + "schedulers[" + std::to_string(i) + "].", source);
  }
}

/// What must agree between a checkpoint and the config resuming from it, the problem first:
/// the problem, the data order, the run, then every optimizer setting as the config writes it
/// (its options, parameter groups, scheduler and clipping), in the config's order.
std::vector<Setting> identity(const RunConfig& config, const RunSpec& run) {
  const std::string& src = config.source;
  const OptimizerConfig& o = run.optimizer;
  const auto train_at = [&](const std::string& key) {
    auto it = config.train_marks.find(key);
    if (it == config.train_marks.end()) it = config.train_marks.find("train");
    return it == config.train_marks.end() ? src : at(src, it->second);
  };
  std::vector<Setting> s = {
      {std::string(kKey) + "problem", Value(config.problem), at(src, config.problem_mark)},
      {std::string(kKey) + "problem_options", Value(options_assignments(config.problem_options)), at(src, config.problem_mark)},
      {std::string(kKey) + "data_order", Value(kDataOrder), "this optreg"},
      {std::string(kKey) + "seed", Value(static_cast<std::int64_t>(config.train.seed)), train_at("seed")},
      {std::string(kKey) + "batch_size", Value(config.train.batch_size), train_at("batch_size")},
      {kConfigKey + std::string("optimizer.name"), Value(o.optimizer), at(src, o.optimizer_mark)},
      {std::string(kKey) + "label", Value(run.label), at(src, run.label_mark)},
  };
  const DType dtype = param_dtype_of(config, run);
  if (dtype != DType::Float32) {  // recorded only when set, so that older float32 checkpoints resume
    const std::string where = run.param_dtype ? at(src, run.param_dtype_mark) : train_at("param_dtype");
    s.push_back({kConfigKey + std::string("param_dtype"), Value(std::string(dtype_name(dtype))), where});
  }
  // A nested section's wrappers, outermost first, as optimizer.wrappers[i]; the innermost
  // optimizer keeps the keys of a section without wrappers.
  for (std::size_t i = 0; i < o.wrappers.size(); ++i) {
    const WrapperConfig& w = o.wrappers[i];
    const std::string prefix = kConfigKey + ("optimizer.wrappers[" + std::to_string(i) + "].");
    s.push_back({prefix + "name", Value(w.name), at(src, w.name_mark)});
    for (const auto& opt : w.options) s.push_back({prefix + opt.name, opt.value, at(src, opt.value_mark)});
  }
  for (const auto& opt : o.options) s.push_back({kConfigKey + ("optimizer." + opt.name), opt.value, at(src, opt.value_mark)});
  for (std::size_t g = 0; g < o.groups.size(); ++g) {
    const ConfigGroup& group = o.groups[g];
    const std::string prefix = kConfigKey + ("param_groups[" + std::to_string(g) + "].");
    std::string patterns;
    for (const auto& p : group.patterns) patterns += (patterns.empty() ? "" : ", ") + p;
    s.push_back({prefix + "params", Value(patterns), at(src, group.mark)});
    if (!group.optimizer.empty()) s.push_back({prefix + "optimizer", Value(group.optimizer), at(src, group.optimizer_mark)});
    if (group.regex) s.push_back({prefix + "regex", Value(*group.regex), at(src, group.regex_mark)});
    if (group.ndim) s.push_back({prefix + "ndim", Value(*group.ndim), at(src, group.ndim_mark)});
    if (group.shape) s.push_back({prefix + "shape", Value(to_string(*group.shape)), at(src, group.shape_mark)});
    if (group.layer_decay) s.push_back({prefix + "layer_decay", Value(*group.layer_decay), at(src, group.layer_decay_mark)});
    if (group.num_layers) s.push_back({prefix + "num_layers", Value(*group.num_layers), at(src, group.num_layers_mark)});
    for (const auto& opt : group.options) s.push_back({prefix + opt.name, opt.value, at(src, opt.value_mark)});
  }
  if (o.scheduler) add_scheduler(s, *o.scheduler, "scheduler.", src);
  if (o.clip) {
    const ClipConfig& c = *o.clip;
    const std::string where = at(src, c.mark);
    if (c.mode == ClipConfig::Mode::Norm) {
      s.push_back({kConfigKey + std::string("clip.max_norm"), Value(c.max_norm), where});
      s.push_back({kConfigKey + std::string("clip.norm_type"), Value(c.norm_type), where});
      s.push_back({kConfigKey + std::string("clip.error_if_nonfinite"), Value(c.error_if_nonfinite), where});
    } else {
      s.push_back({kConfigKey + std::string("clip.value"), Value(c.value), where});
    }
  }
  if (o.average) {  // every setting, defaults included, so that a change of a default is seen too
    const AverageSettings& a = o.average->settings;
    const std::string where = at(src, o.average->mark);
    s.push_back({kConfigKey + std::string("average.kind"), Value(std::string(to_string(a.kind))), where});
    if (a.kind == AverageSettings::Kind::Ema) {
      s.push_back({kConfigKey + std::string("average.decay"), Value(a.decay), where});
      s.push_back({kConfigKey + std::string("average.warmup"), Value(a.warmup), where});
    }
    s.push_back({kConfigKey + std::string("average.every"), Value(a.every), where});
    s.push_back({kConfigKey + std::string("average.start"), Value(a.start), where});
  }
  if (o.accumulate) {
    const AccumulateSettings& a = o.accumulate->settings;
    const std::string where = at(src, o.accumulate->mark);
    s.push_back({kConfigKey + std::string("accumulate.steps"), Value(a.steps), where});
    s.push_back({kConfigKey + std::string("accumulate.reduce"), Value(std::string(to_string(a.reduce))), where});
  }
  return s;
}

/// Running state beyond the optimizer's, saved with every checkpoint.
struct Progress {
  std::int64_t step = 0;        // steps done
  double window_sum = 0;        // losses since the last row
  std::int64_t window_count = 0;
  double eval_sum = 0;          // losses since the last evaluation (a metric-driven scheduler's)
  std::int64_t eval_count = 0;
  std::int64_t nonfinite_norms = 0;
  std::int64_t steps_to_target = -1;
  std::int64_t diverged_at = -1;  // a run that trains on after diverging says so after a resume too
  std::string divergence;
  double seconds = 0;           // spent before this process
};

Options metadata_of(const std::vector<Setting>& settings, const RunConfig& config, const Progress& p, std::int64_t spe,
                    double seconds) {
  Options m;
  for (const auto& s : settings) m[s.key] = s.value;
  m[std::string(kKey) + "step"] = Value(p.step);
  m[std::string(kKey) + "epoch"] = Value(p.step / spe);
  m[std::string(kKey) + "position"] = Value((p.step % spe) * config.train.batch_size);
  m[std::string(kKey) + "window_sum"] = Value(p.window_sum);
  m[std::string(kKey) + "window_count"] = Value(p.window_count);
  m[std::string(kKey) + "eval_sum"] = Value(p.eval_sum);
  m[std::string(kKey) + "eval_count"] = Value(p.eval_count);
  m[std::string(kKey) + "nonfinite_grad_norms"] = Value(p.nonfinite_norms);
  m[std::string(kKey) + "steps_to_target"] = Value(p.steps_to_target);
  m[std::string(kKey) + "diverged_at"] = Value(p.diverged_at);
  m[std::string(kKey) + "divergence"] = Value(p.divergence);
  m[std::string(kKey) + "seconds"] = Value(seconds);
  return m;
}

const Value& meta(const Options& m, const std::string& path, const std::string& key, ValueType type) {
  const auto it = m.find(kKey + key);
  if (it == m.end()) {
    throw CheckpointError("checkpoint " + path + ": it holds no '" + kKey + key +
                          "' entry; it was not written by 'optreg train'");
  }
  if (it->second.type() != type) {
    throw CheckpointError("checkpoint " + path + ": '" + kKey + key + "' is " + to_string(it->second.type()) +
                          ", expected " + to_string(type));
  }
  return it->second;
}

/// Checks that a checkpoint belongs to this run and was written with the same settings.
void check_settings(const Checkpoint& c, const std::string& path, const std::vector<Setting>& settings,
                    const RunConfig& config) {
  const std::string head = "checkpoint " + path + ": ";
  const bool has_settings = c.metadata.count(kConfigKey + std::string("optimizer.name")) != 0;
  for (const Setting& s : settings) {
    const auto it = c.metadata.find(s.key);
    if (it == c.metadata.end()) {
      if (s.key.rfind(kConfigKey, 0) != 0) {
        throw CheckpointError(head + "it holds no '" + s.key + "' entry; it was not written by 'optreg train'");
      }
      if (!has_settings) {
        throw CheckpointError(head + "it holds no optimizer settings ('" + s.key +
                              "'); it was written by an older 'optreg train', and a resume cannot check them "
                              "against " + config.source);
      }
      throw CheckpointError(head + "it was written without " + shown(s.key) + ", but " + s.where + " gives " +
                            s.value.to_string());
    }
    if (!same_setting(it->second, s.value)) {
      throw CheckpointError(head + "it was written with " + shown(s.key) + " = " + it->second.to_short_string() + ", but " +
                            s.where + " gives " + s.value.to_string());
    }
  }
  for (const auto& [key, value] : c.metadata) {
    if (key.rfind(kConfigKey, 0) != 0) continue;
    const bool given = std::any_of(settings.begin(), settings.end(), [&](const Setting& s) { return s.key == key; });
    if (!given) {
      throw CheckpointError(head + "it was written with " + shown(key) + " = " + value.to_string() + ", but " +
                            config.source + " does not set it");
    }
  }
}

/// The progress a checkpoint of this run holds (nothing is changed).
Progress progress_of(const Checkpoint& c, const std::string& path, std::int64_t total) {
  Progress p;
  p.step = meta(c.metadata, path, "step", ValueType::Int).as_int();
  p.window_sum = meta(c.metadata, path, "window_sum", ValueType::Float).as_float();
  p.window_count = meta(c.metadata, path, "window_count", ValueType::Int).as_int();
  p.eval_sum = meta(c.metadata, path, "eval_sum", ValueType::Float).as_float();
  p.eval_count = meta(c.metadata, path, "eval_count", ValueType::Int).as_int();
  p.nonfinite_norms = meta(c.metadata, path, "nonfinite_grad_norms", ValueType::Int).as_int();
  p.steps_to_target = meta(c.metadata, path, "steps_to_target", ValueType::Int).as_int();
  p.diverged_at = meta(c.metadata, path, "diverged_at", ValueType::Int).as_int();
  p.divergence = meta(c.metadata, path, "divergence", ValueType::String).as_string();
  p.seconds = meta(c.metadata, path, "seconds", ValueType::Float).as_float();
  if (p.step < 0 || p.step > total) {
    throw CheckpointError("checkpoint " + path + ": its step " + std::to_string(p.step) + " lies outside the run's " +
                          std::to_string(total) + " steps");
  }
  // Every count is bounded by the step (or is -1 for "none"), so a forged file cannot make a
  // later increment overflow or a table show what never happened.
  const auto check_count = [&](const char* key, std::int64_t value, std::int64_t lo) {
    if (value < lo || value > p.step) {
      throw CheckpointError("checkpoint " + path + ": '" + kKey + key + "' = " + std::to_string(value) +
                            " lies outside [" + std::to_string(lo) + ", " + std::to_string(p.step) +
                            "], the range its step allows");
    }
  };
  check_count("window_count", p.window_count, 0);
  check_count("eval_count", p.eval_count, 0);
  check_count("nonfinite_grad_norms", p.nonfinite_norms, 0);
  check_count("steps_to_target", p.steps_to_target, -1);
  check_count("diverged_at", p.diverged_at, -1);
  return p;
}

/// A CSV cell: empty for a value the row does not have.
std::string csv_cell(const std::optional<double>& v) { return v ? metric_text(*v) : std::string(); }

/// Opens the metrics file: fresh, or (resuming) keeping the rows up to `step` as they are on
/// disk, so that a failure while writing on cannot lose them. Only a regular file is read back
/// (a device such as /dev/full reads without end), and only while its lines look like ours.
std::unique_ptr<OutputFile> open_metrics(const std::string& path, bool resume, std::int64_t step) {
  std::uint64_t keep = 0;
  std::error_code ec;
  if (resume && fs::is_regular_file(path, ec)) {
    std::ifstream in(path, std::ios::binary);
    constexpr std::streamsize kLongest = 1024;  // a row is about 100 bytes
    char line[kLongest];
    std::uint64_t end = 0;
    // Only whole lines count: a last line without its line break was cut off.
    for (bool header = true; in.getline(line, kLongest) && !in.eof(); header = false) {
      const std::string_view text(line, static_cast<std::size_t>(in.gcount() - 1));
      end += text.size() + 1;
      const auto comma = text.find(',');
      if (header ? text != kMetricsCsvHeader
                 : comma == std::string_view::npos || comma == 0 || comma > 18 ||
                       text.find_first_not_of("0123456789") < comma ||
                       std::stoll(std::string(text.substr(0, comma))) > step) {
        break;
      }
      keep = end;
    }
  }
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  auto out = std::make_unique<OutputFile>(path, keep);
  if (keep == 0) *out << kMetricsCsvHeader << "\n";
  out->flush();
  return out;
}

/// "FILE:LINE:COLUMN: " of a key of the config's `train` section (of the section itself when the
/// key was not written).
ConfigMark place(const RunConfig& config, const std::string& key) {
  auto it = config.train_marks.find(key);
  if (it == config.train_marks.end()) it = config.train_marks.find("train");
  return it == config.train_marks.end() ? ConfigMark{} : it->second;
}

/// The order in which epoch `epoch` visits the training examples.
std::vector<std::uint32_t> epoch_order(const Problem& problem, std::uint64_t seed, std::int64_t epoch) {
  Random rng(seed, 1000 + static_cast<std::uint64_t>(epoch));
  return permutation(static_cast<std::uint32_t>(problem.train_size()), rng);
}

/// "out of memory: ..." for an optimizer whose state did not fit: the tensors its schema
/// declares per parameter, for every parameter of the problem (whose parameters are float32,
/// so without the core's master copy).
std::string optimizer_out_of_memory(const std::string& name, const Problem& problem, const Registry& registry) {
  std::size_t tensors = 0;
  if (const auto d = registry.find(name)) {
    for (const StateEntry& e : *d->state) tensors += e.kind == StateKind::Tensor && !e.custom_shape && !is_precision_entry(e.name) ? 1 : 0;
  }
  return out_of_memory("the state of optimizer '" + name + "' (" + std::to_string(tensors) + " tensors for each of the " +
                           std::to_string(problem.parameter_count()) + " parameters of problem '" + problem.name() + "')",
                       4.0 * static_cast<double>(tensors * problem.parameter_count()));
}

std::optional<double> first_lr(const Optimizer& opt) {
  const auto& groups = opt.param_groups();
  if (groups.empty()) return std::nullopt;
  const Value& lr = groups.front().option("lr");
  if (lr.type() != ValueType::Float) return std::nullopt;
  return lr.as_float();
}

/// "parameter 'NAME' holds nan" for the first parameter with a value that is not finite; empty
/// when every value is finite.
std::string nonfinite_parameter(const Problem& problem) {
  for (const auto& param : problem.params()) {
    const Tensor& v = param.value();
    const float* x = v.data();
    for (std::size_t i = 0, n = v.numel(); i < n; ++i) {
      if (!std::isfinite(x[i])) return "parameter '" + param.name() + "' holds " + metric_text(x[i]);
    }
  }
  return {};
}

}  // namespace

const char kMetricsCsvHeader[] = "step,epoch,train_loss,test_loss,test_accuracy,lr,grad_norm,seconds";

std::string metric_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string metrics_csv_row(const MetricRow& r) {
  return std::to_string(r.step) + "," + std::to_string(r.epoch) + "," + metric_text(r.train_loss) + "," +
         csv_cell(r.test_loss) + "," + csv_cell(r.test_accuracy) + "," + csv_cell(r.lr) + "," + csv_cell(r.grad_norm) +
         "," + metric_text(r.seconds);
}

std::int64_t steps_per_epoch(const Problem& problem, std::int64_t batch_size) {
  if (problem.train_size() == 0) return 1;
  const auto spe = static_cast<std::int64_t>(problem.train_size()) / batch_size;
  if (spe == 0) {
    throw ConfigError("batch_size " + std::to_string(batch_size) + " is larger than the " +
                      std::to_string(problem.train_size()) + " training examples of problem '" + problem.name() + "'");
  }
  return spe;
}

std::vector<std::uint32_t> batch_of(const Problem& problem, std::uint64_t seed, std::int64_t batch_size,
                                    std::int64_t step) {
  if (problem.train_size() == 0) return {};
  const std::int64_t spe = steps_per_epoch(problem, batch_size);
  const auto order = epoch_order(problem, seed, step / spe);
  const auto begin = order.begin() + (step % spe) * batch_size;
  return std::vector<std::uint32_t>(begin, begin + batch_size);
}

namespace {

/// What a run is made of before its first step.
struct RunSetup {
  std::vector<Setting> settings;     // what a checkpoint of the run records and a resume checks
  std::optional<Checkpoint> resumed;  // the checkpoint to continue from, checked against `settings`
  ProblemPtr problem;
  OptimizerPtr owned;      // the optimizer, unless the run is data-parallel
  Optimizer* opt = nullptr;  // the optimizer; of this rank's pieces when data-parallel
  DataParallel* parallel = nullptr;  // data-parallel training (RunOptions::parallel)
  std::int64_t slices = 1;           // per batch, when data-parallel
  SchedulerPtr scheduler;  // nullptr without one
  std::unique_ptr<WeightAverage> average;             // nullptr without an `average:` section
  std::unique_ptr<GradientAccumulator> accumulator;  // nullptr without an `accumulate:` section
  std::int64_t spe = 0;    // steps per epoch
  std::int64_t total = 0;  // the run's length in steps
  std::int64_t eval_every = 0;
  bool full_batch = false;  // the problem has no training examples to draw batches from
  /// The parameters the optimizer steps when param_dtype is not float32: the problem's, in that
  /// dtype (the problem computes with its float32 copies of them). Empty otherwise.
  std::vector<Parameter> low;

  /// The parameters the optimizer steps.
  const std::vector<Parameter>& stepped() const { return low.empty() ? problem->params() : low; }
  /// Copies the stepped parameters, widened, into the problem's float32 ones.
  void widen_into_problem() const {
    for (std::size_t i = 0; i < low.size(); ++i) {
      Tensor v = problem->params()[i].value();  // a handle: writes reach the problem's memory
      v.copy_from(low[i].value().to(DType::Float32));
    }
  }
  /// The problem evaluated on its test set (or training set) at the optimizer's evaluation
  /// weights, where it has them (schedule-free's average): put in place for the evaluation,
  /// and the training weights back, bit for bit, after it.
  Evaluation evaluate(bool test) {
    if (parallel != nullptr && opt->has_eval_weights()) {
      // Each rank holds the evaluation weights of its pieces only: written into every
      // parameter on every rank, and the training weights put back from a copy.
      std::vector<Tensor> trained;
      for (const Parameter& p : stepped()) trained.push_back(p.value().clone());
      parallel->write_eval_weights();
      widen_into_problem();
      const Evaluation e = test ? problem->evaluate_test() : problem->evaluate_train();
      for (std::size_t i = 0; i < trained.size(); ++i) {
        Tensor v = stepped()[i].value();
        v.copy_from(trained[i]);
      }
      widen_into_problem();
      return e;
    }
    std::optional<EvalWeights> eval;
    if (opt->has_eval_weights()) {
      eval.emplace(*opt);
      widen_into_problem();
    }
    const Evaluation e = test ? problem->evaluate_test() : problem->evaluate_train();
    if (eval) {
      eval->restore();
      widen_into_problem();
    }
    return e;
  }
  /// The problem evaluated on its test set (or training set) at the weight average, put in
  /// place for the evaluation and the trained weights back after it; nothing without one.
  std::optional<Evaluation> evaluate_average(bool test) {
    if (!average) return std::nullopt;
    AveragedWeights swap(*average);
    if (swap.active()) widen_into_problem();
    const Evaluation e = test ? problem->evaluate_test() : problem->evaluate_train();
    if (swap.active()) {
      swap.restore();
      widen_into_problem();
    }
    return e;
  }
  /// The components a checkpoint of the run holds besides the optimizer and the scheduler.
  std::vector<const CheckpointComponent*> components() const {
    std::vector<const CheckpointComponent*> out;
    if (average) out.push_back(average.get());
    if (accumulator) out.push_back(accumulator.get());
    return out;
  }
  /// Hands the problem's float32 gradients, rounded to nearest, to the stepped parameters.
  void round_grads() {
    for (std::size_t i = 0; i < low.size(); ++i) low[i].set_grad(problem->params()[i].grad().to(low[i].value().dtype()));
  }
};

/// The run's length; refuses a schedule of a fixed length (onecycle) that cannot step that far,
/// before anything trains.
void set_length(RunSetup& s, const RunConfig& config, const RunSpec& run) {
  const TrainSettings& t = config.train;
  try {
    s.spe = steps_per_epoch(*s.problem, t.batch_size);
  } catch (const ConfigError& e) {
    const ConfigMark m = place(config, "batch_size");
    throw ConfigError(config.source, m.line, m.column, e.reason());
  }
  s.total = t.steps > 0 ? t.steps : static_cast<std::int64_t>(std::ceil(t.epochs * static_cast<double>(s.spe)));
  s.full_batch = s.problem->train_size() == 0;
  s.eval_every = t.eval_every > 0 ? t.eval_every : (s.full_batch ? t.log_every : s.spe);
  if (!s.scheduler) return;
  // With accumulation the scheduler steps once per update: once every k steps.
  const std::int64_t k = run.optimizer.accumulate ? run.optimizer.accumulate->settings.steps : 1;
  const std::int64_t updates = s.total / k;
  const auto it = s.scheduler->options().find("total_steps");
  if (it != s.scheduler->options().end() && it->second.type() == ValueType::Int && it->second.as_int() < updates) {
    const ConfigMark m = run.optimizer.scheduler ? run.optimizer.scheduler->name_mark : ConfigMark{};
    throw ConfigError(config.source, m.line, m.column,
                      "scheduler '" + s.scheduler->name() + "' has total_steps = " + std::to_string(it->second.as_int()) +
                          ", fewer than the run's " + std::to_string(updates) +
                          (k > 1 ? " updates (" + std::to_string(s.total) + " steps accumulated " + std::to_string(k) +
                                       " at a time)"
                                 : std::string(" steps")) +
                          "; it cannot step past its cycle");
  }
}

}  // namespace

void check_data_parallel(const RunConfig& config, const RunSpec& run, int ranks, std::int64_t slices,
                         const Registry& registry) {
  const auto refuse = [&](const ConfigMark& m, const std::string& why) {
    throw ConfigError(config.source, m.line, m.column, "run '" + run.label + "' cannot train data-parallel: " + why);
  };
  const OptimizerConfig& o = run.optimizer;
  if (o.clip) refuse(o.clip->mark, "clipping needs the norm of the whole reduced gradient, which no rank holds");
  if (o.accumulate) {
    refuse(o.accumulate->mark, "accumulate: slices of each batch already sum in the reduction; raise train.batch_size");
  }
  if (o.average) refuse(o.average->mark, "a weight average is not saved in a sharded checkpoint");
  const auto refuse_closure = [&](const std::string& name, const ConfigMark& m) {
    const std::optional<OptimizerDescriptor> d = registry.find(name);
    if (d && (d->flags & abi::kOptimizerNeedsClosure) != 0) {
      refuse(m, "optimizer '" + name + "' is stepped with a closure that re-evaluates the loss, which no rank can "
                "do for the others' slices");
    }
  };
  const auto refuse_stochastic = [&](const std::vector<ConfigOption>& options) {
    for (const ConfigOption& c : options) {
      if (c.name == "rounding" && c.value.type() == ValueType::String && c.value.as_string() == "stochastic") {
        refuse(c.value_mark, "rounding: stochastic is seeded by each parameter's id, which the sharded optimizer's "
                             "pieces do not keep; use rounding: nearest or master_weights: true");
      }
    }
  };
  refuse_closure(o.optimizer, o.optimizer_mark);
  refuse_stochastic(o.options);
  for (const ConfigGroup& g : o.groups) {
    if (!g.optimizer.empty()) refuse_closure(g.optimizer, g.optimizer_mark);
    refuse_stochastic(g.options);
  }
  if (slices == 0) slices = ranks;
  if (ranks < 1 || slices < 1 || slices % ranks != 0) {
    throw Error("--slices " + std::to_string(slices) + " is not a multiple of the " + std::to_string(ranks) +
                " ranks: each rank computes as many slices");
  }
  const ConfigMark batch = place(config, "batch_size");
  if (config.train.batch_size < slices) {
    throw ConfigError(config.source, batch.line, batch.column,
                      "train.batch_size " + std::to_string(config.train.batch_size) + " is smaller than the " +
                          std::to_string(slices) + " slices a batch is cut into");
  }
}

namespace {

/// The slices per batch a checkpoint's run was trained with (0: whole batches).
std::int64_t slices_of(const Checkpoint& c) {
  const auto it = c.metadata.find(std::string(kKey) + "slices");
  return it != c.metadata.end() && it->second.type() == ValueType::Int ? it->second.as_int() : 0;
}

/// The slices per batch of a data-parallel run on `ranks` ranks: those given, else a resumed
/// checkpoint's, else one per rank. A checkpoint of another slicing than the run's is refused:
/// the run would not continue with its bits.
std::int64_t choose_slices(const std::optional<Checkpoint>& resumed, const RunOptions& options, int ranks) {
  const std::int64_t saved = resumed ? slices_of(*resumed) : 0;
  const std::string& path = options.resume_path;
  if (options.parallel == nullptr) {
    if (saved > 0) {
      throw CheckpointError(path, "it was trained data-parallel, each batch cut into " + std::to_string(saved) +
                                      " slices: resume it with --slices " + std::to_string(saved) +
                                      " (in one process, or under mpirun on a number of ranks dividing " +
                                      std::to_string(saved) + "), which continues with its bits");
    }
    return 1;
  }
  if (options.slices > 0) return options.slices;
  if (saved > 0) {
    if (saved % ranks != 0) {
      throw CheckpointError(path, "it was trained with " + std::to_string(saved) + " slices per batch, which " +
                                      std::to_string(ranks) + " ranks cannot share: resume it on a number of ranks "
                                      "dividing " + std::to_string(saved) + ", or give --slices");
    }
    return saved;
  }
  if (resumed && ranks > 1) {
    throw CheckpointError(path, "it was trained on whole batches: give --slices N (a multiple of the " +
                                    std::to_string(ranks) + " ranks) to continue it data-parallel, each batch "
                                    "then cut into N slices");
  }
  return ranks;
}

/// Makes the problem, the optimizer and its scheduler; a checkpoint of another run is refused
/// before anything is made, the problem first. Data-parallel, every rank first settles that
/// every rank read the config, the checkpoint and the data (DataParallel::settle()): an error
/// there is one of every rank alike.
RunSetup setup_run(const RunConfig& config, const RunSpec& run, Registry& registry, DataCache& data,
                   const RunOptions& options) {
  RunSetup s;
  std::exception_ptr failure;
  try {
    const ProblemKind* kind = find_problem(config.problem);
    if (kind == nullptr) throw ConfigError(config.source, 0, 0, "unknown problem '" + config.problem + "'");
    s.settings = identity(config, run);
    if (!options.resume_path.empty()) {
      // A sharded checkpoint (of a data-parallel run) too, assembled.
      s.resumed = read_any_checkpoint(options.resume_path);
      check_settings(*s.resumed, options.resume_path, s.settings, config);
    }
    const int ranks = options.parallel != nullptr ? options.parallel->size() : 1;
    s.slices = choose_slices(s.resumed, options, ranks);
    load_config_plugins(run.optimizer, registry);  // refused files show in 'optreg list'; a missing name fails below
    if (options.parallel != nullptr) check_data_parallel(config, run, ranks, s.slices, registry);
    s.problem = kind->create(config.problem_options, config.train.seed, data);
    if (options.parallel != nullptr && s.problem->train_size() == 0) {
      throw ConfigError(config.source, config.problem_mark.line, config.problem_mark.column,
                        "problem '" + config.problem +
                            "' trains on the full batch: there is no batch to cut between ranks");
    }
    const DType dtype = param_dtype_of(config, run);
    if (dtype != DType::Float32) {
      for (const Parameter& p : s.problem->params()) s.low.emplace_back(p.name(), p.value().to(dtype));
      s.widen_into_problem();  // the problem starts from the rounded values the optimizer holds
    }
  } catch (...) {
    if (options.parallel == nullptr) throw;
    failure = std::current_exception();
  }
  if (options.parallel != nullptr) options.parallel->settle(failure);
  try {
    if (options.parallel != nullptr) {
      s.parallel = options.parallel;
      s.opt = &s.parallel->build(run.optimizer, s.stepped(), registry);
    } else {
      s.owned = build_optimizer(run.optimizer, s.stepped(), registry);
      s.opt = s.owned.get();
    }
  } catch (const std::bad_alloc&) {
    throw Error("run '" + run.label + "': " + optimizer_out_of_memory(run.optimizer.optimizer, *s.problem, registry));
  }
  s.scheduler = build_scheduler(run.optimizer, *s.opt, registry);
  s.average = build_average(run.optimizer, *s.opt);
  s.accumulator = build_accumulator(run.optimizer, s.stepped());
  set_length(s, config, run);
  return s;
}

/// The progress a resumed run starts from, its optimizer and scheduler loaded from the
/// checkpoint (everything validated before anything changes); a fresh run's otherwise.
Progress resume_run(RunSetup& s, const RunOptions& options) {
  if (!s.resumed) return Progress{};
  const Progress p = progress_of(*s.resumed, options.resume_path, s.total);
  LoadOptions load;
  if (s.average) load.components.push_back(s.average.get());
  if (s.accumulator) load.components.push_back(s.accumulator.get());
  if (s.parallel != nullptr) {
    s.resumed.reset();  // the sharded load reads each rank's part itself
    s.parallel->load(options.resume_path, s.scheduler.get());
  } else {
    load_optimizer(std::move(*s.resumed), options.resume_path, *s.opt, s.scheduler.get(), load);
  }
  s.resumed.reset();
  s.widen_into_problem();
  return p;
}

/// A run between its setup and its end: the steps, their rows, the checkpoints.
class TrainingLoop {
 public:
  TrainingLoop(const RunConfig& config, const RunSpec& run, RunSetup& setup, Progress& p, const RunOptions& options)
      : config_(config), run_(run), s_(setup), p_(p), options_(options), start_(Clock::now()) {
    if (!options.metrics_path.empty()) metrics_ = open_metrics(options.metrics_path, !options.resume_path.empty(), p.step);
    if (!s_.full_batch) batch_.resize(static_cast<std::size_t>(config.train.batch_size));
  }

  /// Steps until `stop`, an interruption or a divergence that stops the run; returns whether
  /// the run was interrupted.
  bool run_until(std::int64_t stop) {
    const TrainSettings& t = config_.train;
    while (p_.step < stop) {
      bool interrupted = options_.interrupt != nullptr && options_.interrupt->load();
      if (s_.parallel != nullptr) interrupted = s_.parallel->any(interrupted);
      if (interrupted) return true;
      step();
      if (stopped_) break;
      if (p_.step != s_.total && t.checkpoint_every > 0 && p_.step % t.checkpoint_every == 0) save();
    }
    return false;
  }

  /// Writes a checkpoint of the run as it stands (when it has a checkpoint path).
  void save() const {
    if (options_.checkpoint_path.empty()) return;
    const fs::path cp(options_.checkpoint_path);
    if (cp.has_parent_path()) fs::create_directories(cp.parent_path());
    Options metadata = metadata_of(s_.settings, config_, p_, s_.spe, elapsed());
    if (s_.parallel != nullptr) {
      metadata[std::string(kKey) + "slices"] = Value(s_.slices);  // what a resume keeps
      s_.parallel->save(options_.checkpoint_path, metadata, s_.scheduler.get());
    } else {
      save_optimizer(options_.checkpoint_path, *s_.opt, s_.scheduler.get(), s_.components(), metadata);
    }
  }

  /// Seconds spent on the run, before this process included.
  double elapsed() const { return p_.seconds + seconds_here(); }
  /// Seconds spent on the run in this process.
  double seconds_here() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  /// Whether a divergence stopped the run.
  bool stopped() const { return stopped_; }
  /// Closes the metrics file, checking that its rows reached the disk.
  void close_metrics() {
    if (metrics_) metrics_->close();
  }

 private:
  /// The next batch of the seeded order into batch_.
  void load_batch() {
    const TrainSettings& t = config_.train;
    const std::int64_t epoch = p_.step / s_.spe;
    if (epoch != epoch_loaded_) {
      order_ = epoch_order(*s_.problem, t.seed, epoch);
      epoch_loaded_ = epoch;
    }
    std::copy_n(order_.begin() + (p_.step % s_.spe) * t.batch_size, t.batch_size, batch_.begin());
  }

  /// One step, then its row when it has one.
  void step() {
    if (!s_.full_batch) load_batch();
    // The batch's loss and gradients at the parameters' current values, clipped; an optimizer
    // that re-evaluates the loss (lbfgs) calls it as often as it needs, on the same batch, and
    // the row records the first evaluation.
    // With gradient accumulation (never with a closure: the config check refuses it) the
    // gradients are clipped once summed, and the optimizer and scheduler step at the last
    // micro-batch of each accumulation only.
    std::optional<double> norm;
    bool first = true;
    const auto clip = [&] {
      const std::optional<double> n = apply_clip(run_.optimizer, s_.stepped());
      if (first) norm = n;
      first = false;
    };
    const Closure evaluate_batch = [&] {
      s_.widen_into_problem();
      const double f = s_.problem->loss_and_grad(batch_);
      s_.round_grads();
      clip();
      return f;
    };
    double loss = 0;
    bool updated = true;
    if (s_.parallel != nullptr) {
      loss = parallel_step();
    } else if (s_.opt->needs_closure()) {
      loss = s_.opt->step(evaluate_batch);
    } else {
      s_.widen_into_problem();
      loss = s_.problem->loss_and_grad(batch_);
      s_.round_grads();
      if (s_.accumulator) updated = s_.accumulator->accumulate();
      if (updated) {
        clip();
        s_.opt->step();
      }
    }
    s_.opt->clear_grad();
    if (norm && !std::isfinite(*norm)) ++p_.nonfinite_norms;
    s_.widen_into_problem();
    if (updated && s_.scheduler && !s_.scheduler->needs_metric()) s_.scheduler->step();
    ++p_.step;
    p_.window_sum += loss;
    ++p_.window_count;
    p_.eval_sum += loss;
    ++p_.eval_count;
    const bool evaluate = p_.step == s_.total || p_.step % s_.eval_every == 0;
    bool has_row = evaluate || p_.step % config_.train.log_every == 0;
    const bool diverged = check_divergence(loss, has_row);
    MetricRow row;
    if (has_row || diverged) row = record_row(evaluate, norm, diverged);
    if (options_.progress != nullptr) options_.progress->step(p_.step, loss, has_row || diverged ? &row : nullptr);
  }

  /// A data-parallel step: this rank's slices of the batch contributed, the batch's loss the
  /// slices' losses weighted by their shares, summed in slice order (the same on every rank
  /// and for any number of ranks).
  double parallel_step() {
    s_.widen_into_problem();
    const std::size_t b = batch_.size();
    const auto slices = static_cast<std::size_t>(s_.slices);
    const auto n = static_cast<std::size_t>(s_.parallel->size());
    const auto r = static_cast<std::size_t>(s_.parallel->rank());
    const auto share = [&](std::size_t k) {
      return static_cast<double>((k + 1) * b / slices - k * b / slices) / static_cast<double>(b);
    };
    std::vector<double> mine;
    for (std::size_t k = r * slices / n; k < (r + 1) * slices / n; ++k) {
      slice_.assign(batch_.begin() + static_cast<std::ptrdiff_t>(k * b / slices),
                    batch_.begin() + static_cast<std::ptrdiff_t>((k + 1) * b / slices));
      mine.push_back(s_.problem->loss_and_grad(slice_));
      s_.round_grads();
      s_.parallel->contribute(share(k));
    }
    const std::vector<double> losses = s_.parallel->gather(mine);
    double loss = 0;
    for (std::size_t k = 0; k < slices; ++k) loss += share(k) * losses[k];
    s_.parallel->step();
    return loss;
  }

  /// Whether this step diverged (the first time only): its loss, or at a row its parameters,
  /// not finite. The loss costs nothing to check at every step; the parameters, a pass over
  /// them, only at the rows (a parameter that is not finite makes the next loss so for these
  /// problems, and the last step always has a row).
  bool check_divergence(double loss, bool has_row) {
    if (p_.diverged_at >= 0) return false;
    const std::string what = !std::isfinite(loss) ? "the training loss is " + metric_text(loss)
                             : has_row             ? nonfinite_parameter(*s_.problem)
                                                   : std::string();
    if (what.empty()) return false;
    p_.diverged_at = p_.step;
    p_.divergence = what;
    stopped_ = !config_.train.continue_on_divergence;
    return true;
  }

  /// The row of this step, evaluated on the test set when `evaluate`; written to the metrics
  /// file and handed to on_row.
  MetricRow record_row(bool evaluate, std::optional<double> norm, bool diverged) {
    MetricRow row;
    row.step = p_.step;
    row.epoch = (p_.step - 1) / s_.spe;
    row.train_loss = p_.window_sum / static_cast<double>(p_.window_count);
    row.grad_norm = norm;
    row.diverged = diverged;
    if (evaluate) {
      if (s_.scheduler && s_.scheduler->needs_metric()) s_.scheduler->step(p_.eval_sum / static_cast<double>(p_.eval_count));
      p_.eval_sum = 0;
      p_.eval_count = 0;
      const Evaluation e = s_.evaluate(true);
      row.test_loss = e.loss;
      if (s_.problem->has_accuracy()) row.test_accuracy = e.accuracy;
    }
    row.lr = first_lr(*s_.opt);
    row.seconds = elapsed();
    p_.window_sum = 0;
    p_.window_count = 0;
    if (p_.steps_to_target < 0 && row.train_loss <= config_.train.target_loss) p_.steps_to_target = p_.step;
    if (metrics_) *metrics_ << metrics_csv_row(row) << "\n";
    if (metrics_) metrics_->flush();
    if (options_.on_row) options_.on_row(row);
    return row;
  }

  const RunConfig& config_;
  const RunSpec& run_;
  RunSetup& s_;
  Progress& p_;
  const RunOptions& options_;
  const Clock::time_point start_;
  std::unique_ptr<OutputFile> metrics_;
  std::int64_t epoch_loaded_ = -1;
  std::vector<std::uint32_t> order_;
  std::vector<std::uint32_t> batch_;
  std::vector<std::uint32_t> slice_;  // of batch_, when data-parallel
  bool stopped_ = false;  // by a divergence
};

/// What the run achieved, evaluated over the whole sets when it ran to its end.
RunOutcome finish_run(const RunSpec& run, RunSetup& s, const Progress& p, std::int64_t first, bool interrupted,
                      bool stopped, double run_seconds) {
  RunOutcome out;
  out.label = run.label;
  out.optimizer = optimizer_names(run.optimizer);
  out.total_steps = s.total;
  out.interrupted = interrupted;
  out.steps_done = p.step;
  out.steps_to_target = p.steps_to_target;
  out.nonfinite_grad_norms = p.nonfinite_norms;
  out.diverged_at = p.diverged_at;
  out.divergence = p.divergence;
  out.seconds = p.seconds + run_seconds;
  out.steps_per_second = run_seconds > 0 ? static_cast<double>(p.step - first) / run_seconds : 0;
  out.param_dtype = s.low.empty() ? DType::Float32 : s.low.front().value().dtype();
  if (s.parallel != nullptr) {
    out.state_bytes = s.parallel->state_bytes();
  } else {
    for (const Parameter& param : s.stepped()) {
      for (const auto& [name, t] : s.opt->state(param).tensors()) out.state_bytes += t.nbytes();
    }
  }
  if (s.average) {  // the weight average's copy of the weights is state the run keeps too
    for (const Tensor& t : s.average->averages()) out.state_bytes += t.nbytes();
  }
  if (!interrupted && !stopped && p.step == s.total) {
    out.train = s.evaluate(false);
    out.test = s.evaluate(true);
    out.average_test = s.evaluate_average(true);
    if (!s.problem->has_accuracy()) out.train.accuracy = out.test.accuracy = std::nan("");
    if (out.average_test && !s.problem->has_accuracy()) out.average_test->accuracy = std::nan("");
  }
  return out;
}

}  // namespace

RunOutcome run_training(const RunConfig& config, const RunSpec& run, Registry& registry, DataCache& data,
                        const RunOptions& options) {
  RunSetup setup = setup_run(config, run, registry, data, options);
  Progress p = resume_run(setup, options);
  TrainingLoop loop(config, run, setup, p, options);
  const std::int64_t stop = options.stop_after > 0 ? std::min(options.stop_after, setup.total) : setup.total;
  const std::int64_t first = p.step;
  if (options.progress != nullptr) options.progress->begin(run.label, first, setup.total);
  const bool interrupted = loop.run_until(stop);
  const double run_seconds = loop.seconds_here();
  loop.close_metrics();
  // A run stopped by its divergence saves nothing: its state is of no use, and the last
  // checkpoint (from before) stays for a resume with other settings.
  if (!loop.stopped()) loop.save();
  if (options.progress != nullptr) options.progress->end(interrupted);
  return finish_run(run, setup, p, first, interrupted, loop.stopped(), run_seconds);
}

}  // namespace optreg::train
