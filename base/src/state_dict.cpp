// Optimizer::state_dict(), check_state_dict() and load_state_dict().
#include <optreg/state_dict.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <optreg/error.hpp>
#include <optreg/plugin_call.hpp>
#include <optreg/text.hpp>

namespace optreg {

const char* to_string(StateKind kind) noexcept {
  switch (kind) {
    case StateKind::Tensor: return "tensor";
    case StateKind::Int: return "int";
    case StateKind::Float: return "float";
  }
  return "unknown";
}

namespace {

StateKind kind_of(const StateScalar& v) { return v.index() == 0 ? StateKind::Int : StateKind::Float; }

const StateEntry* declared(const StateSchema& schema, const std::string& name) {
  for (const auto& e : schema) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

template <typename Entries>
auto find_entry(const Entries& entries, const std::string& name) -> decltype(&entries.front().second) {
  for (const auto& e : entries) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}

/// The domain of a state entry as printed in messages: integers for an int entry.
std::string domain_text(const StateEntry& e) {
  return e.domain->to_string(e.kind == StateKind::Int ? ValueType::Int : ValueType::Float);
}

/// The position of the first element of `t` outside `domain`, or t.numel(): one pass, no
/// allocation (it runs once per load, over every state tensor).
std::size_t first_outside(const Range& domain, const Tensor& t) {
  if (is_quantized(t.dtype())) {
    for (std::size_t i = 0; i < t.numel(); ++i) {
      if (!domain.contains(t.element(i))) return i;
    }
    return t.numel();
  }
  return visit_dtype(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* x = t.data_as<T>();
    const std::size_t n = t.numel();
    for (std::size_t i = 0; i < n; ++i) {
      if (!domain.contains(to_double(x[i]))) return i;
    }
    return n;
  });
}

bool in_domain(const Range& domain, const StateScalar& v) {
  return v.index() == 0 ? domain.contains_integer(std::get<std::int64_t>(v)) : domain.contains(std::get<double>(v));
}

std::string scalar_text(const StateScalar& v) {
  return v.index() == 0 ? std::to_string(std::get<std::int64_t>(v)) : Value(std::get<double>(v)).to_string();
}

}  // namespace

std::int64_t next_count(std::int64_t count, const std::string& who, const std::string& entry) {
  if (count >= kMaxCount) {
    throw UsageError(who + " cannot take another step: its state count '" + entry + "' = " + std::to_string(count) +
                     " is at the top of its domain " + kCountDomain.to_string(ValueType::Int) +
                     " (a count stops at 2^53 rather than overflow)");
  }
  return count + 1;
}

StateDict Optimizer::state_dict(TensorCopy copy) const {
  // A hook gets the optimizer as it would get it from step(); state_dict() itself changes nothing.
  const_cast<Optimizer*>(this)->run_hooks(HookPoint::PreStateDict);
  check_parameters();  // the state is of the shapes the parameters had when they were added
  StateDict sd;
  sd.optimizer = info_.name;
  sd.plugin_version = info_.plugin_version;
  std::uint64_t id = 0;
  for (const auto& g : groups_) {
    StateDict::Group out;
    out.options = g.options_;
    for (std::size_t i = 0; i < g.params_.size(); ++i, ++id) {
      out.params.push_back(id);
      ParamState s;
      for (const auto& [name, t] : g.states_[i].tensors()) s.add_tensor(name, copy == TensorCopy::Deep ? t.clone() : t);
      for (const auto& [name, v] : g.states_[i].scalars()) s.add_scalar(name, v);
      sd.state.emplace(id, std::move(s));
    }
    sd.param_groups.push_back(std::move(out));
  }
  return sd;
}

namespace {

/// "an int", "a float", "a tensor": a kind as the messages name it.
std::string with_article(StateKind kind) { return std::string(kind == StateKind::Int ? "an " : "a ") + to_string(kind); }

/// The declaration of state entry `name`, or StateDictError naming it and `subject`.
const StateEntry& declared_entry(const OptimizerInfo& info, const std::string& name, const std::string& subject) {
  const StateEntry* e = declared(*info.state, name);
  if (e == nullptr) {
    throw StateDictError("unexpected state entry " + quoted_name(name) + " for " + subject + ": optimizer '" +
                         info.name + "' keeps no such state");
  }
  return *e;
}

/// One saved state tensor: declared as a tensor, of the shape expected, every element in its domain.
void check_tensor_entry(const OptimizerInfo& info, const std::string& name, const Tensor& t, const Tensor* now,
                        const Parameter& p, const Options& options, const std::string& subject) {
  const StateEntry& e = declared_entry(info, name, subject);
  if (e.kind != StateKind::Tensor) {
    throw StateDictError("state entry " + quoted_name(name) + " of " + subject + " is a tensor, but optimizer '" +
                         info.name + "' keeps it as " + with_article(e.kind));
  }
  // A custom-shaped entry keeps the shape it has now; one the optimizer lacks yet takes the saved shape.
  const Shape& want = e.custom_shape ? (now != nullptr ? now->shape() : t.shape()) : p.value().shape();
  if (t.shape() != want) {
    throw StateDictError("state tensor " + quoted_name(name) + " of " + subject + " has shape " + to_string(t.shape()) +
                         ", expected " + to_string(want));
  }
  // An entry shaped like its parameter is kept in the dtype the group's state_dtype (as the state
  // dict sets it) gives it; a custom-shaped one the optimizer holds keeps its dtype.
  const DType dtype = e.custom_shape && now != nullptr ? now->dtype() : state_storage(options, e, p.value().dtype());
  if (t.dtype() != dtype) {
    throw StateDictError("state tensor " + quoted_name(name) + " of " + subject + " is " + dtype_name(t.dtype()) +
                         ", but this optimizer keeps it as " + dtype_name(dtype) +
                         "; convert the state dict's tensors to " + dtype_name(dtype) +
                         " (Optimizer::convert_state_dict(), or a checkpoint load with convert_dtypes) to load it");
  }
  if (!e.domain) return;
  const std::size_t bad = first_outside(*e.domain, t);
  if (bad != t.numel()) {
    throw StateDictError("state tensor '" + name + "' of " + subject + ": element " + std::to_string(bad) + " = " +
                         Value(t.element(bad)).to_string() + " is outside its domain " +
                         domain_text(e));
  }
}

/// One saved state scalar: declared, of the kind declared, in its domain.
void check_scalar_entry(const OptimizerInfo& info, const std::string& name, const StateScalar& v,
                        const std::string& subject) {
  const StateEntry& e = declared_entry(info, name, subject);
  if (e.kind != kind_of(v)) {
    throw StateDictError("state entry " + quoted_name(name) + " of " + subject + " is " + with_article(kind_of(v)) +
                         ", but optimizer '" + info.name + "' keeps it as " + with_article(e.kind));
  }
  if (e.domain && !in_domain(*e.domain, v)) {
    throw StateDictError("state entry '" + name + "' of " + subject + " = " + scalar_text(v) +
                         " is outside its domain " + domain_text(e));
  }
}

/// The saved state of one parameter: every entry checked, and none that is required missing.
void check_param_state(const OptimizerInfo& info, const ParamState& s, const ParamState& current, const Parameter& p,
                       const Options& options, const std::string& subject) {
  for (const auto& [name, t] : s.tensors()) {
    check_tensor_entry(info, name, t, find_entry(current.tensors(), name), p, options, subject);
  }
  for (const auto& [name, v] : s.scalars()) check_scalar_entry(info, name, v, subject);
  for (const auto& e : *info.state) {
    const bool present = e.kind == StateKind::Tensor ? find_entry(s.tensors(), e.name) != nullptr
                                                     : find_entry(s.scalars(), e.name) != nullptr;
    if (!present && !e.optional) throw StateDictError("the state dict lacks state entry '" + e.name + "' of " + subject);
  }
}

/// Marks parameter id `id`, found at `at`, as listed; throws when it is out of range or listed twice.
void claim_id(std::uint64_t id, std::vector<bool>& seen, const std::string& at) {
  if (id >= seen.size()) {
    throw StateDictError(at + ": parameter id " + std::to_string(id) + " is out of range; this optimizer has " +
                         std::to_string(seen.size()) + " parameters");
  }
  if (seen[id]) throw StateDictError(at + ": parameter id " + std::to_string(id) + " appears twice");
  seen[id] = true;
}

/// Throws when the state dict holds state for an id that no group listed.
void check_no_stray_state(const StateDict& sd, const std::vector<bool>& seen) {
  for (const auto& entry : sd.state) {
    if (entry.first >= seen.size() || !seen[entry.first]) {
      throw StateDictError("the state dict holds state for parameter id " + std::to_string(entry.first) +
                           ", which no param group lists");
    }
  }
}

/// The options `saved` would give a group whose options are now `live`, each checked against
/// `schema` and of the type it declares; throws OptionError naming `where`.
Options saved_options(const Schema& schema, const Options& live, const Options& saved, const std::string& where) {
  Options next = live;
  for (const auto& [name, value] : saved) {
    const Value checked = schema.check(name, value, where);
    if (checked.type() != value.type()) {
      const auto a = [](ValueType t) { return std::string(t == ValueType::Int ? "an " : "a ") + to_string(t); };
      throw OptionError(OptionFacts{where, name, value.to_short_string(), OptionPart::Value, -1,
                                    "option " + quoted_name(name) + " = " + value.to_short_string() +
                                        " has the wrong type: expected " + a(checked.type()) + ", got " + a(value.type())});
    }
    next[name] = checked;
  }
  return next;
}

}  // namespace

void Optimizer::check_state_dict(const StateDict& sd) const {
  check_parameters();  // state shapes are checked against the parameters' shapes below
  if (sd.optimizer != info_.name) {
    throw StateDictError("the state dict is of optimizer " + quoted_name(sd.optimizer) + ", but this optimizer is '" +
                         info_.name + "'");
  }
  if (sd.param_groups.size() != groups_.size()) {
    throw StateDictError("the state dict has " + std::to_string(sd.param_groups.size()) +
                         " param groups, but this optimizer has " + std::to_string(groups_.size()));
  }
  std::size_t total = 0;
  for (const auto& g : groups_) total += g.params_.size();
  std::vector<bool> seen(total, false);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const auto& saved = sd.param_groups[g];
    const auto& live = groups_[g];
    const std::string where = "state dict, param group " + std::to_string(g);
    if (saved.params.size() != live.params_.size()) {
      throw StateDictError(where + " has " + std::to_string(saved.params.size()) +
                           " parameters, but this optimizer's group has " + std::to_string(live.params_.size()));
    }
    // A composite's group is its part's: the state dict must say the same part.
    const Optimizer& eng = engine(live.options_);
    const OptimizerInfo& info = eng.info_;
    Options given = saved.options;
    if (&eng != this) {
      const auto it = given.find("optimizer");
      const std::string saved_part = it == given.end() ? std::string("no optimizer")
                                     : it->second.type() == ValueType::String ? "optimizer '" + it->second.as_string() + "'"
                                                                               : "option 'optimizer' = " + it->second.to_short_string();
      if (it == given.end() || it->second.type() != ValueType::String || it->second.as_string() != info.name) {
        throw StateDictError(StateDictPlace{static_cast<std::int64_t>(g), -1, "optimizer"},
                             where + " is stepped by " + saved_part + ", but this composite's group " +
                                 std::to_string(g) + " by optimizer '" + info.name + "'");
      }
      given.erase(it);
    }
    Options next;
    try {
      next = saved_options(*info.schema, live.options_, given, where);
      validate_group(info, next, where, static_cast<std::int64_t>(g));
      check_state_dtype(next, live.params_, where);
    } catch (const OptionError& e) {
      throw StateDictError(StateDictPlace{static_cast<std::int64_t>(g), -1, e.option()}, e.what());
    }
    for (std::size_t j = 0; j < saved.params.size(); ++j) {
      const std::uint64_t id = saved.params[j];
      const Parameter& p = live.params_[j];
      claim_id(id, seen, where + ", position " + std::to_string(j) + " (parameter '" + p.name() + "')");
      const auto it = sd.state.find(id);
      const std::string subject = "parameter id " + std::to_string(id) + " ('" + p.name() + "', param group " +
                                  std::to_string(g) + ", position " + std::to_string(j) + ")";
      if (it == sd.state.end()) throw StateDictError("the state dict has no state for " + subject);
      check_param_state(info, it->second, live.states_[j], p, next, subject);
    }
  }
  check_no_stray_state(sd, seen);
}

Tensor convert_dtype(const Tensor& t, DType dtype, const std::string& what, std::vector<DTypeConversion>& record) {
  Tensor out = t.to(dtype);
  bool exact = true;
  for (std::size_t i = 0; i < t.numel() && exact; ++i) {
    const double a = t.element(i);
    const double b = out.element(i);
    exact = a == b || (std::isnan(a) && std::isnan(b));
  }
  record.push_back(DTypeConversion{what, t.dtype(), dtype, exact});
  return out;
}

std::vector<DTypeConversion> Optimizer::convert_state_dict(StateDict& sd) const {
  std::vector<DTypeConversion> done;
  if (sd.optimizer != info_.name || sd.param_groups.size() != groups_.size()) return done;  // refused by the load
  std::uint64_t first_id = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& live = groups_[g];
    const StateDict::Group& saved = sd.param_groups[g];
    Options next = live.options_;
    for (const auto& [name, value] : saved.options) next[name] = value;
    for (std::size_t j = 0; j < saved.params.size() && j < live.params_.size(); ++j) {
      const auto it = sd.state.find(saved.params[j]);
      if (it == sd.state.end()) continue;
      const Parameter& p = live.params_[j];
      ParamState converted;
      bool changed = false;
      for (const auto& [name, t] : it->second.tensors()) {
        const StateEntry* e = declared(*engine(live.options_).info_.state, name);
        const bool fits = e != nullptr && e->kind == StateKind::Tensor && !e->custom_shape && t.shape() == p.value().shape();
        const DType want = fits ? state_storage(next, *e, p.value().dtype()) : t.dtype();
        if (want == t.dtype()) {
          converted.add_tensor(name, t);
          continue;
        }
        const std::string what = "state tensor '" + name + "' of parameter '" + p.name() + "' (id " +
                                 std::to_string(first_id + j) + ")";
        converted.add_tensor(name, convert_dtype(t, want, what, done));
        changed = true;
      }
      if (!changed) continue;
      for (const auto& [name, v] : it->second.scalars()) converted.add_scalar(name, v);
      it->second = std::move(converted);
    }
    first_id += live.params_.size();
  }
  return done;
}

void Optimizer::load_state_dict(const StateDict& sd) {
  check_state_dict(sd);
  // Nothing below can fail but an allocation for an entry that this optimizer did not have yet.
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& live = groups_[g];
    const auto& saved = sd.param_groups[g];
    const Optimizer& eng = engine(live.options_);
    for (const auto& [name, value] : saved.options) {
      if (&eng == this || name != "optimizer") live.options_[name] = eng.info_.schema->check(name, value, "");
    }
    for (std::size_t j = 0; j < saved.params.size(); ++j) {
      const ParamState& s = sd.state.at(saved.params[j]);
      ParamState& current = live.states_[j];
      ParamState next;
      for (const auto& e : *eng.info_.state) {
        if (e.kind == StateKind::Tensor) {
          const Tensor* from = find_entry(s.tensors(), e.name);
          if (from == nullptr) continue;
          const Tensor* existing = find_entry(current.tensors(), e.name);
          if (existing != nullptr && existing->shape() == from->shape() && existing->dtype() == from->dtype()) {
            Tensor keep = *existing;  // the same memory: views and pointers stay valid
            keep.copy_from(*from);
            next.add_tensor(e.name, keep);
          } else {
            next.add_tensor(e.name, from->clone());
          }
        } else {
          const StateScalar* from = find_entry(s.scalars(), e.name);
          if (from != nullptr) next.add_scalar(e.name, *from);
        }
      }
      current = std::move(next);
    }
  }
  run_hooks(HookPoint::PostLoad);
}

}  // namespace optreg
