#pragma once
/// \file
/// optreg::Scheduler: a learning-rate schedule bound to one optimizer, the second kind of plugin.
///
/// Contract:
/// - A scheduler is bound to one Optimizer when it is set up and must not outlive it. It sets
///   each param group's `lr` through Optimizer::set_option(), so any optimizer whose schema has
///   a float `lr` works with any scheduler (the PyTorch and MegEngine contract).
/// - At setup it records each group's current `lr` as the group's base lr. A step-driven
///   scheduler then takes its initial step at once: last_step() is 0 and the optimizer holds
///   the schedule's lrs for the first optimizer step (PyTorch's constructor does the same). A
///   metric-driven scheduler (needs_metric()) leaves the lrs as they are.
/// - The training loop calls `optimizer.step()` and then `scheduler.step()` (step-driven), or
///   `scheduler.step(metric)` at each evaluation (metric-driven). Calling the other one is a
///   UsageError.
/// - Schedules follow PyTorch's chainable form: each step computes the new lrs from the lrs the
///   optimizer holds now, so a change of `lr` made by the host between steps carries on.
/// - state() is the whole mutable state as typed values; load_state() checks every key, type,
///   length and domain before changing anything (StateDictError naming the key) and is all or
///   nothing. The options are not part of the state: they come from the config that built it.
/// - Step counts never overflow: `last_step` lies in [0, 2^53] (kCountDomain), and a step at the
///   top of it is a UsageError that changes nothing.
/// - Plugin code is called through call_plugin() (<optreg/plugin_call.hpp>): no exception of a
///   plugin's own class leaves a call of the base.
/// - A Scheduler is not thread-safe.

#include <optreg/export.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <optreg/optimizer.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// Who a scheduler object is: its registered name, its plugin's version, its schema, and
/// whether it is stepped with a metric.
struct OPTREG_API SchedulerInfo {
  std::string name;
  std::string plugin_version;
  std::shared_ptr<const Schema> schema = std::make_shared<const Schema>();
  bool needs_metric = false;
  /// The plugin file it came from, for messages; empty for a class built into the host.
  std::string source{};
};

/// The abstract learning-rate scheduler. Plugins derive from it and implement next_lr() (or
/// next_lr_on_metric()); the base does the binding, counting, checks and state.
class OPTREG_API Scheduler {
 public:
  virtual ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Advances one step and sets every group's lr. UsageError for a metric-driven scheduler, when
  /// the schedule has no next step (onecycle past total_steps), or when last_step() is at the top
  /// of its domain (2^53); the optimizer is then unchanged.
  void step();
  /// Advances one step with the value of the monitored metric (metric-driven schedulers only;
  /// UsageError otherwise).
  void step(double metric);
  /// Whether step(metric) is the step to call.
  bool needs_metric() const noexcept { return info_.needs_metric; }

  /// Each group's lr as the last step (or the setup) left it.
  std::vector<double> last_lr() const { return last_lr_; }
  /// Steps taken since setup: 0 right after it.
  std::int64_t last_step() const noexcept { return last_step_; }
  /// Each group's lr when the scheduler was attached.
  const std::vector<double>& base_lrs() const noexcept { return base_lrs_; }

  const std::string& name() const noexcept { return info_.name; }
  const std::string& plugin_version() const noexcept { return info_.plugin_version; }
  const Schema& schema() const noexcept { return *info_.schema; }
  /// Every option of the schema, resolved.
  const Options& options() const noexcept { return options_; }
  /// The optimizer it drives.
  Optimizer& optimizer() const;

  /// The whole mutable state: `last_step` (int), `base_lrs` and `last_lr` (lists of floats),
  /// and the scheduler's own entries.
  Options state() const;
  /// Checks a state against this scheduler without changing anything; StateDictError naming
  /// the key at fault.
  void check_state(const Options& state) const;
  /// check_state(), then takes the state. Does not touch the optimizer: its lrs come back with
  /// the optimizer's own state dict.
  void load_state(const Options& state);

  /// Binds a newly made object to its identity, resolves `options` against the schema
  /// (OptionError naming the option), records the base lrs and takes the initial step.
  /// Registry::create_scheduler() calls it. Throws UsageError when called twice or when the
  /// optimizer has no float option `lr`.
  void setup(SchedulerInfo info, Optimizer& optimizer, const Options& options);

  /// Checks options for the scheduler class `info` describes without binding this object to
  /// any optimizer (call it on a new, unbound object, as Registry::validate_scheduler_options()
  /// does): every option against the schema, then, when they all pass, the rules between them
  /// (validate()). Returns every error found; empty when setup() would accept the options (its
  /// fit to an optimizer, checked by attach(), aside).
  std::vector<OptionError> check_options(const SchedulerInfo& info, const Options& options) const;

 protected:
  Scheduler() = default;

  /// Rules between options that the schema cannot express; throws OptionError naming `where`.
  virtual void validate(const Options& options, const std::string& where) const;
  /// Called by setup() after the base lrs are recorded and before the initial step: a
  /// scheduler that sets up the optimizer (onecycle's lrs and momentum) does it here.
  virtual void attach();
  /// The lr of every group for the step last_step() now names (0 for the initial step), from
  /// `current`, the lrs the optimizer holds now. Step-driven schedulers implement it.
  virtual std::vector<double> next_lr(const std::vector<double>& current);
  /// The lrs of step 0 computed from the base lrs alone, when a sequence switches to this
  /// scheduler (PyTorch's closed form at step 0). Defaults to next_lr(current).
  virtual std::vector<double> restart_lr(const std::vector<double>& current);
  /// The lr of every group after a step that observed `metric`. Metric-driven schedulers
  /// implement it.
  virtual std::vector<double> next_lr_on_metric(const std::vector<double>& current, double metric);

  /// The scheduler's own state entries (never named like the base's).
  virtual Options own_state() const;
  /// Checks the scheduler's own entries of `state` (which also holds the base's); throws
  /// StateDictError naming the key (check_domain() checks one entry's values).
  virtual void check_own_state(const Options& state) const;
  /// Takes the scheduler's own entries of a checked state.
  virtual void load_own_state(const Options& state);

  /// Each group's lr as the optimizer holds it now.
  std::vector<double> current_lr() const;
  /// Replaces the base lrs (a scheduler that defines its own starting lrs, in attach()).
  void set_base_lrs(std::vector<double> lrs);
  /// "scheduler 'NAME'", for messages.
  std::string who() const;
  /// Throws StateDictError naming the entry, its value and `domain` when the entry `key` of
  /// `state` (an int, a float, or each element of a list of floats) lies outside `domain`.
  void check_domain(const Options& state, const std::string& key, const Range& domain) const;

 private:
  friend class SequentialScheduler;
  friend class ChainedScheduler;
  /// Checks `lrs`, sets them in the optimizer and makes `step` the last step.
  void apply(const std::vector<double>& lrs, std::int64_t step);
  /// next_lr() and restart_lr() for a given step (a sequence moving its children).
  std::vector<double> next_lr_at(std::int64_t step);
  std::vector<double> restart_at(std::int64_t step);

  SchedulerInfo info_;
  Options options_;
  Optimizer* optimizer_ = nullptr;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  std::int64_t last_step_ = 0;
  /// A child of a sequence: its last step is -1 until its milestone starts it.
  bool in_sequence_ = false;
};

/// Deleter of schedulers made by a plugin: keeps the plugin library loaded while the object lives.
using SchedulerDeleter = LibraryDeleter<Scheduler>;
/// A scheduler that owns its plugin library's lifetime.
using SchedulerPtr = std::unique_ptr<Scheduler, SchedulerDeleter>;

/// The name of the core's sequencing scheduler.
inline constexpr char kSequentialScheduler[] = "sequential";

/// Runs `schedulers` one after another, switching to schedulers[i + 1] at step milestones[i]
/// (PyTorch's SequentialLR): at a milestone the next scheduler restarts at its step 0 from the
/// base lrs. Every scheduler must be step-driven, bound to `optimizer`, and attached while the
/// optimizer held the same lrs (its base lrs); milestones must be positive, strictly
/// increasing, one fewer than the schedulers. Throws UsageError naming what is wrong. The lrs
/// are reset to the base lrs and the first scheduler takes the initial step.
OPTREG_API SchedulerPtr make_sequential(Optimizer& optimizer, std::vector<SchedulerPtr> schedulers,
                             const std::vector<std::int64_t>& milestones);

/// Checks the milestones of a sequence of `count` schedulers as make_sequential() does
/// (positive, strictly increasing, one fewer than the schedulers); throws UsageError.
OPTREG_API void check_sequence(const std::vector<std::int64_t>& milestones, std::size_t count);

/// The schema `optreg list` shows for the core's sequential scheduler (its children are given
/// in a config's `schedulers` list, not as an option).
OPTREG_API std::shared_ptr<const Schema> sequential_schema();

/// The name of the core's chaining scheduler.
inline constexpr char kChainedScheduler[] = "chained";

/// Steps every one of `schedulers` at each step, in order, each from the lrs the one before it
/// set (PyTorch's ChainedScheduler): their factors multiply, a warm-up times a decay, say. Every
/// scheduler must be step-driven, bound to `optimizer`, attached while the optimizer held the
/// same lrs (its base lrs), and not a composite itself. Throws UsageError naming what is wrong.
/// The lrs are reset to the base lrs and each scheduler takes its initial step, in order.
OPTREG_API SchedulerPtr make_chained(Optimizer& optimizer, std::vector<SchedulerPtr> schedulers);

/// The schema `optreg list` shows for the core's chained scheduler: no option (its schedulers
/// are a config's `schedulers` list).
OPTREG_API std::shared_ptr<const Schema> chained_schema();

/// Whether `name` is one of the core's composite schedulers (sequential, chained).
inline bool is_composite_scheduler(const std::string& name) {
  return name == kSequentialScheduler || name == kChainedScheduler;
}

}  // namespace optreg
