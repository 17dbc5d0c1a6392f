// The training loop: batches in a seeded order, metrics, evaluation, checkpoints, resume.
#include <optreg/train/run.hpp>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <optreg/checkpoint.hpp>
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

std::string options_text(const Options& o) {
  std::string s;
  for (const auto& [k, v] : o) s += (s.empty() ? "" : ", ") + k + "=" + v.to_string();
  return s;
}

/// The metadata that must agree between a checkpoint and the config resuming from it.
Options identity(const RunConfig& config, const RunSpec& run) {
  return Options{{std::string(kKey) + "problem", Value(config.problem)},
                 {std::string(kKey) + "problem_options", Value(options_text(config.problem_options))},
                 {std::string(kKey) + "seed", Value(static_cast<std::int64_t>(config.train.seed))},
                 {std::string(kKey) + "batch_size", Value(config.train.batch_size)},
                 {std::string(kKey) + "data_order", Value(kDataOrder)},
                 {std::string(kKey) + "label", Value(run.label)}};
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
  double seconds = 0;           // spent before this process
};

Options metadata_of(const RunConfig& config, const RunSpec& run, const Progress& p, std::int64_t spe,
                    double seconds) {
  Options m = identity(config, run);
  m[std::string(kKey) + "step"] = Value(p.step);
  m[std::string(kKey) + "epoch"] = Value(p.step / spe);
  m[std::string(kKey) + "position"] = Value((p.step % spe) * config.train.batch_size);
  m[std::string(kKey) + "window_sum"] = Value(p.window_sum);
  m[std::string(kKey) + "window_count"] = Value(p.window_count);
  m[std::string(kKey) + "eval_sum"] = Value(p.eval_sum);
  m[std::string(kKey) + "eval_count"] = Value(p.eval_count);
  m[std::string(kKey) + "nonfinite_grad_norms"] = Value(p.nonfinite_norms);
  m[std::string(kKey) + "steps_to_target"] = Value(p.steps_to_target);
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

/// Checks that a checkpoint belongs to this run, and reads its progress (nothing is changed).
Progress check_resume(const Checkpoint& c, const std::string& path, const RunConfig& config, const RunSpec& run,
                      std::int64_t total) {
  for (const auto& [key, want] : identity(config, run)) {
    const Value& got = meta(c.metadata, path, key.substr(sizeof kKey - 1), want.type());
    if (got != want) {
      throw CheckpointError("checkpoint " + path + ": it was written with " + key + " = " + got.to_string() +
                            ", but " + config.source + " gives " + want.to_string());
    }
  }
  Progress p;
  p.step = meta(c.metadata, path, "step", ValueType::Int).as_int();
  p.window_sum = meta(c.metadata, path, "window_sum", ValueType::Float).as_float();
  p.window_count = meta(c.metadata, path, "window_count", ValueType::Int).as_int();
  p.eval_sum = meta(c.metadata, path, "eval_sum", ValueType::Float).as_float();
  p.eval_count = meta(c.metadata, path, "eval_count", ValueType::Int).as_int();
  p.nonfinite_norms = meta(c.metadata, path, "nonfinite_grad_norms", ValueType::Int).as_int();
  p.steps_to_target = meta(c.metadata, path, "steps_to_target", ValueType::Int).as_int();
  p.seconds = meta(c.metadata, path, "seconds", ValueType::Float).as_float();
  if (p.step < 0 || p.step > total || p.window_count < 0 || p.window_count > p.step || p.eval_count < 0 ||
      p.eval_count > p.step) {
    throw CheckpointError("checkpoint " + path + ": its step " + std::to_string(p.step) + " lies outside the run's " +
                          std::to_string(total) + " steps");
  }
  return p;
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}


/// Opens the metrics file: fresh, or (resuming) keeping the rows up to `step`.
std::ofstream open_metrics(const std::string& path, bool resume, std::int64_t step) {
  std::vector<std::string> kept;
  if (resume) {
    std::ifstream in(path);
    std::string line;
    bool header = true;
    while (std::getline(in, line)) {
      if (header) {
        header = false;
        if (line != kMetricsCsvHeader) break;  // not ours: start over
        continue;
      }
      const auto comma = line.find(',');
      if (comma == std::string::npos) break;
      try {
        if (std::stoll(line.substr(0, comma)) > step) break;
      } catch (const std::exception&) {
        break;
      }
      kept.push_back(line);
    }
  }
  const fs::path p(path);
  if (p.has_parent_path()) fs::create_directories(p.parent_path());
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw Error(path + ": cannot write the metrics file");
  out << kMetricsCsvHeader << '\n';
  for (const auto& l : kept) out << l << '\n';
  out.flush();
  return out;
}

/// "FILE:LINE:COLUMN: " of a key of the config's `train` section (of the section itself when the
/// key was not written).
std::string place(const RunConfig& config, const std::string& key) {
  auto it = config.train_marks.find(key);
  if (it == config.train_marks.end()) it = config.train_marks.find("train");
  const ConfigMark m = it == config.train_marks.end() ? ConfigMark{} : it->second;
  return config.source + ":" + std::to_string(m.line) + ":" + std::to_string(m.column) + ": ";
}

/// The order in which epoch `epoch` visits the training examples.
std::vector<std::uint32_t> epoch_order(const Problem& problem, std::uint64_t seed, std::int64_t epoch) {
  Random rng(seed, 1000 + static_cast<std::uint64_t>(epoch));
  return permutation(static_cast<std::uint32_t>(problem.train_size()), rng);
}

/// "out of memory: ..." for an optimizer whose state did not fit: the tensors its schema
/// declares per parameter, for every parameter of the problem.
std::string optimizer_out_of_memory(const std::string& name, const Problem& problem, const Registry& registry) {
  std::size_t tensors = 0;
  if (const auto d = registry.find(name)) {
    for (const StateEntry& e : *d->state) tensors += e.kind == StateKind::Tensor && !e.custom_shape ? 1 : 0;
  }
  return out_of_memory("the state of optimizer '" + name + "' (" + std::to_string(tensors) + " tensors for each of the " +
                           std::to_string(problem.parameter_count()) + " parameters of problem '" + problem.name() + "')",
                       4.0 * static_cast<double>(tensors * problem.parameter_count()));
}

double first_lr(const Optimizer& opt) {
  const auto& groups = opt.param_groups();
  if (groups.empty()) return std::nan("");
  const Value& lr = groups.front().option("lr");
  return lr.type() == ValueType::Float ? lr.as_float() : std::nan("");
}

}  // namespace

const char kMetricsCsvHeader[] = "step,epoch,train_loss,test_loss,test_accuracy,lr,grad_norm,seconds";

std::string metrics_csv_row(const MetricRow& r) {
  return std::to_string(r.step) + "," + std::to_string(r.epoch) + "," + csv_number(r.train_loss) + "," +
         csv_number(r.test_loss) + "," + csv_number(r.test_accuracy) + "," + csv_number(r.lr) + "," +
         csv_number(r.grad_norm) + "," + csv_number(r.seconds);
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

RunOutcome run_training(const RunConfig& config, const RunSpec& run, Registry& registry, DataCache& data,
                        const RunOptions& options) {
  const TrainSettings& t = config.train;
  const ProblemKind* kind = find_problem(config.problem);
  if (kind == nullptr) throw ConfigError(config.source + ": unknown problem '" + config.problem + "'");
  ProblemPtr problem = kind->create(config.problem_options, t.seed, data);
  load_config_plugins(run.optimizer, registry);  // refused files show in 'optreg list'; a missing name fails below
  OptimizerPtr opt;
  try {
    opt = build_optimizer(run.optimizer, problem->params(), registry);
  } catch (const std::bad_alloc&) {
    throw Error("run '" + run.label + "': " + optimizer_out_of_memory(run.optimizer.optimizer, *problem, registry));
  }
  SchedulerPtr scheduler = build_scheduler(run.optimizer, *opt, registry);  // nullptr without one

  std::int64_t spe = 0;
  try {
    spe = steps_per_epoch(*problem, t.batch_size);
  } catch (const ConfigError& e) {
    throw ConfigError(place(config, "batch_size") + e.what());
  }
  const std::int64_t total = t.steps > 0 ? t.steps : static_cast<std::int64_t>(std::ceil(t.epochs * static_cast<double>(spe)));
  if (scheduler) {
    // A schedule of a fixed length (onecycle) cannot step past its end: say so before training.
    const auto it = scheduler->options().find("total_steps");
    if (it != scheduler->options().end() && it->second.type() == ValueType::Int && it->second.as_int() < total) {
      const ConfigMark m = run.optimizer.scheduler ? run.optimizer.scheduler->name_mark : ConfigMark{};
      throw ConfigError(config.source + ":" + std::to_string(m.line) + ":" + std::to_string(m.column) +
                        ": scheduler '" + scheduler->name() + "' has total_steps = " +
                        std::to_string(it->second.as_int()) + ", fewer than the run's " + std::to_string(total) +
                        " steps; it cannot step past its cycle");
    }
  }
  const bool full_batch = problem->train_size() == 0;
  const std::int64_t eval_every = t.eval_every > 0 ? t.eval_every : (full_batch ? t.log_every : spe);

  Progress p;
  if (!options.resume_path.empty()) {
    Checkpoint c = read_checkpoint(options.resume_path);
    p = check_resume(c, options.resume_path, config, run, total);
    // Validates everything before it changes anything.
    load_optimizer(std::move(c), options.resume_path, *opt, scheduler.get());
  }
  RunOutcome out;
  out.label = run.label;
  out.optimizer = run.optimizer.optimizer;
  out.total_steps = total;
  out.steps_to_target = p.steps_to_target;

  const auto start = Clock::now();
  const auto elapsed = [&] { return p.seconds + std::chrono::duration<double>(Clock::now() - start).count(); };
  std::ofstream metrics;
  if (!options.metrics_path.empty()) metrics = open_metrics(options.metrics_path, !options.resume_path.empty(), p.step);
  const auto save = [&] {
    if (options.checkpoint_path.empty()) return;
    const fs::path cp(options.checkpoint_path);
    if (cp.has_parent_path()) fs::create_directories(cp.parent_path());
    const Options metadata = metadata_of(config, run, p, spe, elapsed());
    if (scheduler) {
      save_optimizer(options.checkpoint_path, *opt, *scheduler, metadata);
    } else {
      save_optimizer(options.checkpoint_path, *opt, metadata);
    }
  };

  const std::int64_t stop = options.stop_after > 0 ? std::min(options.stop_after, total) : total;
  const std::int64_t first = p.step;
  if (options.progress != nullptr) options.progress->begin(run.label, first, total);

  std::int64_t epoch_loaded = -1;
  std::vector<std::uint32_t> order;
  std::vector<std::uint32_t> batch(full_batch ? 0 : static_cast<std::size_t>(t.batch_size));
  while (p.step < stop) {
    if (options.interrupt != nullptr && options.interrupt->load()) {
      out.interrupted = true;
      break;
    }
    const std::int64_t epoch = p.step / spe;
    if (!full_batch) {
      if (epoch != epoch_loaded) {
        order = epoch_order(*problem, t.seed, epoch);
        epoch_loaded = epoch;
      }
      std::copy_n(order.begin() + (p.step % spe) * t.batch_size, t.batch_size, batch.begin());
    }
    const double loss = problem->loss_and_grad(batch);
    const std::optional<double> norm = apply_clip(run.optimizer, problem->params());
    if (norm && !std::isfinite(*norm)) ++p.nonfinite_norms;
    opt->step().clear_grad();
    if (scheduler && !scheduler->needs_metric()) scheduler->step();
    ++p.step;
    p.window_sum += loss;
    ++p.window_count;
    p.eval_sum += loss;
    ++p.eval_count;

    const bool last = p.step == total;
    const bool evaluate = last || p.step % eval_every == 0;
    MetricRow row;
    const bool has_row = last || evaluate || p.step % t.log_every == 0;
    if (has_row) {
      row.step = p.step;
      row.epoch = (p.step - 1) / spe;
      row.train_loss = p.window_sum / static_cast<double>(p.window_count);
      if (norm && std::isfinite(*norm)) row.grad_norm = *norm;
      if (evaluate) {
        if (scheduler && scheduler->needs_metric()) scheduler->step(p.eval_sum / static_cast<double>(p.eval_count));
        p.eval_sum = 0;
        p.eval_count = 0;
        const Evaluation e = problem->evaluate_test();
        row.test_loss = e.loss;
        row.test_accuracy = problem->has_accuracy() ? e.accuracy : std::nan("");
      }
      row.lr = first_lr(*opt);
      row.seconds = elapsed();
      p.window_sum = 0;
      p.window_count = 0;
      if (p.steps_to_target < 0 && row.train_loss <= t.target_loss) p.steps_to_target = p.step;
      out.rows.push_back(row);
      if (metrics.is_open()) metrics << metrics_csv_row(row) << '\n' << std::flush;
    }
    if (options.progress != nullptr) options.progress->step(p.step, loss, has_row ? &row : nullptr);
    if (!last && t.checkpoint_every > 0 && p.step % t.checkpoint_every == 0) save();
  }
  const double run_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  out.steps_done = p.step;
  out.steps_to_target = p.steps_to_target;
  out.nonfinite_grad_norms = p.nonfinite_norms;
  out.seconds = p.seconds + run_seconds;
  out.steps_per_second = run_seconds > 0 ? static_cast<double>(p.step - first) / run_seconds : 0;
  save();
  if (options.progress != nullptr) options.progress->end(out.interrupted);
  if (!out.interrupted && p.step == total) {
    out.train = problem->evaluate_train();
    out.test = problem->evaluate_test();
    if (!problem->has_accuracy()) out.train.accuracy = out.test.accuracy = std::nan("");
  }
  return out;
}

}  // namespace optreg::train
