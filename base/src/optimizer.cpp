#include <optreg/optimizer.hpp>

#include <algorithm>
#include <unordered_map>

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

// ---------------------------------------------------------------- Optimizer

Optimizer::~Optimizer() = default;

void Optimizer::validate(const Options& /*options*/, const std::string& /*where*/) const {}

void Optimizer::init_state(const Options& /*options*/, const Parameter& param, ParamState& state) const {
  for (const StateEntry& e : *info_.state) {
    if (e.optional) continue;
    switch (e.kind) {
      case StateKind::Tensor:
        if (e.custom_shape) {
          throw PluginError("optimizer '" + info_.name + "' declares state tensor '" + e.name +
                            "' with a shape of its own, so it must create it in init_state()");
        }
        state.add_tensor(e.name, Tensor(param.value().shape(), state_dtype_of(param.value().dtype())));
        break;
      case StateKind::Int: state.add_scalar(e.name, std::int64_t{0}); break;
      case StateKind::Float: state.add_scalar(e.name, 0.0); break;
    }
  }
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
  try {
    plugin(info, "validate()", [&] { validate(options, where); });
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
  for (std::size_t i = 0; i < params.size(); ++i) {
    const DType dtype = params[i].value().dtype();
    if ((info_.param_dtypes & dtype_bit(dtype)) == 0) {
      throw OptionError(where, "dtype",
                        "parameter '" + params[i].name() + "' (position " + std::to_string(i) + ") is " +
                            dtype_name(dtype) + ", but optimizer '" + info_.name + "' steps parameters of " +
                            dtype_names(info_.param_dtypes) + " only");
    }
  }
  ParamGroup group;
  group.options_ = info_.schema->resolve(defaults_, options, where);
  validate_group(info_, group.options_, where, static_cast<std::int64_t>(index));
  group.states_.resize(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    plugin(info_, "init_state()", [&] { init_state(group.options_, params[i], group.states_[i]); });
    check_declared(group.states_[i], where + ", parameter '" + params[i].name() + "'");
    group.shapes_.push_back(params[i].value().shape());
    group.dtypes_.push_back(params[i].value().dtype());
  }
  pack_state(group.states_);
  group.params_ = std::move(params);
  groups_.push_back(std::move(group));
}

void Optimizer::set_option(std::size_t group, const std::string& name, const Value& value) {
  if (group >= groups_.size()) {
    throw UsageError("optimizer '" + info_.name + "' has " + std::to_string(groups_.size()) +
                     " param groups; there is no group " + std::to_string(group));
  }
  const std::string where = "optimizer '" + info_.name + "', param group " + std::to_string(group);
  Options next = groups_[group].options_;
  next[name] = info_.schema->check(name, value, where);
  validate_group(info_, next, where, static_cast<std::int64_t>(group));
  groups_[group].options_ = std::move(next);
}

void Optimizer::set_option(const std::string& name, const Value& value) {
  // Check every group first so that a refusal leaves all of them unchanged.
  std::vector<Options> next;
  next.reserve(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const std::string where = "optimizer '" + info_.name + "', param group " + std::to_string(g);
    next.push_back(groups_[g].options_);
    next.back()[name] = info_.schema->check(name, value, where);
    validate_group(info_, next.back(), where, static_cast<std::int64_t>(g));
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) groups_[g].options_ = std::move(next[g]);
}

Optimizer& Optimizer::step() {
  check_parameters();  // every group, before the first one changes
  for (auto& group : groups_) {
    slots_.clear();
    for (std::size_t i = 0; i < group.params_.size(); ++i) {
      if (group.params_[i].has_grad()) slots_.push_back(Slot{&group.params_[i], &group.states_[i]});
    }
    if (!slots_.empty()) plugin(info_, "update_group()", [&] { update_group(group.options_, slots_); });
  }
  return *this;
}

void Optimizer::check_parameters() const {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    const std::size_t i = detail::first_misfit(group.params_, group.shapes_, group.dtypes_);  // one call per group
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

void Optimizer::pack_state(std::vector<ParamState>& states) {
  // Each state entry of the group's parameters moves into one buffer per dtype, in parameter
  // order and without gaps, so that a step streams through it and parameters that share one
  // flat buffer can be updated as one range. One entry at a time, to keep the extra memory to
  // one entry.
  for (const StateEntry& e : *info_.state) {
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

void Optimizer::check_declared(const ParamState& state, const std::string& where) const {
  // Each kind's entries must follow the declaration order, so that positions are stable.
  const auto check = [&](const std::string& name, bool is_tensor, std::size_t& next) {
    const StateSchema& schema = *info_.state;
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
