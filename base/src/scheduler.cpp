// The Scheduler base (binding, counting, checks, state) and the core's sequential and chained
// schedulers.
#include <optreg/scheduler.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include <optreg/error.hpp>
#include <optreg/plugin_call.hpp>
#include <optreg/text.hpp>
#include <optreg/version.hpp>

namespace optreg {

namespace {

constexpr char kLastStep[] = "last_step";
constexpr char kBaseLrs[] = "base_lrs";
constexpr char kLastLr[] = "last_lr";

bool is_base_key(const std::string& key) { return key == kLastStep || key == kBaseLrs || key == kLastLr; }

std::string a_type(ValueType t) { return std::string(t == ValueType::Int ? "an " : "a ") + to_string(t); }

/// Runs `f`, the call `call` into the code of the scheduler `info` names, through call_plugin().
template <typename F>
decltype(auto) plugin(const SchedulerInfo& info, const char* call, F&& f) {
  return call_plugin("scheduler", info.name, info.source, call, std::forward<F>(f));
}

}  // namespace

Scheduler::~Scheduler() = default;

Optimizer& Scheduler::optimizer() const {
  if (optimizer_ == nullptr) throw UsageError("the scheduler is not set up: it is bound to no optimizer");
  return *optimizer_;
}

std::string Scheduler::who() const { return "scheduler '" + info_.name + "'"; }

void Scheduler::setup(SchedulerInfo info, Optimizer& optimizer, const Options& options) {
  if (optimizer_ != nullptr) throw UsageError("scheduler '" + info.name + "' is already set up");
  const Hyperparameter* lr = optimizer.schema().find("lr");
  if (!is_composite(optimizer) && (lr == nullptr || lr->type != ValueType::Float)) {
    throw UsageError("scheduler '" + info.name + "' sets the option 'lr', but optimizer '" + optimizer.name() +
                     "' has no float option 'lr'");
  }
  if (optimizer.param_groups().empty()) {
    throw UsageError("scheduler '" + info.name + "' needs an optimizer with at least one param group");
  }
  for (std::size_t g = 0; g < optimizer.param_groups().size(); ++g) {  // a composite's groups each
    lr = optimizer.group_schema(g).find("lr");
    if (lr == nullptr || lr->type != ValueType::Float) {
      throw UsageError("scheduler '" + info.name + "' sets the option 'lr', but param group " + std::to_string(g) +
                       " of optimizer '" + optimizer.name() + "' (optimizer '" +
                       optimizer.param_groups()[g].option("optimizer").as_string() + "') has no float option 'lr'");
    }
  }
  const std::string where = "scheduler '" + info.name + "'";
  Options resolved = info.schema->resolve(info.schema->defaults(), options, where);
  plugin(info, "validate()", [&] { validate(resolved, where); });
  info_ = std::move(info);
  options_ = std::move(resolved);
  optimizer_ = &optimizer;
  base_lrs_ = current_lr();
  last_lr_ = base_lrs_;
  last_step_ = 0;
  plugin(info_, "attach()", [&] { attach(); });
  if (!info_.needs_metric) apply(plugin(info_, "next_lr()", [&] { return next_lr(current_lr()); }), 0);
}

std::vector<OptionError> Scheduler::check_options(const SchedulerInfo& info, const Options& options) const {
  if (!info.schema) throw UsageError("Scheduler::check_options needs a schema");
  const std::string where = "scheduler '" + info.name + "'";
  std::vector<OptionError> errors;
  Options resolved = info.schema->defaults();
  for (const auto& [name, value] : options) {
    try {
      resolved[name] = info.schema->check(name, value, where);
    } catch (const OptionError& e) {
      errors.push_back(e);
    }
  }
  if (!errors.empty()) return errors;
  try {
    plugin(info, "validate()", [&] { validate(resolved, where); });
  } catch (const OptionError& e) {
    errors.push_back(e);
  }
  return errors;
}

void Scheduler::validate(const Options& /*options*/, const std::string& /*where*/) const {}
void Scheduler::attach() {}

std::vector<double> Scheduler::next_lr(const std::vector<double>& /*current*/) {
  throw UsageError(who() + " is driven by a metric: call step(metric)");
}
std::vector<double> Scheduler::restart_lr(const std::vector<double>& current) { return next_lr(current); }
std::vector<double> Scheduler::next_lr_on_metric(const std::vector<double>& /*current*/, double /*metric*/) {
  throw UsageError(who() + " is driven by steps, not by a metric: call step() without a metric");
}

std::vector<double> Scheduler::current_lr() const {
  std::vector<double> out;
  for (const auto& g : optimizer().param_groups()) out.push_back(g.option("lr").as_float());
  return out;
}

void Scheduler::set_base_lrs(std::vector<double> lrs) {
  if (lrs.size() != optimizer().param_groups().size()) {
    throw UsageError(who() + ": " + std::to_string(lrs.size()) + " base lrs for " +
                     std::to_string(optimizer().param_groups().size()) + " param groups");
  }
  base_lrs_ = std::move(lrs);
}

void Scheduler::apply(const std::vector<double>& lrs, std::int64_t step) {
  Optimizer& opt = optimizer();
  if (lrs.size() != opt.param_groups().size()) {
    throw UsageError(who() + " computed " + std::to_string(lrs.size()) + " lrs for " +
                     std::to_string(opt.param_groups().size()) + " param groups");
  }
  for (std::size_t g = 0; g < lrs.size(); ++g) {
    if (!std::isfinite(lrs[g]) || lrs[g] < 0) {
      throw UsageError(who() + " computed lr = " + Value(lrs[g]).to_string() + " for param group " + std::to_string(g) +
                       " at step " + std::to_string(step) + "; an lr must be finite and non-negative");
    }
  }
  for (std::size_t g = 0; g < lrs.size(); ++g) opt.set_option(g, "lr", Value(lrs[g]));
  last_step_ = step;
  last_lr_ = current_lr();
}

void Scheduler::step() {
  if (info_.needs_metric) throw UsageError(who() + " is driven by a metric: call step(metric)");
  const std::int64_t saved = last_step_;
  const std::int64_t next = next_count(saved, who(), kLastStep);
  last_step_ = next;  // next_lr() reads the step it computes
  try {
    apply(plugin(info_, "next_lr()", [&] { return next_lr(current_lr()); }), next);
  } catch (...) {
    last_step_ = saved;
    throw;
  }
}

void Scheduler::step(double metric) {
  if (!info_.needs_metric) throw UsageError(who() + " is driven by steps, not by a metric: call step() without a metric");
  const std::int64_t saved = last_step_;
  const std::int64_t next = next_count(saved, who(), kLastStep);
  last_step_ = next;
  try {
    apply(plugin(info_, "next_lr_on_metric()", [&] { return next_lr_on_metric(current_lr(), metric); }), next);
  } catch (...) {
    last_step_ = saved;
    throw;
  }
}

void Scheduler::check_domain(const Options& state, const std::string& key, const Range& domain) const {
  const Value& v = state.at(key);
  const auto outside = [&](const std::string& what, ValueType type) {
    throw StateDictError(who() + ": state entry '" + key + "'" + what + " is outside its domain " + domain.to_string(type));
  };
  switch (v.type()) {
    case ValueType::Int:
      if (!domain.contains_integer(v.as_int())) outside(" = " + v.to_string(), ValueType::Int);
      break;
    case ValueType::Float:
      if (!domain.contains(v.as_float())) outside(" = " + v.to_string(), ValueType::Float);
      break;
    case ValueType::FloatList: {
      const auto& l = v.as_float_list();
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (!domain.contains(l[i])) outside(", element " + std::to_string(i) + " = " + Value(l[i]).to_string(), ValueType::Float);
      }
      break;
    }
    default: break;
  }
}

Options Scheduler::own_state() const { return {}; }

void Scheduler::check_own_state(const Options& state) const {
  for (const auto& [key, like] : own_state()) {
    const auto it = state.find(key);
    if (it == state.end()) throw StateDictError(who() + ": the state lacks the entry '" + key + "'");
    if (it->second.type() != like.type()) {
      throw StateDictError(who() + ": state entry '" + key + "' is " + a_type(it->second.type()) + ", expected " +
                           a_type(like.type()));
    }
  }
}

void Scheduler::load_own_state(const Options& /*state*/) {}

Options Scheduler::state() const {
  Options out = plugin(info_, "own_state()", [&] { return own_state(); });
  for (const auto& [key, value] : out) {
    if (is_base_key(key)) throw UsageError(who() + " names an entry of its own state '" + key + "', a name the base keeps");
  }
  out[kLastStep] = Value(last_step_);
  out[kBaseLrs] = Value(base_lrs_);
  out[kLastLr] = Value(last_lr_);
  return out;
}

void Scheduler::check_state(const Options& state) const {
  const std::size_t groups = optimizer().param_groups().size();
  const auto need = [&](const char* key, ValueType type) -> const Value& {
    const auto it = state.find(key);
    if (it == state.end()) throw StateDictError(who() + ": the state lacks the entry '" + std::string(key) + "'");
    if (it->second.type() != type) {
      throw StateDictError(who() + ": state entry '" + key + "' is " + a_type(it->second.type()) + ", expected " +
                           a_type(type));
    }
    return it->second;
  };
  need(kLastStep, ValueType::Int);
  // -1: a sequence's child that its milestone has not started yet.
  check_domain(state, kLastStep, in_sequence_ ? Range{-1.0, kCountDomain.hi, false, false} : kCountDomain);
  for (const char* key : {kBaseLrs, kLastLr}) {
    const auto& l = need(key, ValueType::FloatList).as_float_list();
    if (l.size() != groups) {
      throw StateDictError(who() + ": state entry '" + key + "' holds " + std::to_string(l.size()) +
                           " lrs, but the optimizer has " + std::to_string(groups) + " param groups");
    }
    for (double x : l) {
      if (!std::isfinite(x) || x < 0) {
        throw StateDictError(who() + ": state entry '" + key + "' holds lr = " + Value(x).to_string() +
                             "; an lr must be finite and non-negative");
      }
    }
  }
  plugin(info_, "check_own_state()", [&] { check_own_state(state); });
  const Options own = plugin(info_, "own_state()", [&] { return own_state(); });
  for (const auto& [key, value] : state) {
    if (!is_base_key(key) && own.count(key) == 0) {
      std::vector<std::string> known = {kBaseLrs, kLastLr, kLastStep};
      for (const auto& [k, v] : own) known.push_back(k);
      const auto near = closest_names(key, known);
      throw StateDictError(who() + ": unknown state entry " + quoted_name(key) +
                           (near.empty() ? std::string() : " (did you mean '" + near.front() + "'?)"));
    }
  }
}

void Scheduler::load_state(const Options& state) {
  check_state(state);
  plugin(info_, "load_own_state()", [&] { load_own_state(state); });
  last_step_ = state.at(kLastStep).as_int();
  base_lrs_ = state.at(kBaseLrs).as_float_list();
  last_lr_ = state.at(kLastLr).as_float_list();
}

// ------------------------------------------------------------------ sequential

std::shared_ptr<const Schema> sequential_schema() {
  static const auto schema = std::make_shared<const Schema>(std::vector<Hyperparameter>{
      Hyperparameter{"milestones", ValueType::FloatList, Value(std::vector<double>{}),
                     Range{1, kCountDomain.hi, false, false}, 0, {},
                     "steps at which the next scheduler takes over (one fewer than the schedulers)"},
  });
  return schema;
}

std::shared_ptr<const Schema> chained_schema() {
  static const auto schema = std::make_shared<const Schema>(std::vector<Hyperparameter>{});
  return schema;
}

/// A scheduler made of others (sequential, chained): its state holds each child's, under
/// "schedulers.I.", with the child's name.
class CompositeScheduler : public Scheduler {
 protected:
  explicit CompositeScheduler(std::vector<SchedulerPtr> children) : children_(std::move(children)) {}

  Options own_state() const override {
    Options out;
    for (std::size_t i = 0; i < children_.size(); ++i) {
      const std::string prefix = "schedulers." + std::to_string(i) + ".";
      out[prefix + "name"] = Value(children_[i]->name());
      for (auto& [k, v] : children_[i]->state()) out[prefix + k] = v;
    }
    return out;
  }

  void check_own_state(const Options& state) const override {
    Scheduler::check_own_state(state);
    for (std::size_t i = 0; i < children_.size(); ++i) {
      const std::string prefix = "schedulers." + std::to_string(i) + ".";
      const std::string& saved = state.at(prefix + "name").as_string();
      if (saved != children_[i]->name()) {
        throw StateDictError(who() + ": state entry '" + prefix + "name' is " + quoted_name(saved) + ", but schedulers[" +
                             std::to_string(i) + "] is '" + children_[i]->name() + "'");
      }
      try {
        children_[i]->check_state(child_state(state, i));
      } catch (const StateDictError& e) {
        throw StateDictError(who() + ", schedulers[" + std::to_string(i) + "]: " + e.what());
      }
    }
  }

  void load_own_state(const Options& state) override {
    for (std::size_t i = 0; i < children_.size(); ++i) children_[i]->load_state(child_state(state, i));
  }

  std::vector<SchedulerPtr> children_;

 private:
  static Options child_state(const Options& state, std::size_t i) {
    const std::string prefix = "schedulers." + std::to_string(i) + ".";
    Options out;
    for (const auto& [k, v] : state) {
      if (k.rfind(prefix, 0) == 0 && k != prefix + "name") out[k.substr(prefix.size())] = v;
    }
    return out;
  }
};

/// PyTorch's SequentialLR: the scheduler whose interval holds the step is stepped; at a
/// milestone the next one restarts at its step 0.
class SequentialScheduler final : public CompositeScheduler {
 public:
  SequentialScheduler(Optimizer& optimizer, std::vector<SchedulerPtr> children, std::vector<std::int64_t> milestones)
      : CompositeScheduler(std::move(children)), milestones_(std::move(milestones)) {
    std::vector<double> m(milestones_.begin(), milestones_.end());
    info_ = SchedulerInfo{kSequentialScheduler, OPTREG_VERSION, sequential_schema(), false};
    options_ = {{"milestones", Value(std::move(m))}};
    optimizer_ = &optimizer;
    base_lrs_ = children_.front()->base_lrs();
    // Back to the base lrs, every child before its first step, then the first one's initial step.
    for (std::size_t g = 0; g < base_lrs_.size(); ++g) optimizer.set_option(g, "lr", Value(base_lrs_[g]));
    for (auto& c : children_) {
      c->last_step_ = -1;
      c->in_sequence_ = true;
    }
    Scheduler& first = *children_.front();
    first.apply(first.next_lr_at(0), 0);
    last_step_ = 0;
    last_lr_ = current_lr();
  }

 protected:
  std::vector<double> next_lr(const std::vector<double>& /*current*/) override {
    const std::int64_t step = last_step();
    const auto idx = static_cast<std::size_t>(std::upper_bound(milestones_.begin(), milestones_.end(), step) -
                                              milestones_.begin());
    Scheduler& child = *children_[idx];
    if (idx > 0 && milestones_[idx - 1] == step) {
      child.apply(child.restart_at(0), 0);
    } else {
      child.step();
    }
    return child.last_lr();
  }

 private:
  std::vector<std::int64_t> milestones_;
};

/// PyTorch's ChainedScheduler: every child steps at every step, in order, each from the lrs the
/// one before it set.
class ChainedScheduler final : public CompositeScheduler {
 public:
  ChainedScheduler(Optimizer& optimizer, std::vector<SchedulerPtr> children) : CompositeScheduler(std::move(children)) {
    info_ = SchedulerInfo{kChainedScheduler, OPTREG_VERSION, chained_schema(), false};
    optimizer_ = &optimizer;
    base_lrs_ = children_.front()->base_lrs();
    // Back to the base lrs, then every child's initial step in order, as PyTorch's children
    // take theirs when they are made one after another.
    for (std::size_t g = 0; g < base_lrs_.size(); ++g) optimizer.set_option(g, "lr", Value(base_lrs_[g]));
    for (auto& c : children_) c->apply(c->next_lr_at(0), 0);
    last_step_ = 0;
    last_lr_ = current_lr();
  }

 protected:
  std::vector<double> next_lr(const std::vector<double>& current) override {
    // A child that refuses its step (a count at the top of its domain) leaves the children
    // before it stepped: they are put back, and the lrs with them, so that nothing changed.
    std::vector<Options> saved;
    saved.reserve(children_.size());
    for (const auto& c : children_) saved.push_back(c->state());
    try {
      for (auto& c : children_) c->step();
    } catch (...) {
      for (std::size_t i = 0; i < children_.size(); ++i) children_[i]->load_state(saved[i]);
      for (std::size_t g = 0; g < current.size(); ++g) optimizer_->set_option(g, "lr", Value(current[g]));
      throw;
    }
    return current_lr();
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    throw UsageError(who() + " cannot restart inside another composite scheduler");
  }
};

std::vector<double> Scheduler::next_lr_at(std::int64_t step) {
  last_step_ = step;
  return plugin(info_, "next_lr()", [&] { return next_lr(current_lr()); });
}

std::vector<double> Scheduler::restart_at(std::int64_t step) {
  last_step_ = step;
  return plugin(info_, "restart_lr()", [&] { return restart_lr(current_lr()); });
}

void check_sequence(const std::vector<std::int64_t>& milestones, std::size_t count) {
  const std::string who = std::string("scheduler '") + kSequentialScheduler + "'";
  if (count == 0) throw UsageError(who + " needs at least one scheduler");
  if (milestones.size() + 1 != count) {
    throw UsageError(who + " needs one milestone fewer than schedulers: got " + std::to_string(count) +
                     " schedulers and " + std::to_string(milestones.size()) + " milestones");
  }
  for (std::size_t i = 0; i < milestones.size(); ++i) {
    if (milestones[i] < 1 || (i > 0 && milestones[i] <= milestones[i - 1])) {
      throw UsageError(who + ": milestones must be positive and strictly increasing; milestones[" + std::to_string(i) +
                       "] = " + std::to_string(milestones[i]));
    }
  }
}

namespace {
/// The checks of the children of composite `name` (`what`: "a sequence", "a chain").
void check_children(const char* name, const char* what, const Optimizer& optimizer,
                    const std::vector<SchedulerPtr>& schedulers) {
  const std::string who = std::string("scheduler '") + name + "'";
  if (schedulers.empty()) throw UsageError(who + " needs at least one scheduler");
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    const Scheduler* s = schedulers[i].get();
    const std::string at = who + ": schedulers[" + std::to_string(i) + "]";
    if (s == nullptr) throw UsageError(at + " is null");
    if (&s->optimizer() != &optimizer) throw UsageError(at + " ('" + s->name() + "') is bound to another optimizer");
    if (s->needs_metric()) {
      throw UsageError(at + " ('" + s->name() + "') is driven by a metric; " + what + " steps its schedulers by count");
    }
    if (is_composite_scheduler(s->name())) {
      throw UsageError(at + " ('" + s->name() + "') is a composite scheduler itself; " + what +
                       " holds plugin schedulers only");
    }
    if (s->base_lrs() != schedulers.front()->base_lrs()) {
      throw UsageError(at + " ('" + s->name() + "') was attached when the optimizer held other lrs than schedulers[0]; "
                       "attach every scheduler of " + what + " at the same base lrs");
    }
  }
}
}  // namespace

SchedulerPtr make_sequential(Optimizer& optimizer, std::vector<SchedulerPtr> schedulers,
                             const std::vector<std::int64_t>& milestones) {
  check_sequence(milestones, schedulers.size());
  check_children(kSequentialScheduler, "a sequence", optimizer, schedulers);
  return SchedulerPtr(new SequentialScheduler(optimizer, std::move(schedulers), milestones), SchedulerDeleter{});
}

SchedulerPtr make_chained(Optimizer& optimizer, std::vector<SchedulerPtr> schedulers) {
  check_children(kChainedScheduler, "a chain", optimizer, schedulers);
  return SchedulerPtr(new ChainedScheduler(optimizer, std::move(schedulers)), SchedulerDeleter{});
}

}  // namespace optreg
