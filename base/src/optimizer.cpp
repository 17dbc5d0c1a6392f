#include <optreg/optimizer.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <limits>
#include <mutex>
#include <unordered_map>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/plugin_call.hpp>

#include "parameter_checks.hpp"

namespace optreg {

// ---------------------------------------------------------------- ParamState

namespace {
template <typename T>
auto find_named(T& entries, const std::string& name) -> decltype(&entries.front().second) {
  for (auto& e : entries) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}

template <typename T>
std::string names_of(const T& entries) {
  std::string s;
  for (const auto& e : entries) s += (s.empty() ? "" : ", ") + e.first;
  return s.empty() ? "none" : s;
}

/// Runs `f`, the call `call` into the code of the optimizer `info` names, through call_plugin().
template <typename F>
decltype(auto) plugin(const OptimizerInfo& info, const char* call, F&& f) {
  return call_plugin("optimizer", info.name, info.source, call, std::forward<F>(f));
}

void check_new_name(const ParamState& s, const std::string& name) {
  for (const auto& t : s.tensors()) {
    if (t.first == name) throw UsageError("optimizer state entry '" + name + "' is declared twice");
  }
  for (const auto& t : s.scalars()) {
    if (t.first == name) throw UsageError("optimizer state entry '" + name + "' is declared twice");
  }
}
/// The bit of OptimizerInfo::flags that marks a composite (make_composite()); no plugin can
/// declare it (the registry refuses flags outside abi::kOptimizerFlags).
constexpr std::uint32_t kCompositeFlag = std::uint32_t{1} << 31;

constexpr char kPartOption[] = "optimizer";

/// The refusal of a change to a composite group's `optimizer`.
OptionError fixed_part(const std::string& where, std::size_t group, const Value& value) {
  return OptionError(OptionFacts{where, kPartOption, value.to_short_string(), OptionPart::Name,
                                 static_cast<std::int64_t>(group),
                                 "the optimizer of a composite's param group is fixed when the group is added"});
}

/// `e` as the error of param group `group` (-1: the defaults).
OptionError in_group(const OptionError& e, std::int64_t group) {
  OptionFacts facts = e.facts();
  facts.group = group;
  return OptionError(facts);
}

}  // namespace

Tensor& ParamState::add_tensor(const std::string& name, Tensor value) {
  check_new_name(*this, name);
  tensors_.emplace_back(name, std::move(value));
  return tensors_.back().second;
}

bool ParamState::remove_tensor(const std::string& name) noexcept {
  for (auto it = tensors_.begin(); it != tensors_.end(); ++it) {
    if (it->first == name) {
      tensors_.erase(it);
      return true;
    }
  }
  return false;
}

StateScalar& ParamState::add_scalar(const std::string& name, StateScalar value) {
  check_new_name(*this, name);
  scalars_.emplace_back(name, value);
  return scalars_.back().second;
}

Tensor& ParamState::tensor(const std::string& name) {
  return const_cast<Tensor&>(static_cast<const ParamState&>(*this).tensor(name));
}

const Tensor& ParamState::tensor(const std::string& name) const {
  if (const auto* t = find_named(tensors_, name)) return *t;
  throw UsageError("no state tensor '" + name + "' (tensors: " + names_of(tensors_) + ")");
}

StateScalar& ParamState::scalar(const std::string& name) {
  return const_cast<StateScalar&>(static_cast<const ParamState&>(*this).scalar(name));
}

const StateScalar& ParamState::scalar(const std::string& name) const {
  if (const auto* s = find_named(scalars_, name)) return *s;
  throw UsageError("no state scalar '" + name + "' (scalars: " + names_of(scalars_) + ")");
}

// ---------------------------------------------------------------- ParamGroup

const Value& ParamGroup::option(const std::string& name) const {
  const auto it = options_.find(name);
  if (it == options_.end()) throw OptionError("param group has no option '" + name + "'");
  return it->second;
}

// ---------------------------------------------------------------- Composite

/// What make_composite() makes: an optimizer whose groups are each stepped by one of `parts`.
/// The base does all the bookkeeping; every call into a plugin goes to the group's part.
class Composite final : public Optimizer {
 public:
  std::vector<OptimizerPtr> parts;

 protected:
  void update_group(const Options& /*options*/, const std::vector<Slot>& /*slots*/) override {
    throw PluginError("a composite optimizer steps each group through its part");
  }
};

/// The friend of Optimizer that makes composites and wrapped optimizers, and through which a
/// wrapped optimizer calls into its inner optimizer and its wrapper.
class CompositeBuilder {
 public:
  static OptimizerPtr wrap(OptimizerPtr wrapper, OptimizerPtr inner);
  static const OptimizerInfo& info(const Optimizer& o) noexcept { return o.info_; }
  static void validate(const Optimizer& o, const Options& options, const std::string& where) {
    plugin(o.info_, "validate()", [&] { o.validate(options, where); });
  }
  static void init_state(const Optimizer& o, const Options& options, const Parameter& p, ParamState& s) {
    plugin(o.info_, "init_state()", [&] { o.init_state(options, p, s); });
  }
  static void update_group(Optimizer& o, const Options& options, const std::vector<Optimizer::Slot>& slots) {
    plugin(o.info_, "update_group()", [&] { o.update_group(options, slots); });
  }
  static void eval_weights(Optimizer& o, const Options& options, const std::vector<Optimizer::Slot>& slots) {
    plugin(o.info_, "eval_weights()", [&] { o.eval_weights(options, slots); });
  }

  static OptimizerPtr make(std::vector<OptimizerPtr> parts) {
    if (parts.empty()) throw UsageError("make_composite: a composite needs at least one optimizer");
    OptimizerInfo info;
    info.name = kCompositeOptimizer;
    info.param_dtypes = 0;
    Hyperparameter which;
    which.name = kPartOption;
    which.type = ValueType::String;
    which.meaning = "the optimizer that steps the group";
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const Optimizer* p = parts[i].get();
      const std::string at = "make_composite: part " + std::to_string(i);
      if (p == nullptr) throw UsageError(at + " is null");
      if (!p->info_.schema) throw UsageError(at + " is an optimizer that is not set up");
      const std::string who = at + " (optimizer '" + p->name() + "')";
      if (is_composite(*p)) throw UsageError(who + " is a composite itself; give its parts instead");
      if (!p->groups_.empty()) {
        throw UsageError(who + " has " + std::to_string(p->groups_.size()) +
                         " param groups; a part has none, its groups are added through the composite");
      }
      if (p->needs_closure()) {
        throw UsageError(who + " steps all its parameters as one vector with one closure, so it cannot step "
                         "some groups of a composite");
      }
      if ((p->info_.flags & abi::kOptimizerWrapper) != 0) {
        throw UsageError(who + " is a wrapper without the optimizer it wraps; wrap one first (make_wrapped())");
      }
      for (std::size_t j = 0; j < i; ++j) {
        if (parts[j]->name() == p->name()) {
          throw UsageError(who + " has the name of part " + std::to_string(j) +
                           "; a composite holds one optimizer of each name, each with as many groups as needed");
        }
      }
      which.choices.push_back(p->name());
      info.plugin_version += (i == 0 ? "" : " + ") + p->name() + " " + p->plugin_version();
      info.param_dtypes |= p->info_.param_dtypes;
      info.state_dtypes |= p->info_.state_dtypes;
      info.flags |= p->info_.flags & abi::kOptimizerEvalWeights;
    }
    which.default_value = Value(which.choices.front());
    info.schema = std::make_shared<const Schema>(std::vector<Hyperparameter>{which});
    info.flags |= kCompositeFlag;
    auto composite = std::make_unique<Composite>();
    composite->setup(std::move(info), {}, {});
    composite->parts = std::move(parts);
    return OptimizerPtr(composite.release(), OptimizerDeleter{});
  }
};

OptimizerPtr make_composite(std::vector<OptimizerPtr> parts) { return CompositeBuilder::make(std::move(parts)); }

bool is_composite(const Optimizer& optimizer) noexcept { return dynamic_cast<const Composite*>(&optimizer) != nullptr; }

// ---------------------------------------------------------------- Wrapped

namespace {

/// The bit of OptimizerInfo::flags that marks a wrapped optimizer (make_wrapped()).
constexpr std::uint32_t kWrappedFlag = std::uint32_t{1} << 30;

bool is_precision_option(const std::string& name) {
  for (const Hyperparameter& h : precision_options()) {
    if (h.name == name) return true;
  }
  return false;
}

}  // namespace

/// What make_wrapped() makes: each group is stepped by the inner optimizer, then by the wrapper.
/// A group's options hold both optimizers' options and `inner`; each parameter's state holds
/// the inner optimizer's entries, then the wrapper's, then the core's. The wrapper sees its own
/// entries through a view of each state (handles to the same tensors, copies of the scalars
/// taken before its update and given back after it).
class Wrapped final : public Optimizer {
 public:
  OptimizerPtr wrapper, inner;
  /// The wrapper's own options (its schema without the core's precision options).
  std::vector<std::string> own;
  /// The wrapper's own state entries (without the core's).
  StateSchema wrapper_state;

  /// A group's options split into the inner optimizer's and the wrapper's (which takes the
  /// core's precision options too, for the dtype of its state).
  struct Split {
    Options inner, wrapper;
  };
  Split split(const Options& options) const {
    Split out;
    for (const auto& [name, value] : options) {
      const bool mine = std::find(own.begin(), own.end(), name) != own.end();
      if (mine || is_precision_option(name)) out.wrapper[name] = value;
      if (!mine && name != kInnerOption) out.inner[name] = value;
    }
    return out;
  }

 protected:
  void validate(const Options& options, const std::string& where) const override {
    const Split s = split(options);
    CompositeBuilder::validate(*inner, s.inner, where);
    CompositeBuilder::validate(*wrapper, s.wrapper, where);
  }

  void init_state(const Options& options, const Parameter& param, ParamState& state) const override {
    const Split s = split(options);
    CompositeBuilder::init_state(*inner, s.inner, param, state);
    CompositeBuilder::init_state(*wrapper, s.wrapper, param, state);
  }

  void update_group(const Options& options, const std::vector<Slot>& slots) override {
    const Split& s = cached_split(options);
    // The wrapper's counts are checked before the inner optimizer changes anything: a count at
    // the top of its domain refuses the step with nothing changed, as a plain optimizer's does.
    for (const Slot& slot : slots) {
      for (const StateEntry& e : wrapper_state) {
        if (e.kind != StateKind::Int || !e.domain || e.domain->hi != kCountDomain.hi) continue;
        for (const auto& [name, value] : slot.state->scalars()) {
          if (name == e.name && std::holds_alternative<std::int64_t>(value)) {
            (void)next_count(std::get<std::int64_t>(value), "optimizer '" + name_of_wrapper() + "', parameter '" +
                                                                  slot.param->name() + "'", e.name);
          }
        }
      }
    }
    CompositeBuilder::update_group(*inner, s.inner, slots);
    if (views_.size() > 2 * parameters_count() + 8) views_.clear();  // of states that moved (groups added)
    wrapper_slots_.clear();
    for (const Slot& slot : slots) wrapper_slots_.push_back(Slot{slot.param, &take_view(*slot.state)});
    CompositeBuilder::update_group(*wrapper, s.wrapper, wrapper_slots_);
    for (const Slot& slot : slots) give_back(*slot.state);
  }

  void eval_weights(const Options& options, const std::vector<Slot>& slots) override {
    const Split& s = cached_split(options);
    if (inner->has_eval_weights()) CompositeBuilder::eval_weights(*inner, s.inner, slots);
  }

 private:
  /// A parameter's state as the wrapper sees it.
  struct View {
    ParamState state;
    std::vector<std::size_t> tensor_at, scalar_at;  // where each entry lies in the whole state
    std::size_t tensors = 0, scalars = 0;           // the whole state's counts when it was made
  };

  const Split& cached_split(const Options& options) {
    auto it = splits_.find(&options);
    if (it == splits_.end() || it->second.first != options) {
      if (splits_.size() > 4 * param_groups().size() + 8) splits_.clear();  // groups' options that moved
      it = splits_.insert_or_assign(&options, std::make_pair(options, split(options))).first;
    }
    return it->second.second;
  }

  static bool fresh(const View& v, const ParamState& whole) {
    if (v.tensors != whole.num_tensors() || v.scalars != whole.num_scalars()) return false;
    for (std::size_t j = 0; j < v.scalar_at.size(); ++j) {
      if (whole.scalars()[v.scalar_at[j]].first != v.state.scalars()[j].first) return false;
    }
    for (std::size_t j = 0; j < v.tensor_at.size(); ++j) {
      const Tensor& mine = v.state.tensor(j);
      const Tensor& there = whole.tensor(v.tensor_at[j]);
      if (whole.tensors()[v.tensor_at[j]].first != v.state.tensors()[j].first || mine.raw() != there.raw() ||
          mine.dtype() != there.dtype() || mine.shape() != there.shape()) {
        return false;
      }
    }
    return true;
  }

  /// The view of `whole`, made or refreshed, with its scalars copied in.
  ParamState& take_view(ParamState& whole) {
    View& v = views_[&whole];
    if (!fresh(v, whole)) {
      v = View{};
      for (const StateEntry& e : wrapper_state) {
        if (e.kind == StateKind::Tensor) {
          for (std::size_t k = 0; k < whole.num_tensors(); ++k) {
            if (whole.tensors()[k].first != e.name) continue;
            v.state.add_tensor(e.name, whole.tensor(k));
            v.tensor_at.push_back(k);
          }
        } else {
          for (std::size_t k = 0; k < whole.num_scalars(); ++k) {
            if (whole.scalars()[k].first != e.name) continue;
            v.state.add_scalar(e.name, whole.scalar(k));
            v.scalar_at.push_back(k);
          }
        }
      }
      v.tensors = whole.num_tensors();
      v.scalars = whole.num_scalars();
    }
    for (std::size_t j = 0; j < v.scalar_at.size(); ++j) v.state.scalar(j) = whole.scalar(v.scalar_at[j]);
    return v.state;
  }

  /// The wrapper's changes to its view of `whole` back into it: its scalars, tensors it
  /// replaced, and entries it added (optional ones), after the whole state's own.
  void give_back(ParamState& whole) {
    const auto it = views_.find(&whole);
    View& v = it->second;
    for (std::size_t j = 0; j < v.scalar_at.size(); ++j) whole.scalar(v.scalar_at[j]) = v.state.scalar(j);
    for (std::size_t j = 0; j < v.tensor_at.size(); ++j) whole.tensor(v.tensor_at[j]) = v.state.tensor(j);
    const bool added = v.state.num_tensors() > v.tensor_at.size() || v.state.num_scalars() > v.scalar_at.size();
    for (std::size_t j = v.tensor_at.size(); j < v.state.num_tensors(); ++j) {
      whole.add_tensor(v.state.tensors()[j].first, v.state.tensor(j));
    }
    for (std::size_t j = v.scalar_at.size(); j < v.state.num_scalars(); ++j) {
      whole.add_scalar(v.state.scalars()[j].first, v.state.scalar(j));
    }
    if (added) views_.erase(it);
  }

  const std::string& name_of_wrapper() const { return wrapper->name(); }

  std::size_t parameters_count() const {
    std::size_t n = 0;
    for (const ParamGroup& g : param_groups()) n += g.params().size();
    return n;
  }

  std::unordered_map<const Options*, std::pair<Options, Split>> splits_;
  std::unordered_map<const ParamState*, View> views_;
  std::vector<Slot> wrapper_slots_;
};

OptimizerPtr CompositeBuilder::wrap(OptimizerPtr wrapper, OptimizerPtr inner) {
  const auto check = [](const OptimizerPtr& o, const char* role) {
    if (o == nullptr) throw UsageError(std::string("make_wrapped: the ") + role + " optimizer is null");
    if (!o->info_.schema) throw UsageError(std::string("make_wrapped: the ") + role + " optimizer is not set up");
    if (!o->groups_.empty()) {
      throw UsageError(std::string("make_wrapped: the ") + role + " optimizer '" + o->name() + "' has " +
                       std::to_string(o->groups_.size()) + " param groups; its groups are added through the wrapped optimizer");
    }
    if (o->needs_closure()) {
      throw UsageError(std::string("make_wrapped: the ") + role + " optimizer '" + o->name() +
                       "' steps with a closure, which a wrapped optimizer cannot give it");
    }
  };
  check(wrapper, "wrapper");
  check(inner, "inner");
  const OptimizerInfo& w = wrapper->info_;
  const OptimizerInfo& in = inner->info_;
  if ((w.flags & abi::kOptimizerWrapper) == 0) {
    throw UsageError("make_wrapped: optimizer '" + w.name + "' is not a wrapper (its plugin does not declare one)");
  }
  if ((in.flags & abi::kOptimizerWrapper) != 0) {
    throw UsageError("make_wrapped: the inner optimizer '" + in.name +
                     "' is a wrapper itself; wrap it around an optimizer first (make_wrapped()), then wrap that");
  }
  if (is_composite(*inner)) {
    throw UsageError("make_wrapped: the inner optimizer is a composite; a wrapper wraps one optimizer");
  }
  if (is_wrapped(*inner)) {
    throw UsageError("make_wrapped: the inner optimizer '" + in.name + "' is wrapped already; a wrapper wraps an "
                     "optimizer that is not");
  }
  for (const Hyperparameter& h : w.schema->entries()) {
    // The core's precision options are the groups' (from the inner optimizer's defaults): one
    // given to the wrapper would be lost.
    if (!is_precision_option(h.name) || wrapper->defaults_.at(h.name) == h.default_value) continue;
    throw UsageError("make_wrapped: wrapper '" + w.name + "' was made with " + h.name + " = " +
                     wrapper->defaults_.at(h.name).to_short_string() +
                     "; give the core's precision options to the inner optimizer or to the groups");
  }
  auto wrapped = std::make_unique<Wrapped>();
  std::vector<Hyperparameter> options = in.schema->entries();
  Options defaults = inner->defaults_;
  for (const Hyperparameter& h : w.schema->entries()) {
    if (is_precision_option(h.name)) continue;
    if (h.name == kInnerOption || in.schema->find(h.name) != nullptr) {
      throw UsageError("make_wrapped: wrapper '" + w.name + "' and the inner optimizer '" + in.name +
                       "' both have an option '" + h.name + "'");
    }
    options.push_back(h);
    defaults[h.name] = wrapper->defaults_.at(h.name);
    wrapped->own.push_back(h.name);
  }
  Hyperparameter which;
  which.name = kInnerOption;
  which.type = ValueType::String;
  which.choices = {in.name};
  which.default_value = Value(in.name);
  which.meaning = "the optimizer the wrapper steps with";
  options.push_back(which);
  defaults[kInnerOption] = Value(in.name);
  StateSchema state;
  for (const StateEntry& e : *in.state) {
    if (!is_precision_entry(e.name)) state.push_back(e);
  }
  for (const StateEntry& e : *w.state) {
    if (is_precision_entry(e.name)) continue;
    for (const StateEntry& mine : state) {
      if (mine.name == e.name) {
        throw UsageError("make_wrapped: wrapper '" + w.name + "' and the inner optimizer '" + in.name +
                         "' both keep a state entry '" + e.name + "'");
      }
    }
    state.push_back(e);
    wrapped->wrapper_state.push_back(e);
  }
  for (StateEntry& e : precision_state()) state.push_back(std::move(e));
  OptimizerInfo info;
  info.name = w.name;
  info.plugin_version = w.plugin_version + " over " + in.name + " " + in.plugin_version;
  info.schema = std::make_shared<const Schema>(std::move(options));
  info.state = std::make_shared<const StateSchema>(std::move(state));
  info.source = w.source;
  info.param_dtypes = in.param_dtypes & w.param_dtypes;
  info.state_dtypes = in.state_dtypes & w.state_dtypes;
  info.flags = (in.flags & (abi::kOptimizerEvalWeights | abi::kOptimizerMatricesOnly)) | kWrappedFlag;
  wrapped->wrapper = std::move(wrapper);
  wrapped->inner = std::move(inner);
  wrapped->setup(std::move(info), defaults, {});
  return OptimizerPtr(wrapped.release(), OptimizerDeleter{});
}

OptimizerPtr make_wrapped(OptimizerPtr wrapper, OptimizerPtr inner) {
  return CompositeBuilder::wrap(std::move(wrapper), std::move(inner));
}

bool is_wrapped(const Optimizer& optimizer) noexcept { return dynamic_cast<const Wrapped*>(&optimizer) != nullptr; }

const Optimizer* wrapped_inner(const Optimizer& optimizer) noexcept {
  const auto* w = dynamic_cast<const Wrapped*>(&optimizer);
  return w == nullptr ? nullptr : w->inner.get();
}

// ---------------------------------------------------------------- Hooks

// The hooks of each optimizer live in a table beside it (keyed by its address), so that the
// Optimizer class keeps its layout (docs/plugin-abi.md): a plugin built before hooks existed
// makes optimizers that take them. ~Optimizer() removes its entry.
namespace {

/// One hook: `removed` is set under the table's lock when its handle removes it, so that a run
/// that took it before does not call it.
struct HookRecord {
  std::uint64_t id;
  Hook fn;
  std::atomic<bool> removed{false};
};

/// One optimizer's hooks, in the order added, per point.
struct HookList {
  std::array<std::vector<std::shared_ptr<HookRecord>>, 4> at;
};

/// Every optimizer's hooks. Every change and every read of a list is made under `mutex`; hooks
/// are called, and destroyed, outside it (a hook may add or remove hooks, and its captures may
/// own handles).
struct HookTable {
  std::mutex mutex;
  std::unordered_map<const Optimizer*, std::shared_ptr<HookList>> lists;
};

HookTable& hook_table() {
  static HookTable* table = new HookTable;  // never destroyed: optimizers may outlive statics
  return *table;
}

/// How many optimizers have a hook list: the fast path of every step when it is 0.
std::atomic<std::size_t> g_hooked{0};
std::atomic<std::uint64_t> g_next_hook{1};

}  // namespace

const char* to_string(HookPoint point) noexcept {
  switch (point) {
    case HookPoint::PreStep: return "pre_step";
    case HookPoint::PostStep: return "post_step";
    case HookPoint::PreStateDict: return "pre_state_dict";
    case HookPoint::PostLoad: return "post_load";
  }
  return "unknown";
}

HookHandle::HookHandle(HookHandle&& other) noexcept : optimizer_(other.optimizer_), id_(other.id_) { other.id_ = 0; }

HookHandle& HookHandle::operator=(HookHandle&& other) noexcept {
  if (this != &other) {
    remove();
    optimizer_ = other.optimizer_;
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

HookHandle::~HookHandle() { remove(); }

void HookHandle::remove() noexcept {
  if (id_ == 0) return;
  const std::uint64_t id = id_;
  id_ = 0;
  if (g_hooked.load(std::memory_order_relaxed) == 0) return;
  // Ids are never reused, so a later optimizer at the same address keeps its own hooks. The
  // record is destroyed after the lock is released: its hook's captures may own handles.
  std::shared_ptr<HookRecord> gone;
  HookTable& t = hook_table();
  const std::lock_guard<std::mutex> lock(t.mutex);
  const auto it = t.lists.find(optimizer_);
  if (it == t.lists.end()) return;
  for (auto& entries : it->second->at) {
    for (auto e = entries.begin(); e != entries.end(); ++e) {
      if ((*e)->id != id) continue;
      (*e)->removed.store(true);
      gone = std::move(*e);
      entries.erase(e);
      break;
    }
  }
  // `lock` is released before `gone` is destroyed (reverse order of declaration).
}

HookHandle Optimizer::add_hook(HookPoint point, Hook hook) {
  const auto index = static_cast<std::size_t>(point);
  if (index >= 4) throw UsageError("add_hook: unknown hook point " + std::to_string(index));
  if (!hook) throw UsageError("add_hook(" + std::string(to_string(point)) + ") on optimizer '" + info_.name + "' without a hook");
  auto record = std::make_shared<HookRecord>();
  record->id = g_next_hook.fetch_add(1, std::memory_order_relaxed);
  record->fn = std::move(hook);
  const std::uint64_t id = record->id;
  HookTable& t = hook_table();
  const std::lock_guard<std::mutex> lock(t.mutex);
  std::shared_ptr<HookList>& list = t.lists[this];
  if (!list) {
    list = std::make_shared<HookList>();
    g_hooked.fetch_add(1, std::memory_order_relaxed);
  }
  list->at[index].push_back(std::move(record));
  return HookHandle(this, id);
}

void Optimizer::run_hooks(HookPoint point) {
  if (g_hooked.load(std::memory_order_relaxed) == 0) return;
  // The hooks as they are now (one added meanwhile waits for the next event), called outside
  // the lock; one removed meanwhile is skipped.
  std::vector<std::shared_ptr<HookRecord>> now;
  {
    HookTable& t = hook_table();
    const std::lock_guard<std::mutex> lock(t.mutex);
    const auto it = t.lists.find(this);
    if (it == t.lists.end()) return;
    now = it->second->at[static_cast<std::size_t>(point)];
  }
  for (const auto& record : now) {
    if (!record->removed.load()) record->fn(*this);
  }
}

// ---------------------------------------------------------------- Optimizer

Optimizer::~Optimizer() {
  if (g_hooked.load(std::memory_order_relaxed) == 0) return;
  std::shared_ptr<HookList> gone;  // destroyed after the lock is released: hooks may own handles
  HookTable& t = hook_table();
  const std::lock_guard<std::mutex> lock(t.mutex);
  const auto it = t.lists.find(this);
  if (it == t.lists.end()) return;
  gone = std::move(it->second);
  t.lists.erase(it);
  g_hooked.fetch_sub(1, std::memory_order_relaxed);
}

const Optimizer& Optimizer::engine(const Options& options) const {
  if ((info_.flags & kCompositeFlag) == 0) return *this;
  const auto* composite = dynamic_cast<const Composite*>(this);
  const auto it = options.find(kPartOption);
  if (composite == nullptr || it == options.end() || it->second.type() != ValueType::String) return *this;
  for (const auto& part : composite->parts) {
    if (part->name() == it->second.as_string()) return *part;
  }
  return *this;
}

const Schema& Optimizer::group_schema(std::size_t group) const {
  if (group >= groups_.size()) {
    throw UsageError("optimizer '" + info_.name + "' has " + std::to_string(groups_.size()) +
                     " param groups; there is no group " + std::to_string(group));
  }
  return *engine(groups_[group].options_).info_.schema;
}

Optimizer& Optimizer::engine(const Options& options) {
  return const_cast<Optimizer&>(static_cast<const Optimizer&>(*this).engine(options));
}

const Optimizer& Optimizer::engine_for_new(const Options& options, const std::string& where) const {
  const auto* composite = dynamic_cast<const Composite*>(this);
  if (composite == nullptr) return *this;
  const auto it = options.find(kPartOption);
  if (it == options.end()) return *composite->parts.front();
  std::string names;
  for (const auto& part : composite->parts) {
    if (it->second.type() == ValueType::String && part->name() == it->second.as_string()) return *part;
    names += (names.empty() ? "'" : ", '") + part->name() + "'";
  }
  throw OptionError(OptionFacts{where, kPartOption, it->second.to_short_string(), OptionPart::Value, -1,
                                "option 'optimizer' = " + it->second.to_short_string() +
                                    " names no optimizer of this composite; its optimizers are " + names});
}

void Optimizer::validate(const Options& /*options*/, const std::string& /*where*/) const {}

void Optimizer::init_state(const Options& options, const Parameter& param, ParamState& state) const {
  for (const StateEntry& e : *info_.state) {
    if (e.optional) continue;
    switch (e.kind) {
      case StateKind::Tensor:
        if (e.custom_shape) {
          throw PluginError("optimizer '" + info_.name + "' declares state tensor '" + e.name +
                            "' with a shape of its own, so it must create it in init_state()");
        }
        state.add_tensor(e.name, Tensor(param.value().shape(), state_storage(options, e, param.value().dtype())));
        break;
      case StateKind::Int: state.add_scalar(e.name, std::int64_t{0}); break;
      case StateKind::Float: state.add_scalar(e.name, 0.0); break;
    }
  }
}

Tensor Optimizer::new_state(const Options& options, const Parameter& param, const std::string& entry, double value) const {
  for (const StateEntry& e : *info_.state) {
    if (e.name != entry || e.kind != StateKind::Tensor) continue;
    Tensor t(param.value().shape(), state_storage(options, e, param.value().dtype()));
    if (value != 0.0) t.fill(value);
    return t;
  }
  throw PluginError("optimizer '" + info_.name + "' asked for a new state tensor '" + entry +
                    "', which its plugin does not declare as a state tensor");
}

void Optimizer::setup(OptimizerInfo info, const Options& options, std::vector<ParamGroupSpec> groups) {
  if (info_.schema) throw UsageError("optimizer '" + info_.name + "' is already set up");
  if (!info.schema) throw UsageError("Optimizer::setup needs a schema");
  const std::string where = "optimizer '" + info.name + "'";
  Options defaults = info.schema->resolve(info.schema->defaults(), options, where);
  validate_group(info, defaults, where, -1);
  info_ = std::move(info);
  defaults_ = std::move(defaults);
  try {
    for (auto& g : groups) add_param_group(std::move(g.params), g.options);
  } catch (...) {
    groups_.clear();
    info_ = OptimizerInfo{};
    throw;
  }
}

void Optimizer::validate_group(const OptimizerInfo& info, const Options& options, const std::string& where,
                               std::int64_t group) const {
  const auto dtype = options.find("state_dtype");
  if (dtype != options.end() && dtype->second.as_string() != "float32") {
    const std::string& name = dtype->second.as_string();
    const std::uint32_t bit = name == "bfloat16" ? abi::kStateBFloat16 : abi::kStateInt8;
    if ((info.state_dtypes & bit) == 0) {
      std::string supported = "float32";
      if ((info.state_dtypes & abi::kStateBFloat16) != 0) supported += ", bfloat16";
      if ((info.state_dtypes & abi::kStateInt8) != 0) supported += ", int8";
      const std::string plugin = info.source.empty() ? "it" : "its plugin " + info.source;
      throw in_group(OptionError(where, "state_dtype",
                                 "state_dtype " + name + " is not one optimizer '" + info.name + "' keeps its state in: " +
                                     plugin + " declares " + supported + " only"),
                     group);
    }
  }
  try {
    plugin(info, "validate()", [&] { engine(options).validate(options, where); });
  } catch (const OptionError& e) {
    throw in_group(e, group);
  }
}

std::vector<OptionError> Optimizer::check_options(const OptimizerInfo& info, const Options& options,
                                                  const std::vector<Options>& group_overrides) const {
  if (!info.schema) throw UsageError("Optimizer::check_options needs a schema");
  std::vector<OptionError> errors;
  // `base` with each of `given` checked; every bad option is reported, not only the first.
  const auto resolved = [&](const Options& base, const Options& given, const std::string& where, std::int64_t group) {
    Options out = base;
    bool ok = true;
    for (const auto& [name, value] : given) {
      try {
        out[name] = info.schema->check(name, value, where);
      } catch (const OptionError& e) {
        errors.push_back(in_group(e, group));
        ok = false;
      }
    }
    return std::make_pair(std::move(out), ok);
  };
  const auto rules = [&](const Options& o, const std::string& where, std::int64_t group) {
    try {
      validate_group(info, o, where, group);
      return true;
    } catch (const OptionError& e) {
      errors.push_back(e);
      return false;
    }
  };
  const std::string name = "optimizer '" + info.name + "'";
  const Options defaults = resolved(info.schema->defaults(), options, name, -1).first;
  // An unknown name among the defaults changes no option; a bad value does, and then no rule
  // is checked, and a group's rules are not checked when the defaults break one either.
  const bool only_names =
      std::all_of(errors.begin(), errors.end(), [](const OptionError& e) { return e.part() == OptionPart::Name; });
  const bool inherited_ok = only_names && rules(defaults, name, -1);
  for (std::size_t g = 0; g < group_overrides.size(); ++g) {
    const auto group = static_cast<std::int64_t>(g);
    const std::string where = name + ", param group " + std::to_string(g);
    const auto [o, ok] = resolved(defaults, group_overrides[g], where, group);
    if (ok && inherited_ok) rules(o, where, group);
  }
  return errors;
}

void Optimizer::add_param_group(std::vector<Parameter> params, const Options& options) {
  if (!info_.schema) throw UsageError("add_param_group on an optimizer that is not set up");
  const std::size_t index = groups_.size();
  const std::string where = "optimizer '" + info_.name + "', param group " + std::to_string(index);
  if (params.empty()) throw UsageError(where + " has no parameters");
  if (needs_closure() && !groups_.empty()) {
    throw UsageError(where + ": optimizer '" + info_.name +
                     "' steps all its parameters as one vector with one closure, so it takes one param group");
  }
  // Where each managed parameter lives: (group, position).
  std::unordered_map<const void*, std::pair<std::size_t, std::size_t>> seen;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    for (std::size_t i = 0; i < groups_[g].params_.size(); ++i) seen.emplace(groups_[g].params_[i].id(), std::make_pair(g, i));
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto [it, fresh] = seen.emplace(params[i].id(), std::make_pair(index, i));
    if (fresh) continue;
    const std::string at = "parameter '" + params[i].name() + "' (position " + std::to_string(i) + ")";
    if (it->second.first == index) {
      throw UsageError(where + ": " + at + " appears twice in the group (first at position " +
                       std::to_string(it->second.second) + ")");
    }
    throw UsageError(where + ": " + at + " is already in param group " + std::to_string(it->second.first));
  }
  // A composite's group is stepped by one of its parts: its options are that part's.
  const Optimizer& eng = engine_for_new(options, where);
  const OptimizerInfo& info = eng.info_;
  if ((info.flags & abi::kOptimizerWrapper) != 0) {
    throw UsageError(where + ": optimizer '" + info.name + "' is a wrapper: it steps with an inner optimizer and "
                     "takes param groups only wrapped around one (make_wrapped(), Registry::create_wrapped())");
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const DType dtype = params[i].value().dtype();
    if ((info.param_dtypes & dtype_bit(dtype)) == 0) {
      throw OptionError(where, "dtype",
                        "parameter '" + params[i].name() + "' (position " + std::to_string(i) + ") is " +
                            dtype_name(dtype) + ", but optimizer '" + info.name + "' steps parameters of " +
                            dtype_names(info.param_dtypes) + " only");
    }
    if ((info.flags & abi::kOptimizerMatricesOnly) != 0 && params[i].value().shape().size() != 2) {
      throw UsageError(where + ": parameter '" + params[i].name() + "' (position " + std::to_string(i) + ") has shape " +
                       to_string(params[i].value().shape()) + ", but optimizer '" + info.name +
                       "' steps matrices (2-dimensional parameters) only");
    }
  }
  ParamGroup group;
  if (&eng == this) {
    group.options_ = info.schema->resolve(defaults_, options, where);
  } else {
    Options given = options;
    given.erase(kPartOption);
    group.options_ = info.schema->resolve(eng.defaults_, given, where);
    group.options_[kPartOption] = Value(info.name);
  }
  validate_group(info, group.options_, where, static_cast<std::int64_t>(index));
  check_state_dtype(group.options_, params, where);
  group.states_.resize(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    plugin(info, "init_state()", [&] { eng.init_state(group.options_, params[i], group.states_[i]); });
    check_declared(*info.state, group.states_[i], where + ", parameter '" + params[i].name() + "'");
    group.shapes_.push_back(params[i].value().shape());
    group.numels_.push_back(params[i].value().numel());
    group.dtypes_.push_back(params[i].value().dtype());
  }
  pack_state(*info.state, group.states_);
  group.params_ = std::move(params);
  groups_.push_back(std::move(group));
}

void Optimizer::set_option(std::size_t group, const std::string& name, const Value& value) {
  if (group >= groups_.size()) {
    throw UsageError("optimizer '" + info_.name + "' has " + std::to_string(groups_.size()) +
                     " param groups; there is no group " + std::to_string(group));
  }
  const std::string where = "optimizer '" + info_.name + "', param group " + std::to_string(group);
  const Optimizer& eng = engine(groups_[group].options_);
  if (&eng != this && name == kPartOption) throw fixed_part(where, group, value);
  Options next = groups_[group].options_;
  next[name] = eng.info_.schema->check(name, value, where);
  validate_group(eng.info_, next, where, static_cast<std::int64_t>(group));
  check_state_dtype(next, groups_[group].params_, where);
  std::vector<std::pair<Tensor*, Tensor>> converted;  // made before anything changes
  if (name == "state_dtype") converted = converted_state(group, next);
  groups_[group].options_ = std::move(next);
  for (auto& [at, t] : converted) *at = std::move(t);
}

void Optimizer::set_option(const std::string& name, const Value& value) {
  // Check every group first so that a refusal leaves all of them unchanged.
  // A composite sets it in the groups whose optimizer declares it, and refuses a name none does.
  std::vector<Options> next;
  next.reserve(groups_.size());
  bool declared = false;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::string where = "optimizer '" + info_.name + "', param group " + std::to_string(g);
    const Optimizer& eng = engine(groups_[g].options_);
    next.push_back(groups_[g].options_);
    if (&eng != this && name == kPartOption) throw fixed_part(where, g, value);
    if (&eng != this && eng.info_.schema->find(name) == nullptr) continue;
    declared = true;
    next.back()[name] = eng.info_.schema->check(name, value, where);
    validate_group(eng.info_, next.back(), where, static_cast<std::int64_t>(g));
    check_state_dtype(next.back(), groups_[g].params_, where);
  }
  if (!declared && !groups_.empty()) {
    throw OptionError(OptionFacts{"optimizer '" + info_.name + "'", name, value.to_short_string(), OptionPart::Name, -1,
                                  "no param group's optimizer has an option " + quoted_name(name)});
  }
  std::vector<std::pair<Tensor*, Tensor>> converted;  // made before anything changes
  for (std::size_t g = 0; g < groups_.size() && name == "state_dtype"; ++g) {
    auto more = converted_state(g, next[g]);
    for (auto& c : more) converted.push_back(std::move(c));
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) groups_[g].options_ = std::move(next[g]);
  for (auto& [at, t] : converted) *at = std::move(t);
}

void Optimizer::check_state_dtype(const Options& options, const std::vector<Parameter>& params,
                                  const std::string& where) const {
  const auto it = options.find("state_dtype");
  if (it == options.end() || it->second.as_string() == "float32") return;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (params[i].value().dtype() != DType::Float64) continue;
    throw OptionError(where, "state_dtype",
                      "parameter '" + params[i].name() + "' (position " + std::to_string(i) +
                          ") is float64, whose state stays float64; state_dtype " + it->second.as_string() +
                          " is for float32, bfloat16 and float16 parameters");
  }
}

std::vector<std::pair<Tensor*, Tensor>> Optimizer::converted_state(std::size_t g, const Options& options) {
  std::vector<std::pair<Tensor*, Tensor>> out;
  ParamGroup& group = groups_[g];
  for (std::size_t i = 0; i < group.params_.size(); ++i) {
    const DType param = group.params_[i].value().dtype();
    ParamState& state = group.states_[i];
    for (std::size_t k = 0; k < state.num_tensors(); ++k) {
      const StateEntry* e = nullptr;
      for (const StateEntry& d : *engine(group.options_).info_.state) e = d.name == state.tensors()[k].first ? &d : e;
      if (e == nullptr) continue;
      Tensor& t = state.tensor(k);
      const DType want = state_storage(options, *e, param);
      if (t.dtype() != want) out.emplace_back(&t, t.to(want));
    }
  }
  return out;
}

bool Optimizer::needs_closure() const noexcept { return (info_.flags & abi::kOptimizerNeedsClosure) != 0; }

bool Optimizer::has_eval_weights() const noexcept { return (info_.flags & abi::kOptimizerEvalWeights) != 0; }

void Optimizer::closure_update(const Options& /*options*/, const std::vector<Slot>& /*slots*/, double /*loss*/,
                               const Closure& /*closure*/) {
  throw PluginError("optimizer '" + info_.name + "' declares that it steps with a closure, but implements no closure_update()");
}

void Optimizer::eval_weights(const Options& /*options*/, const std::vector<Slot>& /*slots*/) {
  throw PluginError("optimizer '" + info_.name + "' declares evaluation weights, but implements no eval_weights()");
}

Optimizer& Optimizer::step() {
  if (needs_closure()) {
    throw UsageError("optimizer '" + info_.name +
                     "' re-evaluates the loss while it steps: call step(closure) with a closure that computes the loss "
                     "and the gradients");
  }
  run_hooks(HookPoint::PreStep);
  check_parameters();  // every group, before the first one changes
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    gather_slots(g);
    if (slots_.empty()) continue;
    Optimizer& eng = engine(groups_[g].options_);
    plugin(eng.info_, "update_group()", [&] { eng.update_group(groups_[g].options_, slots_); });
    write_back(g);
  }
  run_hooks(HookPoint::PostStep);
  return *this;
}

double Optimizer::step(const Closure& closure) {
  if (!closure) throw UsageError("step(closure) on optimizer '" + info_.name + "' without a closure");
  if (!needs_closure()) {
    check_parameters();
    const double loss = closure();
    step();
    return loss;
  }
  check_parameters();
  const double loss = closure();
  run_hooks(HookPoint::PreStep);
  check_parameters();  // the closure may have set gradients of another shape
  // An exception of the closure (the host's) crosses the plugin's code: it is kept aside and
  // thrown again as it was, not as a failure of the plugin.
  std::exception_ptr failure;
  const Closure guarded = [&]() -> double {
    try {
      return closure();
    } catch (...) {
      failure = std::current_exception();
      throw;
    }
  };
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    gather_slots(g);
    if (slots_.empty()) continue;
    try {
      Optimizer& eng = engine(groups_[g].options_);
      plugin(eng.info_, "closure_update()", [&] { eng.closure_update(groups_[g].options_, slots_, loss, guarded); });
    } catch (...) {
      if (failure) std::rethrow_exception(failure);
      throw;
    }
    write_back(g);
  }
  run_hooks(HookPoint::PostStep);
  return loss;
}

namespace {

constexpr char kMaster[] = "master_weight";
constexpr char kRoundingStep[] = "rounding_step";

bool is_half(DType d) noexcept { return d == DType::BFloat16 || d == DType::Float16; }

template <typename Entries>
bool has_entry(const Entries& entries, const char* name) noexcept {
  return std::any_of(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; });
}

/// A group's precision options (absent from optimizers set up without the core's options).
struct Precision {
  bool master = false;
  bool stochastic = false;
  std::uint64_t seed = 0;

  explicit Precision(const Options& o) {
    const auto m = o.find("master_weights");
    const auto r = o.find("rounding");
    const auto s = o.find("rounding_seed");
    master = m != o.end() && m->second.as_bool();
    stochastic = r != o.end() && r->second.as_string() == "stochastic";
    seed = s != o.end() ? static_cast<std::uint64_t>(s->second.as_int()) : 0;
  }
};

/// Widens `from` (bfloat16 or float16) into the float32 tensor `to` of the same size.
void widen_into(const Tensor& from, Tensor& to) {
  float* out = to.data();
  const std::size_t n = from.numel();
  if (from.dtype() == DType::BFloat16) {
    const bfloat16* in = from.data_as<bfloat16>();
    for (std::size_t i = 0; i < n; ++i) out[i] = to_float(in[i]);
  } else {
    const float16* in = from.data_as<float16>();
    for (std::size_t i = 0; i < n; ++i) out[i] = to_float(in[i]);
  }
}

/// Rounds the float32 `from` into `to` (bfloat16 or float16): to nearest, or stochastically
/// with the bits of (seed, step, param_id, element).
void round_into(const Tensor& from, Tensor& to, const Precision& p, std::uint64_t step, std::uint64_t param_id) {
  const float* in = from.data();
  const std::size_t n = from.numel();
  const auto bits = [&](std::size_t i) {
    return static_cast<std::uint16_t>(rounding_bits(p.seed, step, param_id, i) >> 48);
  };
  if (to.dtype() == DType::BFloat16) {
    bfloat16* out = to.data_as<bfloat16>();
    for (std::size_t i = 0; i < n; ++i) {
      out[i].bits = p.stochastic ? float_to_bf16_stochastic(in[i], bits(i)) : float_to_bf16(in[i]);
    }
  } else {
    float16* out = to.data_as<float16>();
    for (std::size_t i = 0; i < n; ++i) {
      out[i].bits = p.stochastic ? float_to_f16_stochastic(in[i], bits(i)) : float_to_f16_bits(in[i]);
    }
  }
}

}  // namespace

std::vector<Hyperparameter> precision_options() {
  Hyperparameter master;
  master.name = "master_weights";
  master.type = ValueType::Bool;
  master.default_value = Value(false);
  master.meaning = "bfloat16/float16 parameters: step a float32 master copy kept in the state, round the parameter from it";
  Hyperparameter rounding;
  rounding.name = "rounding";
  rounding.type = ValueType::String;
  rounding.default_value = Value(std::string("nearest"));
  rounding.choices = {"nearest", "stochastic"};
  rounding.meaning = "bfloat16/float16 parameters: how the float32 result is rounded into the parameter";
  Hyperparameter seed;
  seed.name = "rounding_seed";
  seed.type = ValueType::Int;
  seed.default_value = Value(std::int64_t{0});
  seed.range = kCountDomain;
  seed.meaning = "seed of stochastic rounding, with the step and the parameter id";
  Hyperparameter state;
  state.name = "state_dtype";
  state.type = ValueType::String;
  state.default_value = Value(std::string("float32"));
  state.choices = {"float32", "bfloat16", "int8"};
  state.meaning = "dtype of the optimizer's state tensors (float64 for float64 parameters): float32, bfloat16, or int8 "
                  "(blockwise 8-bit), where the optimizer supports it";
  return {master, rounding, seed, state};
}

DType state_storage(const Options& options, const StateEntry& entry, DType param) {
  const DType arith = state_dtype_of(param);
  if (entry.kind != StateKind::Tensor || entry.custom_shape || is_precision_entry(entry.name)) return arith;
  const auto it = options.find("state_dtype");
  if (it == options.end() || it->second.type() != ValueType::String) return arith;
  const std::string& name = it->second.as_string();
  if (name == "bfloat16") return DType::BFloat16;
  if (name == "int8") return entry.domain && entry.domain->lo >= 0.0 ? DType::QUInt8 : DType::QInt8;
  return arith;
}

StateSchema precision_state() {
  StateEntry master;
  master.name = kMaster;
  master.kind = StateKind::Tensor;
  master.optional = true;
  master.meaning = "float32 master copy of a bfloat16/float16 parameter (master_weights)";
  master.domain = Range{-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(), false, false};
  StateEntry step;
  step.name = kRoundingStep;
  step.kind = StateKind::Int;
  step.optional = true;
  step.meaning = "steps this parameter was rounded stochastically; seeds the next rounding";
  step.domain = kCountDomain;
  return {master, step};
}

bool is_precision_entry(const std::string& name) noexcept { return name == kMaster || name == kRoundingStep; }

void Optimizer::gather_slots(std::size_t g) {
  ParamGroup& group = groups_[g];
  const Precision precision(group.options_);
  if (stand_ins_.size() < groups_.size()) stand_ins_.resize(groups_.size());
  std::vector<StandIn>& stand_ins = stand_ins_[g];
  // Slots point into it: it must never reallocate while they are gathered.
  stand_ins.reserve(group.params_.size());
  for (StandIn& s : stand_ins) s.used = false;
  slots_.clear();
  for (std::size_t i = 0; i < group.params_.size(); ++i) {
    Parameter& param = group.params_[i];
    ParamState& state = group.states_[i];
    const bool half = is_half(param.value().dtype());
    // A master exists exactly while master_weights is on: made from the parameter when it is
    // turned on, dropped when it is turned off.
    if (half && !precision.master) state.remove_tensor(kMaster);
    if (!param.has_grad()) continue;
    if (!half || !(precision.master || precision.stochastic)) {
      slots_.push_back(Slot{&param, &state});
      continue;
    }
    if (precision.master && !has_entry(state.tensors(), kMaster)) {
      state.add_tensor(kMaster, param.value().to(DType::Float32));
    }
    if (precision.stochastic && !has_entry(state.scalars(), kRoundingStep)) {
      state.add_scalar(kRoundingStep, std::int64_t{0});
    }
    if (precision.stochastic) {  // a count at the top refuses the step before the group changes
      const std::int64_t count = std::get<std::int64_t>(state.scalar(kRoundingStep));
      if (count >= kMaxCount) (void)next_count(count, "parameter '" + param.name() + "'", kRoundingStep);
    }
    auto it = std::find_if(stand_ins.begin(), stand_ins.end(), [&](const StandIn& s) { return s.index == i; });
    if (it == stand_ins.end()) {
      const Shape& shape = param.value().shape();
      stand_ins.push_back(StandIn{i, Parameter(param.name(), Tensor(shape)), Tensor(shape), Tensor(shape)});
      it = stand_ins.end() - 1;
    }
    StandIn& s = *it;
    s.used = true;
    if (precision.master) {
      s.param.value() = state.tensor(kMaster);
    } else {
      widen_into(param.value(), s.value);
      s.param.value() = s.value;
    }
    widen_into(param.grad(), s.grad);
    s.param.set_grad(s.grad);
    slots_.push_back(Slot{&s.param, &state});
  }
}

void Optimizer::write_back(std::size_t g) {
  ParamGroup& group = groups_[g];
  const Precision precision(group.options_);
  std::uint64_t first_id = 0;
  for (std::size_t k = 0; k < g; ++k) first_id += groups_[k].params_.size();
  for (const StandIn& s : stand_ins_[g]) {
    if (!s.used) continue;
    ParamState& state = group.states_[s.index];
    std::uint64_t step = 0;
    if (precision.stochastic) {
      auto& count = std::get<std::int64_t>(state.scalar(kRoundingStep));
      ++count;  // below the top: gather_slots() checked it
      step = static_cast<std::uint64_t>(count);
    }
    round_into(s.param.value(), group.params_[s.index].value(), precision, step, first_id + s.index);
  }
}

void Optimizer::write_eval_weights() {
  if (!has_eval_weights()) return;
  check_parameters();
  for (ParamGroup& group : groups_) {
    Optimizer& eng = engine(group.options_);
    if (!eng.has_eval_weights()) continue;  // a composite's part without them: the training weights
    // A half-precision parameter's weights are computed in float32, from its master copy when
    // it has one, and rounded to nearest into it.
    std::vector<Parameter> wide;
    wide.reserve(group.params_.size());  // slots point into it
    std::vector<Slot> slots;
    for (std::size_t i = 0; i < group.params_.size(); ++i) {
      Parameter& param = group.params_[i];
      ParamState& state = group.states_[i];
      if (!is_half(param.value().dtype())) {
        slots.push_back(Slot{&param, &state});
        continue;
      }
      const bool master = has_entry(state.tensors(), kMaster);
      wide.emplace_back(param.name(), master ? state.tensor(kMaster).clone() : param.value().to(DType::Float32));
      slots.push_back(Slot{&wide.back(), &state});
    }
    plugin(eng.info_, "eval_weights()", [&] { eng.eval_weights(group.options_, slots); });
    for (std::size_t i = 0, w = 0; i < group.params_.size(); ++i) {
      Tensor& value = group.params_[i].value();
      if (is_half(value.dtype())) round_into(wide[w++].value(), value, Precision(Options{}), 0, 0);
    }
  }
}

EvalWeights::EvalWeights(Optimizer& optimizer) {
  if (!optimizer.has_eval_weights()) return;
  params_ = optimizer.parameters();
  saved_.reserve(params_.size());
  for (const Parameter& p : params_) saved_.push_back(p.value().clone());
  try {
    optimizer.write_eval_weights();
  } catch (...) {
    restore();
    throw;
  }
}

EvalWeights::~EvalWeights() { restore(); }

void EvalWeights::restore() noexcept {
  for (std::size_t i = 0; i < saved_.size(); ++i) {
    try {
      params_[i].value().copy_from(saved_[i]);
    } catch (...) {  // a value replaced, against the contract, by one of another shape or dtype
    }
  }
  saved_.clear();
  params_.clear();
}

void Optimizer::check_parameters() const {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    // One call per group.
    const std::size_t i = detail::first_misfit(group.params_, group.shapes_, group.numels_, group.dtypes_);
    if (i < group.params_.size()) {
      const Parameter& p = group.params_[i];
      const auto where = [&] { return "optimizer '" + info_.name + "', param group " + std::to_string(g); };
      const auto position = static_cast<std::int64_t>(i);
      if (p.value().dtype() != group.dtypes_[i]) {
        throw UsageError(where(), p.name(), position,
                         std::string("its value is ") + dtype_name(p.value().dtype()) + ", but it was " +
                             dtype_name(group.dtypes_[i]) +
                             " when the optimizer took it; a parameter keeps its dtype while an optimizer manages it");
      }
      if (p.value().shape() != group.shapes_[i]) {
        throw UsageError(where(), p.name(), position,
                         "its value has shape " + to_string(p.value().shape()) + ", but it had shape " +
                             to_string(group.shapes_[i]) +
                             " when the optimizer took it; a parameter keeps its shape while an optimizer manages it");
      }
      detail::check_grad_fits(p, where, position);
    }
  }
}

Optimizer& Optimizer::clear_grad() noexcept {
  for (auto& group : groups_) {
    for (auto& p : group.params_) p.clear_grad();
  }
  return *this;
}

std::vector<Parameter> Optimizer::parameters() const {
  std::vector<Parameter> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params_.begin(), g.params_.end());
  return out;
}

void Optimizer::pack_state(const StateSchema& schema, std::vector<ParamState>& states) {
  // Each state entry of the group's parameters moves into one buffer per dtype, in parameter
  // order and without gaps, so that a step streams through it and parameters that share one
  // flat buffer can be updated as one range. One entry at a time, to keep the extra memory to
  // one entry.
  for (const StateEntry& e : schema) {
    if (e.kind != StateKind::Tensor) continue;
    for (const DType dtype : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
      const auto mine = [&](const std::pair<std::string, Tensor>& t) { return t.first == e.name && t.second.dtype() == dtype; };
      std::size_t total = 0;
      for (auto& s : states) {
        for (const auto& t : s.tensors()) total += mine(t) ? t.second.numel() : 0;
      }
      if (total == 0) continue;
      Tensor buffer = Tensor::uninitialized({static_cast<std::int64_t>(total)}, dtype);
      std::size_t offset = 0;
      for (auto& s : states) {
        for (std::size_t k = 0; k < s.num_tensors(); ++k) {
          if (!mine(s.tensors()[k])) continue;
          Tensor& t = s.tensor(k);
          Tensor part = Tensor::part_of(buffer, offset, t.shape());
          part.copy_from(t);
          t = part;
          offset += part.numel();
        }
      }
    }
  }
}

void Optimizer::check_declared(const StateSchema& schema, const ParamState& state, const std::string& where) const {
  // Each kind's entries must follow the declaration order, so that positions are stable.
  const auto check = [&](const std::string& name, bool is_tensor, std::size_t& next) {
    for (std::size_t k = next; k < schema.size(); ++k) {
      if (schema[k].name != name) continue;
      if ((schema[k].kind == StateKind::Tensor) != is_tensor) break;
      next = k + 1;
      return;
    }
    throw PluginError(where + ": the optimizer created the state " + (is_tensor ? "tensor '" : "scalar '") + name +
                      "', which its plugin does not declare as such in this order; declare every state entry "
                      "in the plugin's state schema, in the order init_state() creates them");
  };
  std::size_t next = 0;
  for (const auto& t : state.tensors()) check(t.first, true, next);
  next = 0;
  for (const auto& v : state.scalars()) check(v.first, false, next);
}

const ParamState* Optimizer::find_state(const Parameter& p) const noexcept {
  for (const auto& g : groups_) {
    for (std::size_t i = 0; i < g.params_.size(); ++i) {
      if (g.params_[i].same_as(p)) return &g.states_[i];
    }
  }
  return nullptr;
}

const ParamState& Optimizer::state(const Parameter& p) const {
  if (const ParamState* s = find_state(p)) return *s;
  throw UsageError("parameter '" + p.name() + "' is not managed by optimizer '" + info_.name + "'");
}

}  // namespace optreg
