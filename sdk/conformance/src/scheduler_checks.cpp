// The conformance kit's checks of learning-rate schedulers. Each scheduler of a file is made
// over a stand-in optimizer the kit owns, at options the kit chooses once per scheduler, and
// stepped as a training loop steps it; states, resumed runs and refusals are compared bit for
// bit. The core's sequential and chained, made of the file's step-driven schedulers, are checked
// the same way: the sequence is the one caller of their restart_lr(), and the chain steps each
// from the lrs the one before set.
#include "scheduler_checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/state_dict.hpp>

namespace optreg::kit {

namespace {

/// Steps of the runs the checks compare; the resume check saves after kSaveAt of them, early
/// enough that a warm-up of the default length (linear's 5 steps) goes on after the save.
constexpr int kSteps = 20;
constexpr int kSaveAt = 3;
/// Steps taken before a state is saved, refused or put at the top of its counts.
constexpr int kFewSteps = 5;
/// The base's step count in a scheduler's state (Scheduler::state()).
constexpr char kLastStep[] = "last_step";
/// What the details call the top of the count domain, kMaxCount.
constexpr char kTop[] = "9007199254740992 (2^53)";

// ---------------------------------------------------------------- the stand-in optimizer

/// The lr of each of the stand-in's two param groups.
const std::vector<double>& group_lrs() {
  static const std::vector<double> lrs = {0.1, 0.025};
  return lrs;
}

/// The optimizer every scheduler is checked over: momentum descent, with the float `lr` every
/// scheduler sets and the float `momentum` that a one-cycle schedule cycles. The kit owns it,
/// so a file of schedulers alone can be checked and no optimizer's faults show up as theirs.
class StandIn final : public Optimizer {
 protected:
  void update_group(const Options& o, const std::vector<Slot>& slots) override {
    const double lr = o.at("lr").as_float();
    const double momentum = o.at("momentum").as_float();
    for (const Slot& slot : slots) {
      float* p = slot.param->value().data();
      const float* g = slot.param->grad().data();
      float* buf = slot.state->tensor(0).data();
      for (std::size_t i = 0; i < slot.param->value().numel(); ++i) {
        buf[i] = static_cast<float>(momentum * buf[i] + g[i]);
        p[i] = static_cast<float>(p[i] - lr * buf[i]);
      }
    }
  }
};

OptimizerInfo stand_in_info() {
  static const auto schema = std::make_shared<const Schema>(std::vector<Hyperparameter>{
      {"lr", ValueType::Float, Value(group_lrs()[0]), Range{0.0, HUGE_VAL, false, true}, 0, {}, "learning rate"},
      {"momentum", ValueType::Float, Value(0.9), Range{0.0, 1.0, false, false}, 0, {}, "momentum factor"},
  });
  static const auto state = std::make_shared<const StateSchema>(
      StateSchema{{"momentum_buffer", StateKind::Tensor, false, false, "running sum of the gradients", std::nullopt}});
  return OptimizerInfo{"conformance_stand_in", "1.0.0", schema, state};
}

/// The metric a metric-driven scheduler sees at step `step` (1, 2, ...): 1, 1/2, then 1/3 at
/// every step, as a validation loss that stops falling.
double metric_at(std::int64_t step) { return 1.0 / static_cast<double>(std::clamp<std::int64_t>(step, 1, 3)); }

std::vector<double> lrs(const Optimizer& opt) {
  std::vector<double> out;
  for (const ParamGroup& g : opt.param_groups()) out.push_back(g.option("lr").as_float());
  return out;
}

/// The stand-in optimizer, the parameters it steps and the scheduler under check.
struct SchedRun {
  std::vector<Parameter> params;
  OptimizerPtr opt;
  SchedulerPtr sched;

  /// The scheduler's step, with the metric of the step it takes for a metric-driven one.
  void step_scheduler() {
    if (sched->needs_metric()) {
      sched->step(metric_at(sched->last_step() + 1));
    } else {
      sched->step();
    }
  }
  /// `n` optimizer steps on the gradient of 0.5 |x|^2, each followed by the scheduler's step.
  void steps(int n) {
    for (int i = 0; i < n; ++i) {
      for (Parameter& p : params) p.set_grad(p.value().clone());
      opt->step();
      step_scheduler();
    }
  }
};

/// A fresh stand-in optimizer over a matrix in param group 0 and a vector in param group 1, at
/// the lrs of group_lrs(); no scheduler yet.
SchedRun stand_in() {
  SchedRun r;
  r.params = {Parameter("weight", Tensor({3, 2}, {0.5F, -0.25F, 0.75F, -1.0F, 0.125F, 0.375F})),
              Parameter("bias", Tensor({3}, {-0.5F, 0.25F, 0.875F}))};
  r.opt = OptimizerPtr(new StandIn, OptimizerDeleter{});
  std::vector<ParamGroupSpec> groups(2);
  groups[0].params = {r.params[0]};
  groups[1].params = {r.params[1]};
  groups[1].options = {{"lr", group_lrs()[1]}};
  r.opt->setup(stand_in_info(), {{"lr", group_lrs()[0]}}, std::move(groups));
  return r;
}

/// What a scheduler holds and what it sets: its state and the options of every param group.
struct Held {
  Options state;
  std::vector<Options> groups;
};

Held held(const SchedRun& r) {
  Held h{r.sched->state(), {}};
  for (const ParamGroup& g : r.opt->param_groups()) h.groups.push_back(g.options());
  return h;
}

/// What differs between two Helds, or "".
std::string difference(const Held& a, const Held& b) {
  for (std::size_t g = 0; g < a.groups.size() && g < b.groups.size(); ++g) {
    if (auto d = diff(a.groups[g], b.groups[g]); !d.empty()) return "param group " + std::to_string(g) + ", " + d;
  }
  if (auto d = diff(a.state, b.state, "state entry"); !d.empty()) return "scheduler " + d;
  return {};
}

/// "a UsageError", "an OptionError", ...: what was thrown, for a message that says what was due.
std::string class_of(const std::exception& e) {
  if (dynamic_cast<const OptionError*>(&e) != nullptr) return "an OptionError";
  if (dynamic_cast<const UsageError*>(&e) != nullptr) return "a UsageError";
  if (dynamic_cast<const StateDictError*>(&e) != nullptr) return "a StateDictError";
  if (dynamic_cast<const CheckpointError*>(&e) != nullptr) return "a CheckpointError";
  if (dynamic_cast<const PluginError*>(&e) != nullptr) return "a PluginError";
  if (dynamic_cast<const Error*>(&e) != nullptr) return "an optreg::Error";
  return "an exception";
}

// ---------------------------------------------------------------- how each scheduler is made

/// Makes the scheduler under check over an optimizer.
using Maker = std::function<SchedulerPtr(Optimizer&)>;

/// What a run of kSteps steps of a scheduler showed.
struct Trial {
  bool made = false;
  /// Why it could not be made or stepped; empty when it ran every step.
  std::string error;
  /// What `error` was thrown as: an OptionError (only when it was not made), a UsageError.
  bool option_error = false;
  bool usage_error = false;
  std::vector<double> first;  // each group's lr after setup
  std::vector<double> last;   // and after the last step
  /// Whether any group's lr differed from its base lr at any point of the run.
  bool lr_changes = false;

  bool ran() const { return made && error.empty(); }
};

Trial trial(const Maker& make) {
  Trial t;
  SchedRun r = stand_in();
  try {
    r.sched = make(*r.opt);
  } catch (const std::exception& e) {
    t.option_error = dynamic_cast<const OptionError*>(&e) != nullptr;
    t.usage_error = dynamic_cast<const UsageError*>(&e) != nullptr;
    t.error = class_of(e) + ": " + e.what();
    return t;
  }
  t.made = true;
  t.first = lrs(*r.opt);
  t.lr_changes = t.first != group_lrs();
  for (int i = 1; i <= kSteps; ++i) {
    try {
      r.steps(1);
    } catch (const std::exception& e) {
      t.usage_error = dynamic_cast<const UsageError*>(&e) != nullptr;
      t.error = "step " + std::to_string(i) + " threw " + class_of(e) + ": " + e.what();
      return t;
    }
    t.lr_changes = t.lr_changes || lrs(*r.opt) != group_lrs();
  }
  t.last = lrs(*r.opt);
  return t;
}

/// How the checks make one scheduler, chosen once: the maker, what it makes it with, and what
/// its trial showed.
struct Recipe {
  /// Empty when nothing the kit tried makes a scheduler that runs kSteps steps.
  Maker make;
  /// What it is made with: "its defaults", "step_size = 4", the children of a sequence.
  std::string with;
  Trial shown;
  /// Set when the defaults alone fail otherwise than by an OptionError naming an option.
  std::string defaults_fault;
  /// What else the choice found, as a clause starting with "; ".
  std::string notes;
  /// Why no check can run on it (make is then empty).
  std::optional<Outcome> unavailable;
};

/// A value within `range` for a float option whose default of 0 means "not given".
std::optional<double> float_within(const Range& range) {
  const bool bounded = std::isfinite(range.lo) && std::isfinite(range.hi);
  for (const double x : {0.5, bounded ? (range.lo + range.hi) / 2 : range.lo + 1.0, range.hi - 1.0}) {
    if (range.contains(x)) return x;
  }
  return std::nullopt;
}

/// The value the kit gives `h` when its default is zero or empty, the convention for a required
/// option: `steps` for an int, [steps, 3 steps] for a list of any length, and (when `floats`)
/// 0.5 or another value in range for a float; nothing for other options.
std::optional<Value> filled(const Hyperparameter& h, std::int64_t steps, bool floats) {
  if (h.default_value.type() != h.type) return std::nullopt;
  switch (h.type) {
    case ValueType::Int:
      if (h.default_value.as_int() == 0 && h.range.contains_integer(steps)) return Value(steps);
      break;
    case ValueType::FloatList: {
      const std::vector<double> list = {static_cast<double>(steps), 3.0 * static_cast<double>(steps)};
      if (h.default_value.as_float_list().empty() && h.list_size == 0 && h.range.contains(list[0]) &&
          h.range.contains(list[1])) {
        return Value(list);
      }
      break;
    }
    case ValueType::Float:
      if (floats && h.default_value.as_float() == 0.0) {
        if (const auto x = float_within(h.range)) return Value(*x);
      }
      break;
    default: break;
  }
  return std::nullopt;
}

/// The options a scheduler is tried with, in order: its defaults; then its options whose
/// default is zero or empty set by filled(), counts and lists first (to 4 steps, then to
/// kSteps), then floats as well. Each set differs from those before it. With 4, a schedule of
/// periods or milestones changes the lr before the resume check's save and after it.
std::vector<Options> candidates(const Schema& schema) {
  std::vector<Options> out = {Options{}};
  for (const bool floats : {false, true}) {
    for (const std::int64_t steps : {std::int64_t{4}, std::int64_t{kSteps}}) {
      Options o;
      for (const Hyperparameter& h : schema.entries()) {
        if (auto v = filled(h, steps, floats)) o[h.name] = *v;
      }
      if (std::find(out.begin(), out.end(), o) == out.end()) out.push_back(std::move(o));
    }
  }
  return out;
}

std::string options_text(const Options& o) {
  if (o.empty()) return "its defaults";
  std::vector<std::string> items;
  for (const auto& [name, value] : o) items.push_back(name + " = " + value.to_string());
  return joined(items);
}

/// What the defaults' trial says beyond the choice: a fault when setup failed otherwise than by
/// an OptionError, or a step otherwise than by a UsageError (a schedule that ends refuses the
/// steps past its end with one); else a note when they were not chosen.
void judge_defaults(const Trial& t, Recipe& r) {
  if (!t.made && !t.option_error) {
    r.defaults_fault = "made with its defaults alone over the stand-in optimizer, it threw " + t.error +
                       "; its defaults must make it, or be refused by validate() with an OptionError naming a required "
                       "option left at its default";
  } else if (!t.ran() && t.made && !t.usage_error) {
    r.defaults_fault = "at its defaults over the stand-in optimizer " + t.error +
                       "; a schedule refuses a step it cannot take with a UsageError";
  } else if (!t.made) {
    r.notes = "; its defaults alone are refused with " + t.error;
  } else if (!t.ran()) {
    r.notes = "; at its defaults " + t.error;
  } else if (!t.lr_changes) {
    r.notes = "; at its defaults the lr does not change in " + std::to_string(kSteps) + " steps";
  }
}

/// The first candidate that makes a scheduler whose lr changes within kSteps steps, else the
/// first that runs them; unavailable (failed) when none does.
Recipe choose_options(const Registry& registry, const SchedulerDescriptor& d) {
  Recipe r;
  std::vector<std::string> tried;
  std::optional<std::pair<Options, Trial>> runs;
  for (const Options& o : candidates(*d.schema)) {
    const Maker make = [&registry, name = d.name, o](Optimizer& opt) { return registry.create_scheduler(name, opt, o); };
    Trial t = trial(make);
    if (o.empty()) judge_defaults(t, r);
    tried.push_back(options_text(o) + ": " + (t.ran() ? "the lr never changes" : t.error));
    if (!t.ran() || (runs && !t.lr_changes)) continue;
    runs = std::make_pair(o, std::move(t));
    if (runs->second.lr_changes) break;
  }
  if (!runs) {
    r.unavailable = failed("no options the kit tried make it run " + std::to_string(kSteps) +
                           " steps over the stand-in optimizer (" + joined(tried) + ")");
    return r;
  }
  r.with = options_text(runs->first);
  r.make = [&registry, name = d.name, o = runs->first](Optimizer& opt) { return registry.create_scheduler(name, opt, o); };
  r.shown = std::move(runs->second);
  return r;
}

/// One scheduler under check: its descriptor, how it is made (chosen at first use), and the
/// other schedulers checked with it.
struct Subject {
  SchedulerDescriptor descriptor;
  const TempDir& dir;
  std::function<Recipe()> choose;
  /// The other subjects of the file: their states are ones it must refuse.
  std::vector<const Subject*> others{};
  mutable std::optional<Recipe> chosen{};

  const std::string& name() const { return descriptor.name; }
  /// The recipe; the first call runs the trials that choose it.
  const Recipe& recipe() const {
    if (!chosen) chosen = choose();
    return *chosen;
  }
  /// Why no check can run on it, or null.
  const Outcome* unavailable() const { return recipe().unavailable ? &*recipe().unavailable : nullptr; }
  /// A fresh stand-in optimizer with the scheduler made over it, after `steps` steps.
  SchedRun run(int steps) const {
    const Recipe& r = recipe();
    if (!r.make) throw UsageError("scheduler '" + name() + "' cannot be made: " + r.unavailable->detail);
    SchedRun out = stand_in();
    out.sched = r.make(*out.opt);
    out.steps(steps);
    return out;
  }
};

/// The children of a composite over `opt`, each attached at the same lrs, as a config's
/// sequence or chain attaches them.
std::vector<SchedulerPtr> make_children(const std::vector<Maker>& makers, Optimizer& opt) {
  const std::vector<double> base = lrs(opt);
  std::vector<SchedulerPtr> made;
  for (const Maker& m : makers) {
    for (std::size_t g = 0; g < base.size(); ++g) opt.set_option(g, "lr", Value(base[g]));
    made.push_back(m(opt));
  }
  return made;
}

/// The core's sequential (or, `chained`, chained) of `children`, each made as its own checks
/// make it. A sequence switches at evenly spaced milestones within kSteps steps (one child is
/// run twice, so that a switch happens); a chain steps every child at every step. A child that
/// sets base lrs of its own cannot share either and is left out.
Recipe choose_composite(const std::vector<const Subject*>& children, bool chained) {
  std::vector<Maker> makers;
  std::vector<std::string> names;
  std::vector<std::string> left_out;
  for (const Subject* c : children) {
    const Recipe& cr = c->recipe();
    if (!cr.make) {
      left_out.push_back(c->name() + " (the kit cannot run it)");
      continue;
    }
    SchedRun t = stand_in();
    try {
      t.sched = cr.make(*t.opt);
    } catch (const std::exception& e) {
      left_out.push_back(c->name() + " (made again, it threw " + class_of(e) + ": " + e.what() + ")");
      continue;
    }
    if (t.sched->base_lrs() != group_lrs()) {
      left_out.push_back(c->name() + " (it sets base lrs of its own)");
      continue;
    }
    makers.push_back(cr.make);
    names.push_back(c->name() + " at " + cr.with);
  }
  Recipe r;
  const std::string what = chained ? "chain" : "sequence";
  r.notes = left_out.empty() ? std::string() : "; left out of the " + what + ": " + joined(left_out);
  if (makers.empty()) {
    r.unavailable = skipped("no step-driven scheduler of the file can be made at the stand-in optimizer's lrs" + r.notes);
    return r;
  }
  if (chained) {
    const Maker make = [makers](Optimizer& opt) { return make_chained(opt, make_children(makers, opt)); };
    r.with = joined(names) + ", chained";
    r.shown = trial(make);
    if (!r.shown.ran()) {
      r.unavailable = failed("the chain of " + r.with + ": " + r.shown.error);
      return r;
    }
    r.make = make;
    return r;
  }
  if (makers.size() == 1) {
    makers.push_back(makers.front());
    names.push_back(names.front());
  }
  std::vector<std::int64_t> milestones;
  const auto spacing = static_cast<std::int64_t>(std::max<std::size_t>(1, kSteps / makers.size()));
  for (std::size_t i = 1; i < makers.size(); ++i) milestones.push_back(static_cast<std::int64_t>(i) * spacing);
  const Maker make = [makers, milestones](Optimizer& opt) {
    return make_sequential(opt, make_children(makers, opt), milestones);
  };
  std::vector<std::string> at;
  for (const std::int64_t m : milestones) at.push_back(std::to_string(m));
  r.with = joined(names) + ", switching at steps " + joined(at);
  r.shown = trial(make);
  if (!r.shown.ran()) {
    r.unavailable = failed("the sequence of " + r.with + ": " + r.shown.error);
    return r;
  }
  r.make = make;
  return r;
}

// ---------------------------------------------------------------- the checks

/// A scheduler's schema: names, meanings, no name twice, every default valid for its own declaration.
Outcome check_descriptor(const Subject& s) {
  const SchedulerDescriptor& d = s.descriptor;
  std::vector<std::string> names;
  std::set<std::string> seen;
  if (auto fault = schema_fault(d.schema.get(), names, seen)) return failed(*fault);
  for (const Hyperparameter& h : d.schema->entries()) {
    try {
      (void)d.schema->check(h.name, h.default_value, "default");
    } catch (const std::exception& e) {
      return failed(std::string("the default of '") + h.name + "' is refused by its own declaration: " + e.what());
    }
  }
  return passed("plugin " + d.plugin_name + " " + d.plugin_version + ", stepped " +
                (d.needs_metric ? "with a metric" : "per optimizer step") + ": " +
                count(names.size(), "hyperparameter", "hyperparameters") + " (" + (names.empty() ? "none" : joined(names)) +
                "), every default valid");
}

Outcome check_defaults(const Subject& s) {
  if (!s.descriptor.schema) return failed("the registry holds no hyperparameter schema for it");
  const Outcome schema = check_schema_defaults(*s.descriptor.schema);
  if (schema.status != Status::Passed) return schema;
  const Recipe& r = s.recipe();
  if (!r.defaults_fault.empty()) return failed(r.defaults_fault);
  if (r.unavailable) return *r.unavailable;
  const std::string metric = s.descriptor.needs_metric ? " with a metric of 1, 1/2, then 1/3 at every step" : "";
  return passed(schema.detail + "; made with " + r.with + " over the stand-in optimizer (2 param groups at lrs " +
                Value(group_lrs()).to_string() + ") and stepped " + std::to_string(kSteps) + " times" + metric + ": lrs " +
                Value(r.shown.first).to_string() + " after setup, " + Value(r.shown.last).to_string() + " at the end" +
                (r.shown.lr_changes ? "" : " (the lr never changed)") + r.notes);
}

Outcome check_round_trip(const Subject& s) {
  if (const Outcome* u = s.unavailable()) return *u;
  SchedRun a = s.run(kFewSteps);
  const Held saved = held(a);
  SchedRun fresh = s.run(0);
  fresh.sched->load_state(saved.state);
  if (auto d = diff(fresh.sched->state(), saved.state, "state entry"); !d.empty()) {
    return failed("after load_state() into a fresh scheduler its state differs: " + d + " (loaded vs saved)");
  }
  const std::string path = s.dir.file(s.name() + "-scheduler-state.ckpt");
  RemoveOnExit remove(path);
  save_optimizer(path, *a.opt, *a.sched);
  const Checkpoint back = read_checkpoint(path);
  if (!back.scheduler || back.scheduler->scheduler != s.name()) {
    return failed("the checkpoint file save_optimizer() wrote with the scheduler holds " +
                  (back.scheduler ? "the state of scheduler '" + back.scheduler->scheduler + "'" : "no scheduler state"));
  }
  if (auto d = diff(back.scheduler->state, saved.state, "state entry"); !d.empty()) {
    return failed("the scheduler state read back from the checkpoint file differs: " + d + " (read vs saved)");
  }
  SchedRun loaded = s.run(0);
  load_optimizer(path, *loaded.opt, *loaded.sched);
  if (auto d = difference(held(loaded), saved); !d.empty()) {
    return failed("after load_optimizer() from the checkpoint file a fresh optimizer and scheduler differ from those "
                  "saved: " + d + " (loaded vs saved)");
  }
  std::vector<std::string> entries;
  for (const auto& entry : saved.state) entries.push_back(entry.first);
  const std::string listed = entries.size() <= 8 ? ": " + joined(entries) : "";
  return passed("its state after " + std::to_string(kFewSteps) + " steps (" +
                count(entries.size(), "entry", "entries") + listed + ") came back bit for bit through load_state() into a fresh scheduler, and with the optimizer's state "
                "and both param groups' lrs through a checkpoint file (save_optimizer(), load_optimizer())");
}

Outcome check_resume(const Subject& s) {
  if (const Outcome* u = s.unavailable()) return *u;
  const std::string path = s.dir.file(s.name() + "-scheduler-resume.ckpt");
  RemoveOnExit remove(path);
  SchedRun straight = s.run(kSaveAt);
  save_optimizer(path, *straight.opt, *straight.sched);
  const std::vector<double> at_save = lrs(*straight.opt);
  std::vector<Held> expected;
  for (int k = kSaveAt + 1; k <= kSteps; ++k) {
    straight.steps(1);
    expected.push_back(held(straight));
  }
  SchedRun resumed = s.run(0);
  load_optimizer(path, *resumed.opt, *resumed.sched);
  for (int k = kSaveAt + 1; k <= kSteps; ++k) {
    resumed.steps(1);
    if (auto d = difference(held(resumed), expected[static_cast<std::size_t>(k - kSaveAt - 1)]); !d.empty()) {
      return failed(std::to_string(kSaveAt) + " steps, save_optimizer(), load_optimizer() into a fresh optimizer and "
                    "scheduler and " + std::to_string(k - kSaveAt) + " more " + (k - kSaveAt == 1 ? "step" : "steps") + " differ from " + std::to_string(k) +
                    " uninterrupted steps: " + d + " (resumed vs uninterrupted)");
    }
  }
  const std::vector<double> end = lrs(*straight.opt);
  return passed(std::to_string(kSaveAt) + " + " + std::to_string(kSteps - kSaveAt) +
                " steps resumed from a checkpoint file equal " + std::to_string(kSteps) +
                " uninterrupted steps bit for bit: the scheduler's state and every option of both param groups at each "
                "step after the resume (lrs " + Value(at_save).to_string() + " -> " + Value(end).to_string() + ")" +
                (end == at_save ? " (the lrs did not change after the save at these options)" : ""));
}

/// "" when `load` is refused with an exception of class E (whose message goes to `message`)
/// and leaves `target` as `before` shows it; else what went wrong. `call` names what `load`
/// calls, `what` the state it loads.
template <typename E, typename F>
std::string refusal_fault(const SchedRun& target, const Held& before, F&& load, const std::string& call,
                          const std::string& what, std::string& message) {
  try {
    load();
  } catch (const E& e) {
    if (auto d = difference(held(target), before); !d.empty()) {
      return call + " refused " + what + " but changed the scheduler or the optimizer: " + d + " (after vs before)";
    }
    message = e.what();
    return {};
  } catch (const std::exception& e) {
    return call + " of " + what + " threw " + class_of(e) + ": " + e.what();
  }
  return call + " accepted " + what;
}

/// Another type than `v`'s, for a state entry that does not fit.
Value another_type(const Value& v) { return v.type() == ValueType::String ? Value(1.5) : Value("text"); }

/// States of the scheduler's own shape with entries that do not fit, each with what it is:
/// every entry left out, every entry of another type, and one unknown entry.
std::vector<std::pair<std::string, Options>> mismatched(const Options& own) {
  std::vector<std::pair<std::string, Options>> out;
  for (const auto& [key, value] : own) {
    Options without = own;
    without.erase(key);
    out.emplace_back("its state without the entry '" + key + "'", std::move(without));
    Options retyped = own;
    retyped[key] = another_type(value);
    out.emplace_back("its state with the entry '" + key + "' of another type", std::move(retyped));
  }
  Options unknown = own;
  unknown["conformance_unknown_entry"] = Value(1);
  out.emplace_back("its state with the unknown entry 'conformance_unknown_entry'", std::move(unknown));
  return out;
}

/// Whether two states hold the same entries with the same types: load_state() cannot tell them apart.
bool same_entries(const Options& a, const Options& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
           return x.first == y.first && x.second.type() == y.second.type();
         });
}

/// What the refusal check refused, for its detail.
struct Refused {
  std::size_t own = 0;
  std::vector<std::string> other_entries;  // donors refused by load_state()
  std::vector<std::string> same_entries;   // donors refused by load_optimizer() on the name
  std::vector<std::string> not_run;
  std::string example;
};

/// Loads the state of every other scheduler of the file into `target`: "" when each is refused
/// and changes nothing, else what went wrong.
std::string refuse_donors(const Subject& s, SchedRun& target, const Held& before, Refused& refused) {
  for (const Subject* o : s.others) {
    std::optional<SchedRun> donor;
    try {
      if (o->unavailable() == nullptr) donor = o->run(kFewSteps);
    } catch (const std::exception&) {
      donor.reset();  // its own checks say why
    }
    if (!donor) {
      refused.not_run.push_back(o->name());
      continue;
    }
    const Options state = donor->sched->state();
    std::string message;
    if (!same_entries(state, before.state)) {
      const auto load = [&] { target.sched->load_state(state); };
      const std::string what = "the state of scheduler '" + o->name() + "'";
      if (auto f = refusal_fault<StateDictError>(target, before, load, "load_state()", what, message); !f.empty()) return f;
      refused.other_entries.push_back(o->name());
      continue;
    }
    const std::string path = s.dir.file(s.name() + "-refusal.ckpt");
    RemoveOnExit remove(path);
    save_optimizer(path, *donor->opt, *donor->sched);
    const auto load = [&] { load_optimizer(path, *target.opt, *target.sched); };
    const std::string what = "a checkpoint file with the state of scheduler '" + o->name() + "'";
    if (auto f = refusal_fault<CheckpointError>(target, before, load, "load_optimizer()", what, message); !f.empty()) return f;
    refused.same_entries.push_back(o->name());
  }
  return {};
}

Outcome check_refusals(const Subject& s) {
  if (const Outcome* u = s.unavailable()) return *u;
  SchedRun target = s.run(kFewSteps);
  const Held before = held(target);
  Refused refused;
  for (const auto& [what, state] : mismatched(before.state)) {
    std::string message;
    const auto load = [&, &state = state] { target.sched->load_state(state); };
    if (auto f = refusal_fault<StateDictError>(target, before, load, "load_state()", what, message); !f.empty()) {
      return failed(f);
    }
    if (refused.example.empty()) refused.example = message;
    ++refused.own;
  }
  if (auto f = refuse_donors(s, target, before, refused); !f.empty()) return failed(f);
  std::string detail = "load_state() refused with a StateDictError " +
                       count(refused.own, "state of its own", "states of its own") +
                       " with an entry left out, of another type or unknown";
  if (!refused.other_entries.empty()) detail += ", and the states of " + joined(refused.other_entries);
  detail += ", e.g. \"" + refused.example + "\"";
  if (!refused.same_entries.empty()) {
    detail += "; load_optimizer() refused with a CheckpointError the checkpoints of " + joined(refused.same_entries) +
              ", whose states hold the same entries (only the name a checkpoint records tells them apart)";
  }
  if (!refused.not_run.empty()) detail += "; not compared, since they cannot be run: " + joined(refused.not_run);
  return passed(detail + "; each left the scheduler and the optimizer's options unchanged");
}

/// What a step did from a state whose count `key` was put at the top of the count domain.
enum class AtTop { NotACount, Refused, Stayed };

/// Loads `state` with entry `key` at kMaxCount into `r`'s scheduler and takes a step: "" when
/// the load is refused (NotACount: the entry's domain ends lower), the step is refused with a
/// UsageError that changes nothing (Refused), or it leaves a state that the scheduler's own
/// check_state() accepts (Stayed); else what went wrong. A refusal's message goes to `message`.
std::string step_from_top(SchedRun& r, const Options& state, const std::string& key, AtTop& result, std::string& message) {
  Options top = state;
  top[key] = Value(kMaxCount);
  try {
    r.sched->load_state(top);
  } catch (const StateDictError& e) {
    result = AtTop::NotACount;
    message = e.what();
    return {};
  }
  const Held before = held(r);
  const std::string from = "state entry '" + key + "' = " + kTop;
  try {
    r.step_scheduler();
  } catch (const UsageError& e) {
    if (auto d = difference(held(r), before); !d.empty()) return "step() refused from " + from + " but changed: " + d + " (after vs before)";
    result = AtTop::Refused;
    message = e.what();
    return {};
  } catch (const std::exception& e) {
    return "step() from " + from + " threw " + class_of(e) + ", not a UsageError: " + e.what();
  }
  try {
    r.sched->check_state(r.sched->state());
  } catch (const StateDictError& e) {
    return "step() from " + from + ", the top of the count domain, left a state that its own load_state() refuses: " +
           e.what() + "; advance a count with optreg::next_count(), which refuses the step at the top";
  }
  result = AtTop::Stayed;
  return {};
}

Outcome check_counts(const Subject& s) {
  if (const Outcome* u = s.unavailable()) return *u;
  SchedRun r = s.run(kFewSteps);
  const Options state = r.sched->state();
  AtTop result = AtTop::NotACount;
  std::string refusal;
  if (auto f = step_from_top(r, state, kLastStep, result, refusal); !f.empty()) return failed(f);
  if (result == AtTop::NotACount) return failed(std::string("a state with last_step = ") + kTop + " is refused: " + refusal);
  if (result == AtTop::Stayed) return failed(std::string("step() from last_step = ") + kTop + " was taken");
  std::vector<std::string> refused, stayed, not_counts;
  for (const auto& [key, value] : state) {
    if (key == kLastStep || value.type() != ValueType::Int) continue;
    r.sched->load_state(state);
    std::string message;
    if (auto f = step_from_top(r, state, key, result, message); !f.empty()) return failed(f);
    (result == AtTop::Refused ? refused : result == AtTop::Stayed ? stayed : not_counts).push_back(key);
  }
  std::string own;
  if (!refused.empty()) own += "; from " + joined(refused) + " at the top, step() was refused";
  if (!stayed.empty()) own += "; from " + joined(stayed) + " at the top, step() left a state it accepts";
  if (!not_counts.empty()) own += "; " + joined(not_counts) + " cannot be loaded at the top (a smaller domain)";
  return passed(std::string("step() from last_step = ") + kTop + " refused with a UsageError and changed nothing: \"" +
                refusal + "\"" + (own.empty() ? "; it keeps no count of its own" : own));
}

constexpr Check<Subject> kSchedulerChecks[] = {
    {"scheduler_descriptor_valid", &check_descriptor},
    {"scheduler_defaults_accepted", &check_defaults},
    {"scheduler_state_round_trips_through_a_checkpoint_file", &check_round_trip},
    {"scheduler_resumed_run_is_bit_exact", &check_resume},
    {"scheduler_load_state_refuses_other_states", &check_refusals},
    {"scheduler_counts_stop_at_the_top_of_their_domain", &check_counts},
};

}  // namespace

void check_schedulers(const Registry& registry, const std::vector<SchedulerDescriptor>& schedulers, const TempDir& dir,
                      Reporter& report) {
  std::vector<Subject> subjects;
  subjects.reserve(schedulers.size() + 2);  // no reallocation: the subjects point at each other
  for (const SchedulerDescriptor& d : schedulers) {
    subjects.push_back(Subject{d, dir, [&registry, d] { return choose_options(registry, d); }});
  }
  std::vector<const Subject*> step_driven;
  for (const Subject& s : subjects) {
    if (!s.descriptor.needs_metric) step_driven.push_back(&s);
  }
  if (!step_driven.empty()) {
    if (auto sequential = registry.find_scheduler(kSequentialScheduler)) {
      subjects.push_back(Subject{*sequential, dir, [step_driven] { return choose_composite(step_driven, false); }});
    }
    if (auto chain = registry.find_scheduler(kChainedScheduler)) {
      subjects.push_back(Subject{*chain, dir, [step_driven] { return choose_composite(step_driven, true); }});
    }
  }
  for (Subject& s : subjects) {
    for (const Subject& o : subjects) {
      if (&o != &s) s.others.push_back(&o);
    }
  }
  for (const Subject& s : subjects) report.run_table(s, s.name(), ConformanceResult::Kind::Scheduler, kSchedulerChecks);
}

}  // namespace optreg::kit
