// The conformance kit: every check runs on fixed, deterministic problems, compares bit for bit
// where the contract promises identical results, and turns every exception into a result.
#include <optreg/conformance.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/parallel.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include <optreg/detail/files.hpp>

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kit.hpp"
#include "objective.hpp"
#include "kit_inner.hpp"
#include "resume_job.hpp"
#include "scheduler_checks.hpp"

extern char** environ;

namespace optreg {

const char* to_string(ConformanceResult::Status status) noexcept {
  switch (status) {
    case ConformanceResult::Status::Passed: return "passed";
    case ConformanceResult::Status::Failed: return "FAILED";
    case ConformanceResult::Status::Skipped: return "skipped";
  }
  return "unknown";
}

namespace {

using kit::Check;
using kit::curvature;
using kit::Gradient;
using kit::gradient;
using kit::take_step;
using kit::check_schema_defaults;
using kit::count;
using kit::diff;
using kit::failed;
using kit::joined;
using kit::number;
using kit::Outcome;
using kit::passed;
using kit::RemoveOnExit;
using kit::Reporter;
using kit::same_bits;
using kit::schema_fault;
using kit::skipped;
using kit::Status;
using kit::TempDir;

// ---------------------------------------------------------------- the test problems

struct ParamSpec {
  const char* name;
  Shape shape;
};

/// The parameters the checks step: a matrix, a vector, a scalar and a 3-d tensor.
const std::vector<ParamSpec>& standard_params() {
  static const std::vector<ParamSpec> specs = {{"weight", {7, 5}}, {"bias", {13}}, {"scale", {}}, {"kernel", {2, 3, 4}}};
  return specs;
}

/// The same names with other shapes, for state dicts that must not fit.
const std::vector<ParamSpec>& other_shapes() {
  static const std::vector<ParamSpec> specs = {{"weight", {5, 7}}, {"bias", {11}}, {"scale", {1}}, {"kernel", {2, 3, 5}}};
  return specs;
}

/// SplitMix64: the same numbers on every platform.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }

 private:
  std::uint64_t state_;
};

/// Parameters of the given shapes whose values lie in +-[0.05, 1]: never zero, so that adding a
/// signed zero cannot hide or fake a change.
std::vector<Parameter> make_params(const std::vector<ParamSpec>& specs, std::uint64_t seed,
                                   DType dtype = DType::Float32) {
  Random rng(seed);
  std::vector<Parameter> out;
  for (const ParamSpec& s : specs) {
    Tensor t(s.shape);
    for (std::size_t i = 0; i < t.numel(); ++i) {
      const bool negative = rng.uniform() < 0.5;
      const double magnitude = 0.05 + 0.95 * rng.uniform();
      t[i] = static_cast<float>(negative ? -magnitude : magnitude);
    }
    out.emplace_back(s.name, dtype == DType::Float32 ? t : t.to(dtype));
  }
  return out;
}

/// 0.5 * sum(a x^2) over every parameter.
double quadratic_loss(const std::vector<Parameter>& params) {
  double sum = 0.0;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Tensor& x = params[k].value();
    for (std::size_t i = 0; i < x.numel(); ++i) {
      const double v = x[i];
      sum += 0.5 * curvature(k, i) * v * v;
    }
  }
  return sum;
}

enum class Layout { OneGroup, TwoGroups };

/// An optimizer and the parameters it steps, in id order.
struct Run {
  std::vector<Parameter> params;
  OptimizerPtr opt;

  void set_gradients(Gradient kind) {
    for (std::size_t k = 0; k < params.size(); ++k) params[k].set_grad(gradient(kind, k, params[k].value()));
  }
  /// `n` steps; with `record`, each step's gradients are appended to it, parameter by
  /// parameter, as their dtype stores them (the gradients file of a resume job).
  void steps(int n, Gradient kind, std::ofstream* record = nullptr) {
    for (int s = 0; s < n; ++s) {
      set_gradients(kind);
      for (std::size_t k = 0; record != nullptr && k < params.size(); ++k) {
        const Tensor& g = params[k].grad();
        record->write(static_cast<const char*>(g.raw()), static_cast<std::streamsize>(g.nbytes()));
      }
      take_step(*opt, params, kind);
    }
  }
};

/// A new optimizer over fresh parameters; TwoGroups puts the first half of them in group 0 and
/// the rest in group 1, both at `options`.
/// `shape` as a matrix of as many elements, for optimizers of matrices only: [n] as [n, 1], a
/// scalar as [1, 1], [a, b, ..., z] as [a b ..., z].
Shape as_matrix(const Shape& shape) {
  if (shape.size() == 2) return shape;
  if (shape.empty()) return {1, 1};
  if (shape.size() == 1) return {shape[0], 1};
  std::int64_t rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, shape.back()};
}

Run make_run(const Registry& registry, const std::string& name, const std::vector<ParamSpec>& specs,
             std::uint64_t seed, Layout layout, const Options& options = {}, DType dtype = DType::Float32) {
  Run r;
  const auto d = registry.find(name);
  const std::uint32_t flags = d ? d->flags : 0;
  if ((flags & abi::kOptimizerMatricesOnly) != 0) {
    std::vector<ParamSpec> matrices = specs;
    for (ParamSpec& spec : matrices) spec.shape = as_matrix(spec.shape);
    r.params = make_params(matrices, seed, dtype);
  } else {
    r.params = make_params(specs, seed, dtype);
  }
  // An optimizer stepped with a closure takes one group.
  if ((flags & abi::kOptimizerNeedsClosure) != 0) layout = Layout::OneGroup;
  if (layout == Layout::OneGroup) {
    std::vector<ParamGroupSpec> groups(1);
    groups[0].params = r.params;
    r.opt = kit::make_subject(registry, name, std::move(groups), options);
  } else {
    const auto half = static_cast<std::ptrdiff_t>((r.params.size() + 1) / 2);
    std::vector<ParamGroupSpec> groups(2);
    groups[0].params.assign(r.params.begin(), r.params.begin() + half);
    groups[1].params.assign(r.params.begin() + half, r.params.end());
    r.opt = kit::make_subject(registry, name, std::move(groups), options);
  }
  return r;
}

// ---------------------------------------------------------------- bit-exact comparison

/// A loss, to 6 significant digits.
std::string loss_text(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}

/// What differs between two tensors (shape, or the first element that differs in its bits), or "".
std::string diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return "shape " + to_string(a.shape()) + " vs " + to_string(b.shape());
  if (a.dtype() != b.dtype()) return std::string("dtype ") + dtype_name(a.dtype()) + " vs " + dtype_name(b.dtype());
  if (is_quantized(a.dtype())) {  // codes and scales, bit for bit
    for (std::size_t i = 0; i < a.numel(); ++i) {
      if (a.codes()[i] != b.codes()[i]) return "code " + std::to_string(i) + ": " + std::to_string(a.codes()[i]) + " vs " + std::to_string(b.codes()[i]);
    }
    for (std::size_t k = 0; k < quant_blocks(a.numel()); ++k) {
      if (!same_bits(a.scales()[k], b.scales()[k])) return "scale of block " + std::to_string(k) + ": " + number(a.scales()[k]) + " vs " + number(b.scales()[k]);
    }
    return {};
  }
  for (std::size_t i = 0; i < a.numel(); ++i) {
    // Every dtype widens to double exactly, so equal bits are equal doubles' bits.
    if (!same_bits(a.element(i), b.element(i))) {
      return "element " + std::to_string(i) + ": " + number(a.element(i)) + " vs " + number(b.element(i));
    }
  }
  return {};
}

std::string diff(const StateScalar& a, const StateScalar& b) {
  if (a.index() != b.index()) return "an int vs a float";
  if (a.index() == 0) {
    const auto x = std::get<std::int64_t>(a);
    const auto y = std::get<std::int64_t>(b);
    return x == y ? std::string() : std::to_string(x) + " vs " + std::to_string(y);
  }
  const double x = std::get<double>(a);
  const double y = std::get<double>(b);
  return same_bits(x, y) ? std::string() : number(x) + " vs " + number(y);
}

std::string diff(const ParamState& a, const ParamState& b) {
  if (a.num_tensors() != b.num_tensors() || a.num_scalars() != b.num_scalars()) {
    const auto names = [](const ParamState& s) {
      std::string out;
      for (const auto& t : s.tensors()) out += (out.empty() ? "" : ", ") + t.first;
      for (const auto& v : s.scalars()) out += (out.empty() ? "" : ", ") + v.first;
      return "{" + out + "}";
    };
    return "state entries " + names(a) + " vs " + names(b);
  }
  for (std::size_t i = 0; i < a.num_tensors(); ++i) {
    const std::string& name = a.tensors()[i].first;
    if (name != b.tensors()[i].first) return "state tensor '" + name + "' vs '" + b.tensors()[i].first + "'";
    if (auto d = diff(a.tensor(i), b.tensor(i)); !d.empty()) return "state tensor '" + name + "' " + d;
  }
  for (std::size_t i = 0; i < a.num_scalars(); ++i) {
    const std::string& name = a.scalars()[i].first;
    if (name != b.scalars()[i].first) return "state scalar '" + name + "' vs '" + b.scalars()[i].first + "'";
    if (auto d = diff(a.scalar(i), b.scalar(i)); !d.empty()) return "state scalar '" + name + "': " + d;
  }
  return {};
}

/// "parameter 'weight' (id 0)", or "parameter id 7" for an id without a name.
std::string param_label(std::uint64_t id, const std::vector<std::string>& names) {
  if (id < names.size()) return "parameter '" + names[id] + "' (id " + std::to_string(id) + ")";
  return "parameter id " + std::to_string(id);
}

/// What differs between two state dicts: name, version, every group's options and ids, every
/// parameter's state; `names` names the parameters by id for the message.
std::string diff(const StateDict& a, const StateDict& b, const std::vector<std::string>& names) {
  if (a.optimizer != b.optimizer) return "optimizer '" + a.optimizer + "' vs '" + b.optimizer + "'";
  if (a.plugin_version != b.plugin_version) return "plugin version " + a.plugin_version + " vs " + b.plugin_version;
  if (a.param_groups.size() != b.param_groups.size()) {
    return std::to_string(a.param_groups.size()) + " vs " + std::to_string(b.param_groups.size()) + " param groups";
  }
  for (std::size_t g = 0; g < a.param_groups.size(); ++g) {
    const auto& x = a.param_groups[g];
    const auto& y = b.param_groups[g];
    if (auto d = diff(x.options, y.options); !d.empty()) return "param group " + std::to_string(g) + ", " + d;
    if (x.params != y.params) return "param group " + std::to_string(g) + ": the parameter ids differ";
  }
  if (a.state.size() != b.state.size()) {
    return "state for " + std::to_string(a.state.size()) + " vs " + std::to_string(b.state.size()) + " parameters";
  }
  for (auto i = a.state.begin(), j = b.state.begin(); i != a.state.end(); ++i, ++j) {
    if (i->first != j->first) return "state for " + param_label(i->first, names) + " vs " + param_label(j->first, names);
    if (auto d = diff(i->second, j->second); !d.empty()) return param_label(i->first, names) + ", " + d;
  }
  return {};
}

/// Everything an optimizer holds and steps: its parameters' values (in id order) and its state dict.
struct Snapshot {
  std::vector<std::string> names;
  std::vector<Tensor> values;
  StateDict state;
};

Snapshot snapshot(const Optimizer& opt) {
  Snapshot s;
  for (const Parameter& p : opt.parameters()) {
    s.names.push_back(p.name());
    s.values.push_back(p.value().clone());
  }
  s.state = opt.state_dict();
  return s;
}

/// What differs between two snapshots of optimizers over the same parameters, or "".
std::string diff(const Snapshot& a, const Snapshot& b) {
  if (a.values.size() != b.values.size()) {
    return std::to_string(a.values.size()) + " vs " + std::to_string(b.values.size()) + " parameters";
  }
  for (std::size_t k = 0; k < a.values.size(); ++k) {
    if (auto d = diff(a.values[k], b.values[k]); !d.empty()) return "value of " + param_label(k, a.names) + ", " + d;
  }
  return diff(a.state, b.state, a.names);
}

/// The first value or state element that is not finite, or "".
std::string first_non_finite(const Snapshot& s) {
  for (std::size_t k = 0; k < s.values.size(); ++k) {
    const Tensor& t = s.values[k];
    for (std::size_t i = 0; i < t.numel(); ++i) {
      if (!std::isfinite(t[i])) return "value of " + param_label(k, s.names) + ", element " + std::to_string(i) + " = " + number(t[i]);
    }
  }
  for (const auto& [id, st] : s.state.state) {
    for (const auto& [name, t] : st.tensors()) {
      for (std::size_t i = 0; i < t.numel(); ++i) {
        if (!std::isfinite(t[i])) {
          return "state tensor '" + name + "' of " + param_label(id, s.names) + ", element " + std::to_string(i) + " = " +
                 number(t[i]);
        }
      }
    }
    for (const auto& [name, v] : st.scalars()) {
      if (v.index() == 1 && !std::isfinite(std::get<double>(v))) {
        return "state scalar '" + name + "' of " + param_label(id, s.names) + " = " + number(std::get<double>(v));
      }
    }
  }
  return {};
}

// ---------------------------------------------------------------- a fresh process

/// Marks this library's memory, for dladdr().
const char kLibraryAnchor = 0;

/// optreg-conformance-resume, which the kit installs beside this library (in optreg/).
std::string resume_program() {
  Dl_info info{};
  if (dladdr(&kLibraryAnchor, &info) == 0 || info.dli_fname == nullptr) return {};
  return (std::filesystem::path(info.dli_fname).parent_path() / "optreg" / "optreg-conformance-resume").string();
}

/// Runs `program job` in a new process, its output into `log`, for at most two minutes; "" when
/// it exited 0, else what went wrong, with its output.
std::string run_in_new_process(const std::string& program, const std::string& job, const std::string& log) {
  if (::access(program.c_str(), X_OK) != 0) {
    return "the kit's resume program " + program + " is missing (install optreg's conformance kit whole)";
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::string arg0 = program, arg1 = job;
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int err = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return "cannot start " + program + ": " + std::strerror(err);
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 10) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return "lost the resume process: " + std::string(std::strerror(errno));
    if (waited_ms >= 120000) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return "the resume process did not finish in two minutes";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!output.empty() && output.back() == '\n') output.pop_back();
  const std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                              : "exited with status " + std::to_string(WEXITSTATUS(status));
  return "the resume process " + how + (output.empty() ? "" : ": " + output);
}

/// A resume in a fresh process: optreg-conformance-resume loads `checkpoint` into an optimizer
/// like `run`'s (its parameters' names, shapes and dtype, its groups, `options`), replays the
/// `steps` steps of gradients recorded in `gradients` and saves; that file, loaded here into
/// `into` (a run like `run`), must equal `end` bit for bit. "" when it does, else the difference
/// or what failed.
std::string resume_in_fresh_process(const std::string& plugin, const std::string& name, const Run& run,
                                    const Options& options, DType dtype, const std::string& checkpoint,
                                    const std::string& gradients, int steps, Run into, const Snapshot& end) {
  kit::ResumeJob job;
  job.plugin = plugin;
  job.optimizer = name;
  job.dtype = dtype;
  job.checkpoint = checkpoint;
  job.gradients = gradients;
  job.out = checkpoint + ".fresh";
  job.steps = steps;
  job.options = options;
  const auto& groups = run.opt->param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (const Parameter& p : groups[g].params()) job.params.push_back({g, p.name(), p.value().shape()});
  }
  const std::string job_path = checkpoint + ".job", log = checkpoint + ".log";
  RemoveOnExit remove_job(job_path), remove_log(log), remove_out(job.out);
  kit::write_job(job, job_path);
  if (auto e = run_in_new_process(resume_program(), job_path, log); !e.empty()) return e;
  load_optimizer(job.out, *into.opt);
  return diff(snapshot(*into.opt), end);
}

/// What every check of one optimizer works with.
struct Subject {
  const Registry& registry;
  const OptimizerDescriptor& descriptor;
  const TempDir& dir;

  const std::string& name() const { return descriptor.name; }
  const Schema& schema() const { return *descriptor.schema; }
  Run run(std::uint64_t seed, Layout layout = Layout::TwoGroups, const Options& options = {},
          const std::vector<ParamSpec>& specs = standard_params()) const {
    return make_run(registry, name(), specs, seed, layout, options);
  }
};

Outcome check_descriptor(const Subject& s) {
  const OptimizerDescriptor& d = s.descriptor;
  std::vector<std::string> names;
  std::set<std::string> seen;
  if (auto fault = schema_fault(d.schema.get(), names, seen)) return failed(*fault);
  std::vector<std::string> state;
  if (d.state) {
    for (const StateEntry& e : *d.state) {
      if (e.name.empty()) return failed("a state entry has no name");
      if (e.meaning.empty()) return failed("state entry '" + e.name + "' has no meaning");
      if (!seen.insert("state:" + e.name).second) return failed("two state entries are named '" + e.name + "'");
      state.push_back(e.name);
    }
  }
  return passed("plugin " + d.plugin_name + " " + d.plugin_version + ": " +
                count(names.size(), "hyperparameter", "hyperparameters") + " (" + (names.empty() ? "none" : joined(names)) +
                "), " + count(state.size(), "state entry", "state entries") + " (" + (state.empty() ? "none" : joined(state)) +
                ")");
}

Outcome check_defaults(const Subject& s) { return check_schema_defaults(s.schema()); }

Outcome check_no_gradients(const Subject& s) {
  constexpr int kSteps = 3;
  Run r = s.run(1);
  const auto steps_without = [&](const std::string& when) -> std::string {
    r.opt->clear_grad();
    const Snapshot before = snapshot(*r.opt);
    for (int i = 1; i <= kSteps; ++i) {
      take_step(*r.opt, r.params, Gradient::Smooth);
      if (auto d = diff(snapshot(*r.opt), before); !d.empty()) {
        return "step " + std::to_string(i) + " without gradients " + when + " changed the optimizer: " + d + " (after vs before)";
      }
    }
    return {};
  };
  if (auto f = steps_without("on a fresh optimizer"); !f.empty()) return failed(f);
  r.steps(kSteps, Gradient::Smooth);
  if (auto f = steps_without("after " + std::to_string(kSteps) + " updates"); !f.empty()) return failed(f);

  // Gradients on the first parameter of each group only: the others keep their values and state.
  r.opt->clear_grad();
  const Snapshot before = snapshot(*r.opt);
  const std::size_t half = (r.params.size() + 1) / 2;
  std::set<std::size_t> with_grad = {0, half};
  for (std::size_t k : with_grad) r.params[k].set_grad(gradient(Gradient::Smooth, k, r.params[k].value()));
  take_step(*r.opt, r.params, Gradient::Smooth);
  const Snapshot after = snapshot(*r.opt);
  for (std::size_t k = 0; k < r.params.size(); ++k) {
    if (with_grad.count(k) != 0) continue;
    if (auto d = diff(after.values[k], before.values[k]); !d.empty()) {
      return failed("a step that gave gradients to other parameters changed the value of " + param_label(k, before.names) +
                    ", which had none: " + d + " (after vs before)");
    }
    if (auto d = diff(after.state.state.at(k), before.state.state.at(k)); !d.empty()) {
      return failed("a step that gave gradients to other parameters changed the state of " + param_label(k, before.names) +
                    ", which had none: " + d + " (after vs before)");
    }
  }
  return passed(std::to_string(kSteps) + " steps without gradients on a fresh optimizer and after " +
                std::to_string(kSteps) + " updates, and a step with gradients on " + std::to_string(with_grad.size()) + " of " +
                std::to_string(r.params.size()) +
                " parameters, left every value and state entry without a gradient unchanged");
}

Outcome check_lr_zero(const Subject& s) {
  constexpr int kSteps = 10;
  if (s.schema().find("lr") == nullptr) return skipped("the optimizer has no hyperparameter 'lr'");
  try {
    (void)s.schema().check("lr", Value(0.0), "lr_zero_changes_nothing");
  } catch (const OptionError& e) {
    return skipped(std::string("lr = 0 is not allowed: ") + e.what());
  }
  Run r;
  try {
    r = s.run(2, Layout::TwoGroups, {{"lr", 0.0}});
  } catch (const OptionError& e) {
    return skipped(std::string("the optimizer refuses lr = 0 with its other defaults: ") + e.what());
  }
  const Snapshot before = snapshot(*r.opt);
  for (int i = 1; i <= kSteps; ++i) {
    r.steps(1, Gradient::Smooth);
    for (std::size_t k = 0; k < r.params.size(); ++k) {
      if (auto d = diff(r.params[k].value(), before.values[k]); !d.empty()) {
        return failed("step " + std::to_string(i) + " with lr = 0 changed the value of " + param_label(k, before.names) +
                      ", " + d + " (after vs before)");
      }
    }
  }
  return passed(std::to_string(kSteps) + " steps with lr = 0 and nonzero gradients left all " +
                std::to_string(r.params.size()) + " parameters unchanged");
}

std::size_t count_tensors(const StateDict& sd) {
  std::size_t n = 0;
  for (const auto& entry : sd.state) n += entry.second.num_tensors();
  return n;
}

std::size_t count_scalars(const StateDict& sd) {
  std::size_t n = 0;
  for (const auto& entry : sd.state) n += entry.second.num_scalars();
  return n;
}

Outcome check_state_dict_round_trip(const Subject& s) {
  Run r = s.run(3);
  r.steps(5, Gradient::Smooth);
  const Snapshot original = snapshot(*r.opt);
  const std::string path = s.dir.file(s.name() + "-state.ckpt");
  RemoveOnExit remove(path);
  save_checkpoint(path, original.state);
  const Checkpoint back = read_checkpoint(path);
  if (auto d = diff(back.optimizer, original.state, original.names); !d.empty()) {
    return failed("the state dict read back from the checkpoint file differs: " + d + " (read vs saved)");
  }
  Run fresh = s.run(4);
  fresh.opt->load_state_dict(back.optimizer);
  if (auto d = diff(fresh.opt->state_dict(), original.state, original.names); !d.empty()) {
    return failed("after load_state_dict() a fresh optimizer's state dict differs: " + d + " (loaded vs saved)");
  }
  std::size_t options = 0;
  for (const auto& g : original.state.param_groups) options += g.options.size();
  return passed(count(original.state.param_groups.size(), "param group", "param groups") + " (" +
                count(options, "option", "options") + "), " + count(original.state.state.size(), "parameter id", "parameter ids") +
                ", " + count(count_tensors(original.state), "state tensor", "state tensors") + " and " +
                count(count_scalars(original.state), "state scalar", "state scalars") +
                " after 5 steps came back bit for bit from the file and through load_state_dict()");
}

Outcome check_resume(const Subject& s) {
  constexpr int kFirst = 6;
  constexpr int kMore = 6;
  const std::string path = s.dir.file(s.name() + "-resume.ckpt");
  const std::string gradients = path + ".gradients";
  RemoveOnExit remove(path), remove_gradients(gradients);
  Run uninterrupted = s.run(5);
  uninterrupted.steps(kFirst, Gradient::Smooth);
  const Snapshot at_save = snapshot(*uninterrupted.opt);
  save_optimizer(path, *uninterrupted.opt);
  {
    std::ofstream record(gradients, std::ios::binary);
    uninterrupted.steps(kMore, Gradient::Smooth, &record);
  }

  Run resumed = s.run(6);
  load_optimizer(path, *resumed.opt);
  if (auto d = diff(snapshot(*resumed.opt), at_save); !d.empty()) {
    return failed("right after load_optimizer() the optimizer differs from the one saved: " + d + " (loaded vs saved)");
  }
  resumed.steps(kMore, Gradient::Smooth);
  const Snapshot end = snapshot(*uninterrupted.opt);
  if (auto d = diff(snapshot(*resumed.opt), end); !d.empty()) {
    return failed(std::to_string(kFirst) + " steps, save_optimizer(), load_optimizer() into a fresh optimizer and " +
                  std::to_string(kMore) + " more steps differ from " + std::to_string(kFirst + kMore) +
                  " uninterrupted steps: " + d + " (resumed vs uninterrupted)");
  }
  if (auto d = resume_in_fresh_process(s.descriptor.source, s.name(), uninterrupted, {}, DType::Float32, path, gradients,
                                       kMore, s.run(6), end);
      !d.empty()) {
    return failed(std::to_string(kFirst) + " steps, save_optimizer(), then in a fresh process load_optimizer() and the " +
                  std::to_string(kMore) + " more steps' gradients differ from " + std::to_string(kFirst + kMore) +
                  " uninterrupted steps: " + d + " (resumed vs uninterrupted)");
  }
  bool moved = false;
  for (std::size_t k = 0; k < end.values.size(); ++k) moved = moved || !diff(end.values[k], at_save.values[k]).empty();
  return passed(std::to_string(kFirst) + " + " + std::to_string(kMore) + " steps resumed from a checkpoint file, in this "
                "process and in a fresh one, equal " + std::to_string(kFirst + kMore) +
                " uninterrupted steps bit for bit, values and state" +
                (moved ? "" : " (the parameters did not move at the default options)"));
}

/// Whether loading `donor` into an optimizer whose state dict is `target` must fail on a shape:
/// some state tensor of the donor has another shape than the target's tensor of the same name.
bool shapes_differ(const StateDict& donor, const StateDict& target) {
  for (const auto& [id, st] : donor.state) {
    const auto it = target.state.find(id);
    if (it == target.state.end()) continue;
    for (const auto& [name, t] : st.tensors()) {
      for (const auto& [other_name, other] : it->second.tensors()) {
        if (other_name == name && other.shape() != t.shape()) return true;
      }
    }
  }
  return false;
}

/// "" when load_state_dict(sd) is refused with a StateDictError (its text goes to `message`) and
/// leaves `opt` as `before` shows it; else what went wrong. `what` describes the state dict.
std::string refusal_fault(Optimizer& opt, const Snapshot& before, const StateDict& sd, const std::string& what,
                          std::string& message) {
  try {
    opt.load_state_dict(sd);
  } catch (const StateDictError& e) {
    if (auto d = diff(snapshot(opt), before); !d.empty()) {
      return "load_state_dict() refused a state dict " + what + " but changed the optimizer: " + d + " (after vs before)";
    }
    message = e.what();
    return {};
  } catch (const std::exception& e) {
    return "load_state_dict() of a state dict " + what + " threw something other than a StateDictError: " + e.what();
  }
  return "load_state_dict() accepted a state dict " + what;
}

Outcome check_mismatches(const Subject& s) {
  constexpr int kSteps = 3;
  Run target = s.run(7);
  target.steps(kSteps, Gradient::Smooth);
  target.opt->clear_grad();
  const Snapshot before = snapshot(*target.opt);
  std::vector<std::string> refused;
  std::string first_message;
  const auto expect_refusal = [&](const StateDict& sd, const std::string& what) -> std::string {
    std::string message;
    std::string fault = refusal_fault(*target.opt, before, sd, what, message);
    if (fault.empty()) {
      refused.push_back(what);
      if (first_message.empty()) first_message = message;
    }
    return fault;
  };

  std::string note;
  Run other = s.run(8, Layout::TwoGroups, {}, other_shapes());
  other.steps(kSteps, Gradient::Smooth);
  const StateDict other_sd = other.opt->state_dict();
  if (shapes_differ(other_sd, before.state)) {
    if (auto f = expect_refusal(other_sd, "from an optimizer over other shapes"); !f.empty()) return failed(f);
  } else {
    note = "; at the default options no state tensor depends on the parameters' shapes, so a state dict over other "
           "shapes cannot mismatch";
  }

  if ((s.descriptor.flags & abi::kOptimizerNeedsClosure) == 0) {
    Run one_group = s.run(9, Layout::OneGroup);
    one_group.steps(kSteps, Gradient::Smooth);
    if (auto f = expect_refusal(one_group.opt->state_dict(), "with 1 param group instead of 2"); !f.empty()) return failed(f);
  } else {
    note += "; it steps with a closure and takes one param group, so no state dict of another group count applies";
  }

  std::vector<ParamSpec> fewer = standard_params();
  fewer.pop_back();
  Run smaller = s.run(10, Layout::TwoGroups, {}, fewer);
  smaller.steps(kSteps, Gradient::Smooth);
  if (auto f = expect_refusal(smaller.opt->state_dict(), "with " + std::to_string(fewer.size()) + " parameters instead of " +
                                                             std::to_string(standard_params().size()));
      !f.empty()) {
    return failed(f);
  }
  return passed("refused each state dict (" + joined(refused) + ") with a StateDictError and stayed unchanged, e.g. \"" +
                first_message + "\"" + note);
}

/// Values of an entry's kind outside `domain`, one per way out of it: NaN, below its lower end,
/// above its upper end, an excluded infinity. Empty for an int entry whose domain spans every int.
std::vector<StateScalar> outside(const Range& domain, StateKind kind) {
  std::vector<StateScalar> out;
  const auto add = [&](const StateScalar& v) {
    const bool inside = v.index() == 0 ? domain.contains_integer(std::get<std::int64_t>(v)) : domain.contains(std::get<double>(v));
    for (const auto& seen : out) {
      if (diff(seen, v).empty()) return;
    }
    if (!inside) out.push_back(v);
  };
  if (kind == StateKind::Int) {
    constexpr double kTwo63 = 9223372036854775808.0;
    for (const std::int64_t x : {std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                                 std::numeric_limits<std::int64_t>::max()}) {
      add(x);
    }
    if (domain.lo > -kTwo63 && domain.lo < kTwo63) add(static_cast<std::int64_t>(std::ceil(domain.lo)) - 1);
    if (domain.hi > -kTwo63 && domain.hi < kTwo63 - 1024) add(static_cast<std::int64_t>(std::floor(domain.hi)) + 1);
    return out;
  }
  // Float state holds float32 values (tensors) or doubles (scalars): a float's neighbour is outside both.
  const double inf = std::numeric_limits<double>::infinity();
  for (const double x : {std::nan(""), -inf, inf, static_cast<double>(std::nextafter(static_cast<float>(domain.lo), -HUGE_VALF)),
                         static_cast<double>(std::nextafter(static_cast<float>(domain.hi), HUGE_VALF))}) {
    add(x);
  }
  return out;
}

/// Sets the first element of state entry `name` (a tensor or a scalar) of `st` to `v`; a tensor
/// is copied first, since copies of a state dict share their tensors.
void set_entry(ParamState& st, const std::string& name, const StateScalar& v) {
  for (std::size_t i = 0; i < st.num_tensors(); ++i) {
    if (st.tensors()[i].first != name || st.tensor(i).numel() == 0) continue;
    st.tensor(i) = st.tensor(i).clone();
    st.tensor(i)[0] = static_cast<float>(std::get<double>(v));
  }
  for (std::size_t i = 0; i < st.num_scalars(); ++i) {
    if (st.scalars()[i].first == name) st.scalar(i) = v;
  }
}

/// Whether `st` holds entry `name` with a value to forge (a tensor of at least one element).
bool holds(const ParamState& st, const std::string& name) {
  for (const auto& [n, t] : st.tensors()) {
    if (n == name && t.numel() > 0) return true;
  }
  for (const auto& [n, v] : st.scalars()) {
    if (n == name) return true;
  }
  return false;
}

std::string scalar_text(const StateScalar& v) {
  return v.index() == 0 ? std::to_string(std::get<std::int64_t>(v)) : number(std::get<double>(v));
}

/// Whether `e` is one of the core's precision entries (master_weight, rounding_step), which
/// every optimizer has and the core's own tests check: the kit checks the plugin's.
bool core_entry(const StateEntry& e) { return is_precision_entry(e.name); }

Outcome check_domains(const Subject& s) {
  const StateSchema& schema = *s.descriptor.state;
  std::vector<const StateEntry*> declared;
  std::size_t own = 0;
  for (const StateEntry& e : schema) {
    if (core_entry(e)) continue;
    ++own;
    if (e.domain) declared.push_back(&e);
  }
  if (own == 0) return passed("it keeps no state");
  if (declared.empty()) {
    return skipped("no state entry declares a domain (declare each with sdk::count(), sdk::non_negative(), ... so that "
                   "loads refuse values it can never hold)");
  }
  // The optimizer's own state lies in its domains, fresh and after steps.
  Run target = s.run(11);
  const auto own_state_refused = [&](const std::string& when) -> std::string {
    try {
      target.opt->load_state_dict(target.opt->state_dict());
    } catch (const StateDictError& e) {
      return "the optimizer's own state dict " + when + " is refused: " + e.what();
    }
    return {};
  };
  if (auto f = own_state_refused("when it is made"); !f.empty()) return failed(f);
  target.steps(3, Gradient::Smooth);
  target.opt->clear_grad();
  if (auto f = own_state_refused("after 3 steps"); !f.empty()) return failed(f);
  const Snapshot before = snapshot(*target.opt);
  std::string message;
  std::size_t forged = 0;
  std::vector<std::string> checked, absent;
  std::string example;
  for (const StateEntry* e : declared) {
    const auto at = std::find_if(before.state.state.begin(), before.state.state.end(),
                                 [&](const auto& entry) { return holds(entry.second, e->name); });
    if (at == before.state.state.end()) {
      absent.push_back(e->name);
      continue;
    }
    const std::string domain = e->domain->to_string(e->kind == StateKind::Int ? ValueType::Int : ValueType::Float);
    for (const StateScalar& v : outside(*e->domain, e->kind)) {
      StateDict sd = before.state;
      set_entry(sd.state.at(at->first), e->name, v);
      const std::string what = "with " + e->name + " = " + scalar_text(v) + " for " + param_label(at->first, before.names) +
                               ", outside its domain " + domain;
      if (auto f = refusal_fault(*target.opt, before, sd, what, message); !f.empty()) return failed(f);
      if (message.find("'" + e->name + "'") == std::string::npos || message.find(domain) == std::string::npos) {
        return failed("load_state_dict() refused a state dict " + what + ", but its message does not name the entry and "
                      "the domain: \"" + message + "\"");
      }
      if (example.empty()) example = message;
      ++forged;
    }
    checked.push_back(e->name + " " + domain);
  }
  if (forged == 0) return skipped("no declared domain can be left at the default options (" + joined(absent) + " absent)");
  return passed("refused " + count(forged, "forged state dict", "forged state dicts") + " holding a value outside the domain of " +
                joined(checked) + " with a StateDictError naming the entry and the domain, and stayed unchanged, e.g. \"" +
                example + "\"" + (absent.empty() ? "" : "; not present at the default options: " + joined(absent)));
}

Outcome check_counts(const Subject& s) {
  std::vector<const StateEntry*> counts;
  for (const StateEntry& e : *s.descriptor.state) {
    if (e.kind == StateKind::Int && e.domain && e.domain->hi < 9.2e18 && !core_entry(e)) counts.push_back(&e);
  }
  if (counts.empty()) return passed("it keeps no count with a bounded domain");
  Run r = s.run(12);
  r.steps(2, Gradient::Smooth);
  StateDict sd = r.opt->state_dict();
  std::vector<std::string> names;
  for (const StateEntry* e : counts) {
    names.push_back(e->name);
    const auto top = static_cast<std::int64_t>(std::floor(e->domain->hi));
    for (auto& [id, st] : sd.state) set_entry(st, e->name, StateScalar(top));
  }
  try {
    r.opt->load_state_dict(sd);
  } catch (const StateDictError& e) {
    return failed("a state dict with every count at the top of its domain is refused: " + std::string(e.what()));
  }
  r.set_gradients(Gradient::Smooth);
  const Snapshot before = snapshot(*r.opt);
  try {
    take_step(*r.opt, r.params, Gradient::Smooth);
  } catch (const UsageError& e) {
    if (auto d = diff(snapshot(*r.opt), before); !d.empty()) {
      return failed("step() refused counts at the top of their domains but changed the optimizer: " + d + " (after vs before)");
    }
    return passed("step() with " + joined(names) + " at the top of " + (counts.size() == 1 ? "its domain" : "their domains") +
                  " refused with a UsageError and changed nothing: \"" + e.what() + "\"");
  } catch (const std::exception& e) {
    return failed("step() with counts at the top of their domains threw something other than a UsageError: " +
                  std::string(e.what()));
  }
  const StateDict after = r.opt->state_dict();
  for (const StateEntry* e : counts) {
    for (const auto& [id, st] : after.state) {
      for (const auto& [name, v] : st.scalars()) {
        if (name == e->name && v.index() == 0 && !e->domain->contains_integer(std::get<std::int64_t>(v))) {
          return failed("step() advanced state count '" + name + "' of " + param_label(id, before.names) + " to " +
                        std::to_string(std::get<std::int64_t>(v)) + ", past the top of its domain " +
                        e->domain->to_string(ValueType::Int) + "; advance counts with sdk::advance_counts()");
        }
      }
    }
  }
  return passed("step() with " + joined(names) + " at the top of " + (counts.size() == 1 ? "its domain" : "their domains") +
                " left every count within it (none advanced at the default options)");
}

Outcome check_quadratic(const Subject& s) {
  constexpr int kSteps = 200;
  std::vector<Options> candidates;
  if (s.schema().find("lr") != nullptr) {
    for (const double lr : {1e-1, 1e-2, 1e-3}) {
      try {
        (void)s.schema().check("lr", Value(lr), "convex_quadratic_loss_falls");
        candidates.push_back({{"lr", lr}});
      } catch (const OptionError&) {
      }
    }
  }
  if (candidates.empty()) candidates.push_back({});
  double initial = 0.0;
  double best = std::numeric_limits<double>::infinity();
  std::string best_label = "the defaults";
  std::string finals;
  for (const Options& options : candidates) {
    const std::string label = options.empty() ? "the defaults" : "lr = " + options.at("lr").to_string();
    Run r;
    try {
      r = s.run(11, Layout::OneGroup, options);
    } catch (const OptionError& e) {
      finals += (finals.empty() ? "" : ", ") + label + ": refused (" + e.what() + ")";
      continue;
    }
    initial = quadratic_loss(r.params);
    r.steps(kSteps, Gradient::Quadratic);
    const double loss = quadratic_loss(r.params);
    finals += (finals.empty() ? "" : ", ") + label + ": " + loss_text(loss);
    if (std::isfinite(loss) && loss < best) {
      best = loss;
      best_label = label;
    }
  }
  if (!(best < initial)) {
    return failed("the loss did not fall in " + std::to_string(kSteps) + " steps from " + loss_text(initial) + " (final losses: " +
                  finals + ")");
  }
  return passed("loss " + loss_text(initial) + " -> " + loss_text(best) + " after " + std::to_string(kSteps) + " steps at " +
                best_label + (candidates.size() > 1 ? " (final losses: " + finals + ")" : ""));
}

Outcome check_zero_gradients(const Subject& s) {
  constexpr int kSteps = 20;
  Run r = s.run(12);
  for (int i = 1; i <= kSteps; ++i) {
    r.steps(1, Gradient::Zero);
    if (auto d = first_non_finite(snapshot(*r.opt)); !d.empty()) {
      return failed("after step " + std::to_string(i) + " with all-zero gradients: " + d);
    }
  }
  return passed(std::to_string(kSteps) + " steps with all-zero gradients left every value and state element finite");
}

Outcome check_threads(const Subject& s) {
  constexpr int kSteps = 50;
  constexpr int kRounds = 3;
  // Each thread starts from its own values, so that any state the two share shows; a large
  // parameter makes kernels that split their work across a thread pool do so.
  const std::uint64_t seeds[2] = {13, 14};
  std::vector<ParamSpec> specs = standard_params();
  specs.push_back({"embedding", {256, 256}});
  Snapshot reference[2];
  for (int t = 0; t < 2; ++t) {
    Run r = s.run(seeds[t], Layout::TwoGroups, {}, specs);
    r.steps(kSteps, Gradient::Quadratic);
    reference[t] = snapshot(*r.opt);
  }
  for (int round = 1; round <= kRounds; ++round) {
    std::atomic<int> ready{0};
    const auto arrive = [&ready] {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
    };
    Snapshot got[2];
    std::string error[2];
    const auto body = [&](int t) {
      bool arrived = false;
      try {
        Run r = s.run(seeds[t], Layout::TwoGroups, {}, specs);
        arrived = true;
        arrive();
        r.steps(kSteps, Gradient::Quadratic);
        got[t] = snapshot(*r.opt);
      } catch (const std::exception& e) {
        error[t] = e.what();
      } catch (...) {
        error[t] = "an exception that is not a std::exception";
      }
      if (!arrived) arrive();
    };
    std::thread first(body, 0);
    try {
      std::thread second(body, 1);
      second.join();
    } catch (...) {
      ready.fetch_add(1);  // let the first thread go on alone
      first.join();
      throw;
    }
    first.join();
    for (int t = 0; t < 2; ++t) {
      const std::string who = "round " + std::to_string(round) + ", thread " + std::to_string(t + 1) + " of 2";
      if (!error[t].empty()) return failed(who + " threw: " + error[t]);
      if (auto d = diff(got[t], reference[t]); !d.empty()) {
        return failed(who + ": " + std::to_string(kSteps) + " concurrent steps differ from the same run on one thread: " + d +
                      " (concurrent vs single-thread)");
      }
    }
  }
  return passed("2 instances x " + std::to_string(kSteps) + " steps over " + std::to_string(specs.size()) +
                " parameters (up to " + to_string(specs.back().shape) + ") on 2 threads at once, " +
                std::to_string(kRounds) + " times, equal the single-thread runs bit for bit");
}

/// The dtypes other than float32 that `s` declares it steps, each with the precision options
/// worth checking: none, and for bfloat16 and float16 master weights and stochastic rounding;
/// then each state dtype it declares, for float32 parameters and for bfloat16 ones with master
/// weights.
std::vector<std::pair<DType, Options>> dtype_variants(const Subject& s) {
  std::vector<std::pair<DType, Options>> out;
  const std::pair<std::uint32_t, const char*> state_dtypes[] = {{abi::kStateBFloat16, "bfloat16"}, {abi::kStateInt8, "int8"}};
  for (const auto& [bit, name] : state_dtypes) {
    if ((s.descriptor.state_dtypes & bit) == 0) continue;
    const Value state(std::string{name});
    out.emplace_back(DType::Float32, Options{{"state_dtype", state}});
    if ((s.descriptor.param_dtypes & dtype_bit(DType::BFloat16)) != 0) {
      out.emplace_back(DType::BFloat16, Options{{"state_dtype", state}, {"master_weights", Value(true)}});
    }
  }
  for (const DType d : {DType::Float64, DType::BFloat16, DType::Float16}) {
    if ((s.descriptor.param_dtypes & dtype_bit(d)) == 0) continue;
    out.emplace_back(d, Options{});
    if (d == DType::Float64 || s.schema().find("master_weights") == nullptr) continue;
    out.emplace_back(d, Options{{"master_weights", Value(true)}});
    out.emplace_back(d, Options{{"rounding", Value(std::string("stochastic"))}, {"rounding_seed", Value(std::int64_t{3})}});
  }
  return out;
}

std::string variant_text(DType d, const Options& o) {
  std::string out = dtype_name(d);
  for (const auto& [name, v] : o) out += " " + name + "=" + v.to_short_string();
  return out;
}

/// For every other dtype and state dtype the optimizer declares: a run resumed from a checkpoint file equals
/// the uninterrupted one bit for bit, one and two threads give the same bits over a tensor large
/// enough to be split, and a state dict whose state has another dtype is refused.
Outcome check_dtypes(const Subject& s) {
  const auto variants = dtype_variants(s);
  if (variants.empty()) return passed("it steps float32 parameters with float32 state alone");
  std::vector<ParamSpec> large = standard_params();
  large.push_back({"large", {40000}});
  std::vector<std::string> done;
  for (const auto& [dtype, options] : variants) {
    const std::string what = variant_text(dtype, options);
    const std::string path = s.dir.file(s.name() + "-dtype.ckpt");
    const std::string gradients = path + ".gradients";
    RemoveOnExit remove(path), remove_gradients(gradients);
    const auto make = [&](std::uint64_t seed) {
      return make_run(s.registry, s.name(), standard_params(), seed, Layout::TwoGroups, options, dtype);
    };
    Run uninterrupted = make(5);
    uninterrupted.steps(4, Gradient::Smooth);
    save_optimizer(path, *uninterrupted.opt);
    {
      std::ofstream record(gradients, std::ios::binary);
      uninterrupted.steps(4, Gradient::Smooth, &record);
    }
    const Snapshot end = snapshot(*uninterrupted.opt);
    Run resumed = make(6);
    load_optimizer(path, *resumed.opt);
    resumed.steps(4, Gradient::Smooth);
    if (auto d = diff(snapshot(*resumed.opt), end); !d.empty()) {
      return failed(what + ": 4 steps, a checkpoint file and 4 more differ from 8 uninterrupted steps: " + d);
    }
    if (auto d = resume_in_fresh_process(s.descriptor.source, s.name(), uninterrupted, options, dtype, path, gradients, 4,
                                         make(6), end);
        !d.empty()) {
      return failed(what + ": 4 steps, a checkpoint file and 4 more in a fresh process differ from 8 uninterrupted steps: " +
                    d);
    }
    Snapshot by_threads[2];
    for (const std::size_t threads : {1U, 2U}) {
      set_num_threads(threads);
      Run r = make_run(s.registry, s.name(), large, 7, Layout::TwoGroups, options, dtype);
      r.steps(3, Gradient::Smooth);
      by_threads[threads - 1] = snapshot(*r.opt);
    }
    set_num_threads(0);
    if (auto d = diff(by_threads[0], by_threads[1]); !d.empty()) return failed(what + ": 1 and 2 threads differ: " + d);
    StateDict sd = uninterrupted.opt->state_dict();
    bool converted = false;
    for (auto& [id, st] : sd.state) {
      ParamState next;
      for (const auto& [name, t] : st.tensors()) {
        const bool change = !converted && !t.shape().empty();
        next.add_tensor(name, change ? t.to(t.dtype() == DType::Float64 ? DType::Float32 : DType::Float64) : t);
        converted = converted || change;
      }
      for (const auto& [name, v] : st.scalars()) next.add_scalar(name, v);
      st = std::move(next);
    }
    if (converted) {
      const Snapshot before = snapshot(*uninterrupted.opt);
      try {
        uninterrupted.opt->load_state_dict(sd);
        return failed(what + ": a state dict whose state tensor has another dtype was loaded");
      } catch (const StateDictError& e) {
        if (auto d = diff(snapshot(*uninterrupted.opt), before); !d.empty()) {
          return failed(what + ": a refused state dict of another dtype changed the optimizer: " + d);
        }
      }
    }
    done.push_back(what);
  }
  return passed("for " + joined(done) + ": a run resumed in this process and in a fresh one equals the uninterrupted "
                "one bit for bit, 1 and 2 threads "
                "give the same bits, and state of another dtype is refused");
}

constexpr Check<Subject> kChecks[] = {
    {"descriptor_valid", &check_descriptor},
    {"defaults_in_range", &check_defaults},
    {"step_without_gradients_changes_nothing", &check_no_gradients},
    {"lr_zero_changes_nothing", &check_lr_zero},
    {"state_dict_round_trips_through_a_checkpoint_file", &check_state_dict_round_trip},
    {"resumed_run_is_bit_exact", &check_resume},
    {"load_state_dict_refuses_mismatches", &check_mismatches},
    {"state_outside_its_domain_is_refused", &check_domains},
    {"counts_stop_at_the_top_of_their_domain", &check_counts},
    {"convex_quadratic_loss_falls", &check_quadratic},
    {"zero_gradients_produce_no_nan", &check_zero_gradients},
    {"two_instances_on_two_threads_do_not_interfere", &check_threads},
    {"every_declared_dtype_resumes_and_splits_alike", &check_dtypes},
};

}  // namespace

std::vector<ConformanceResult> run_conformance(const std::string& plugin_path) {
  return run_conformance(plugin_path, ConformanceObserver{});
}

std::vector<ConformanceResult> run_conformance(const std::string& plugin_path, const ConformanceObserver& observer) {
  Reporter report(observer);
  const auto file_failure = [&](std::string detail, const char* check = kChecks[0].name) {
    ConformanceResult r;
    r.check = check;
    r.status = Status::Failed;
    r.detail = std::move(detail);
    report.add(std::move(r));
  };
  try {
    Registry registry;
    std::vector<std::string> names;
    try {
      names = registry.load_file(plugin_path);
    } catch (const std::exception& e) {
      file_failure(e.what());
      return report.take();
    }
    if (names.empty()) {
      file_failure("plugin " + plugin_path + " registers no optimizer and no scheduler");
      return report.take();
    }
    const TempDir dir;
    std::set<std::string> done;
    std::vector<SchedulerDescriptor> schedulers;
    for (const std::string& name : names) {
      if (!done.insert(name).second) continue;  // an optimizer and a scheduler may share a name
      const std::optional<OptimizerDescriptor> d = registry.find(name);
      const std::optional<SchedulerDescriptor> sd = registry.find_scheduler(name);
      if (!d && !sd) {
        file_failure("plugin " + plugin_path + " registered '" + name + "', but the registry cannot find it");
        continue;
      }
      if (d) report.run_table(Subject{registry, *d, dir}, name, ConformanceResult::Kind::Optimizer, kChecks);
      if (sd) schedulers.push_back(*sd);
    }
    kit::check_schedulers(registry, schedulers, dir, report);
  } catch (const std::exception& e) {
    file_failure(std::string("the conformance kit stopped: ") + e.what(), "conformance_kit");
  } catch (...) {
    file_failure("the conformance kit stopped on an exception that is not a std::exception", "conformance_kit");
  }
  return report.take();
}

}  // namespace optreg
