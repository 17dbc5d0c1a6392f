// A parsed config against a registry: checking and resolving it (resolve_config()), sorting
// parameters into its groups, and building its optimizer and scheduler.
#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include <optreg/abi.hpp>
#include <optreg/config.hpp>
#include <optreg/text.hpp>

#include "name_regex.hpp"

namespace optreg {

namespace {

ConfigError error_at(const std::string& source, const ConfigMark& m, const std::string& reason) {
  return ConfigError(source, m.line, m.column, reason);
}

/// The options as written, by name (the parser refuses a key given twice).
Options written(const std::vector<ConfigOption>& options) {
  Options out;
  for (const auto& o : options) out[o.name] = o.value;
  return out;
}

/// An OptionError about options written in a config, as a ConfigError at the option it names:
/// at its value when the value is at fault, else at its key; at `fallback` (the group, the
/// name) when the option is not written there (a required option left out). `label` names
/// the options in the config's terms ("optimizer 'sgd', param_groups[1]").
ConfigError placed(const std::string& source, const OptionError& e, const std::vector<ConfigOption>& options,
                   const ConfigMark& fallback, const std::string& label) {
  const auto it = std::find_if(options.begin(), options.end(), [&](const ConfigOption& o) { return o.name == e.option(); });
  const ConfigMark at = it == options.end() ? fallback : e.part() == OptionPart::Value ? it->value_mark : it->key_mark;
  // An error a plugin made from a message alone carries its own context.
  return error_at(source, at, e.where().empty() ? std::string(e.what()) : label + ": " + e.reason());
}

/// Runs `f`, adding the ConfigError it throws to `errors`; returns whether it threw none.
template <typename F>
bool collect(std::vector<ConfigError>& errors, F&& f) {
  try {
    f();
    return true;
  } catch (const ConfigError& e) {
    errors.push_back(e);
    return false;
  }
}

bool is_wrapper(const OptimizerDescriptor& d) { return (d.flags & abi::kOptimizerWrapper) != 0; }

/// The names of `d`'s own options (its schema without the core's precision options).
std::vector<std::string> own_options(const OptimizerDescriptor& d) {
  std::vector<std::string> out;
  for (const Hyperparameter& h : d.schema->entries()) {
    bool core = false;
    for (const Hyperparameter& p : precision_options()) core = core || p.name == h.name;
    if (!core) out.push_back(h.name);
  }
  return out;
}

/// The config's wrappers resolved into `r.wrappers`; false when one is unknown, is no wrapper,
/// has a bad option or an option of the optimizer it wraps, each error added to `errors`.
bool resolve_wrappers(const OptimizerConfig& config, const Registry& registry, const OptimizerDescriptor& inner,
                      ResolvedConfig& r, std::vector<ConfigError>& errors) {
  bool ok = true;
  if (is_wrapper(inner)) {
    errors.push_back(error_at(config.source, config.optimizer_mark,
                              "optimizer '" + inner.name + "' is a wrapper: give it the optimizer it wraps as 'inner: "
                              "{name: ...}'"));
    ok = false;
  }
  if (config.wrappers.size() > 1) {
    const WrapperConfig& second = config.wrappers[1];
    errors.push_back(error_at(config.source, second.name_mark,
                              "'" + second.name + "' inside wrapper '" + config.wrappers[0].name +
                                  "': a wrapper wraps an optimizer that is not wrapped already"));
    ok = false;
  }
  std::vector<std::string> taken;  // the options of the optimizers inside the next wrapper
  for (const Hyperparameter& h : inner.schema->entries()) taken.push_back(h.name);
  std::vector<ResolvedWrapper> resolved;
  for (auto it = config.wrappers.rbegin(); it != config.wrappers.rend(); ++it) {  // innermost first
    const WrapperConfig& w = *it;
    const auto d = registry.find(w.name);
    if (!d) {
      std::vector<std::string> known;
      for (const auto& o : registry.list()) {
        if (is_wrapper(o)) known.push_back(o.name);
      }
      errors.push_back(error_at(config.source, w.name_mark,
                                unknown_name_message("unknown wrapper '" + w.name + "'", w.name, known)));
      ok = false;
      continue;
    }
    if (!is_wrapper(*d)) {
      errors.push_back(error_at(config.source, w.inner_mark,
                                "optimizer '" + w.name + "' takes no 'inner': it is not a wrapper (a wrapper's plugin "
                                "declares one, as lookahead's does)"));
      ok = false;
      continue;
    }
    const std::string label = "wrapper '" + w.name + "'";
    for (const std::string& name : own_options(*d)) {
      if (std::find(taken.begin(), taken.end(), name) != taken.end() || name == kInnerOption) {
        errors.push_back(error_at(config.source, w.name_mark,
                                  label + " has an option '" + name + "', which the optimizer it wraps has too; "
                                  "a wrapper cannot wrap an optimizer with an option of its own name"));
        ok = false;
      }
      taken.push_back(name);
    }
    bool options_ok = true;
    for (const ConfigOption& o : w.options) {
      for (const Hyperparameter& p : precision_options()) {
        if (p.name != o.name) continue;
        errors.push_back(error_at(config.source, o.key_mark,
                                  label + ": option '" + o.name + "' is the core's, which every group holds from the "
                                  "optimizer it wraps: write it inside 'inner:'"));
        options_ok = false;
      }
    }
    for (const auto& e : registry.validate_options(w.name, written(w.options), {})) {
      errors.push_back(placed(config.source, e, w.options, w.name_mark, label));
      options_ok = false;
    }
    ok = ok && options_ok;
    if (!options_ok) continue;
    ResolvedWrapper rw;
    rw.descriptor = *d;
    const Options all = d->schema->resolve(d->schema->defaults(), written(w.options), label);
    for (const std::string& name : own_options(*d)) rw.options[name] = all.at(name);
    resolved.insert(resolved.begin(), std::move(rw));
  }
  for (std::size_t g = 0; g < config.groups.size() && !config.wrappers.empty(); ++g) {
    const ConfigGroup& group = config.groups[g];
    if (group.optimizer.empty() || group.optimizer == inner.name) continue;
    errors.push_back(error_at(config.source, group.optimizer_mark,
                              "param_groups[" + std::to_string(g) + "]: wrapper '" + config.wrappers.front().name +
                                  "' wraps one optimizer ('" + inner.name + "'), so a group cannot name another ('" +
                                  group.optimizer + "')"));
    ok = false;
  }
  r.wrappers = std::move(resolved);
  return ok;
}

/// The wrapper of `r` whose own option `name` is, or nullptr.
const ResolvedWrapper* wrapper_of(const ResolvedConfig& r, const std::string& name) {
  for (const ResolvedWrapper& w : r.wrappers) {
    if (w.options.count(name) != 0) return &w;
  }
  return nullptr;
}

/// The config's optimizer with its options resolved into `r`; false when it is unknown or an
/// option is bad, each error added to `errors`.
bool resolve_optimizer(const OptimizerConfig& config, const Registry& registry, ResolvedConfig& r,
                       std::vector<ConfigError>& errors) {
  if (config.optimizer.empty()) return false;  // its section failed to parse, and said so
  const auto d = registry.find(config.optimizer);
  if (!d) {
    std::vector<std::string> known;
    for (const auto& o : registry.list()) known.push_back(o.name);
    errors.push_back(error_at(config.source, config.optimizer_mark,
                              unknown_name_message("unknown optimizer '" + config.optimizer + "'", config.optimizer, known)));
    return false;
  }
  r.optimizer = *d;
  // The wrappers' mistakes are reported with the optimizer's own.
  const bool wrappers_ok = resolve_wrappers(config, registry, *d, r, errors);
  // An entry of `param_groups` that names another optimizer is that optimizer's group: its
  // options are checked against that optimizer's schema, from its defaults.
  std::vector<std::optional<OptimizerDescriptor>> other(config.groups.size());
  bool ok = true;
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const ConfigGroup& group = config.groups[g];
    if (group.optimizer.empty() || group.optimizer == d->name) continue;
    other[g] = registry.find(group.optimizer);
    if (other[g] && is_wrapper(*other[g])) {
      errors.push_back(error_at(config.source, group.optimizer_mark,
                                "param_groups[" + std::to_string(g) + "]: optimizer '" + group.optimizer +
                                    "' is a wrapper, which steps with an optimizer it wraps; wrap the config's "
                                    "optimizer instead (optimizer: {name: " + group.optimizer + ", inner: {...}})"));
      ok = false;
      other[g].reset();
      continue;
    }
    if (!other[g]) {
      std::vector<std::string> known;
      for (const auto& o : registry.list()) known.push_back(o.name);
      errors.push_back(error_at(config.source, group.optimizer_mark,
                                unknown_name_message("param_groups[" + std::to_string(g) + "]: unknown optimizer '" +
                                                         group.optimizer + "'",
                                                     group.optimizer, known)));
      ok = false;
    }
  }
  const auto closure = [](const OptimizerDescriptor& o) { return (o.flags & abi::kOptimizerNeedsClosure) != 0; };
  const bool composite = std::any_of(other.begin(), other.end(), [](const auto& o) { return o.has_value(); });
  for (std::size_t g = 0; g < config.groups.size() && composite; ++g) {
    const OptimizerDescriptor& o = other[g] ? *other[g] : *d;
    if (!closure(o)) continue;
    const ConfigMark& at = other[g] ? config.groups[g].optimizer_mark : config.optimizer_mark;
    errors.push_back(error_at(config.source, at,
                              "param_groups[" + std::to_string(g) + "]: optimizer '" + o.name +
                                  "' steps all its parameters as one vector with one closure, so it cannot step some "
                                  "param groups while other optimizers step the rest"));
    ok = false;
  }
  if (composite && closure(*d)) {
    errors.push_back(error_at(config.source, config.optimizer_mark,
                              "optimizer '" + d->name +
                                  "' steps all its parameters as one vector with one closure, so it cannot step some "
                                  "param groups while other optimizers step the rest"));
    ok = false;
  }
  Options defaults = written(config.options);
  // A wrapper's option written inside its `inner:` map is placed, and not reported again as
  // an unknown option of the inner optimizer.
  for (const ConfigOption& o : config.options) {
    const ResolvedWrapper* w = wrapper_of(r, o.name);
    if (w == nullptr || d->schema->find(o.name) != nullptr) continue;
    errors.push_back(error_at(config.source, o.key_mark,
                              "optimizer '" + d->name + "': option '" + o.name + "' is wrapper '" + w->descriptor.name +
                                  "''s; write it beside that wrapper's 'inner:', not inside it"));
    defaults.erase(o.name);
    ok = false;
  }
  std::vector<Options> groups;
  std::vector<std::size_t> own;  // the entries of the config's optimizer
  // A group's option of a wrapper is checked against the wrapper's schema; the rest against
  // the optimizer's.
  std::vector<Options> wrapper_overrides(config.groups.size());
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    if (other[g]) continue;
    own.push_back(g);
    Options mine = written(config.groups[g].options);
    for (auto it = mine.begin(); it != mine.end();) {
      const ResolvedWrapper* w = wrapper_of(r, it->first);
      if (w == nullptr) {
        ++it;
        continue;
      }
      const std::string label = "wrapper '" + w->descriptor.name + "', param_groups[" + std::to_string(g) + "]";
      try {
        wrapper_overrides[g][it->first] = w->descriptor.schema->check(it->first, it->second, label);
      } catch (const OptionError& e) {
        errors.push_back(placed(config.source, e, config.groups[g].options, config.groups[g].mark, label));
        ok = false;
      }
      it = mine.erase(it);
    }
    groups.push_back(std::move(mine));
  }
  const std::vector<OptionError> found = registry.validate_options(d->name, defaults, groups);
  const std::string name = "optimizer '" + d->name + "'";
  for (const auto& e : found) {
    if (e.group() < 0) {
      errors.push_back(placed(config.source, e, config.options, config.optimizer_mark, name));
    } else {
      const std::size_t g = own[static_cast<std::size_t>(e.group())];
      errors.push_back(placed(config.source, e, config.groups[g].options, config.groups[g].mark,
                              name + ", param_groups[" + std::to_string(g) + "]"));
    }
  }
  ok = ok && found.empty() && wrappers_ok;
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    if (!other[g]) continue;
    const ConfigGroup& group = config.groups[g];
    const std::string label = "optimizer '" + other[g]->name + "', param_groups[" + std::to_string(g) + "]";
    for (const auto& e : registry.validate_options(other[g]->name, {}, {written(group.options)})) {
      errors.push_back(placed(config.source, e, group.options, group.optimizer_mark, label));
      ok = false;
    }
  }
  if (!ok) return false;
  r.defaults = d->schema->resolve(d->schema->defaults(), defaults, name);
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const OptimizerDescriptor& o = other[g] ? *other[g] : *d;
    const Options base = other[g] ? o.schema->defaults() : r.defaults;
    Options given = written(config.groups[g].options);
    for (const auto& [key, value] : wrapper_overrides[g]) given.erase(key);
    Options resolved = o.schema->resolve(base, given, name);
    for (const auto& [key, value] : wrapper_overrides[g]) resolved[key] = value;
    r.groups.push_back(std::move(resolved));
    r.group_optimizers.push_back(o);
  }
  return true;
}

/// Whether a resolved config steps some groups with another optimizer than its own.
bool is_composite_config(const ResolvedConfig& r) {
  return std::any_of(r.group_optimizers.begin(), r.group_optimizers.end(),
                     [&](const OptimizerDescriptor& o) { return o.name != r.optimizer.name; });
}

/// Adds `spec`, the group of entry `ci` of `param_groups` (-1: the parameters no entry holds),
/// to `opt`; an OptionError or UsageError becomes a ConfigError at `at`.
void add_placed(const OptimizerConfig& config, Optimizer& opt, ParamGroupSpec spec, int ci, const ConfigMark& at) {
  const std::string label = ci < 0 ? std::string("the parameters no entry of param_groups holds")
                                   : "param_groups[" + std::to_string(ci) + "]";
  try {
    opt.add_param_group(std::move(spec.params), spec.options);
  } catch (const OptionError& e) {
    throw error_at(config.source, at, label + ": " + e.what());
  } catch (const UsageError& e) {
    throw error_at(config.source, at, label + ": " + e.what());
  }
}

/// The optimizer of a resolved config over `specs`, each the group of `config_index` (-1: the
/// default group, stepped by the config's optimizer): Registry::create(), or a composite of
/// the config's optimizer and those its groups name. An error of a composite's group is a
/// ConfigError at the group's `optimizer:` (at the config's optimizer for its own groups).
OptimizerPtr create_resolved(const OptimizerConfig& config, const ResolvedConfig& r, const Registry& registry,
                             std::vector<ParamGroupSpec> specs, const std::vector<int>& config_index,
                             const std::vector<double>& lr_scale = {}) {
  for (std::size_t k = 0; k < specs.size(); ++k) {
    if (config_index[k] >= 0) specs[k].options = r.groups[static_cast<std::size_t>(config_index[k])];
    if (k < lr_scale.size() && lr_scale[k] != 1.0) specs[k].options["lr"] = Value(specs[k].options.at("lr").as_float() * lr_scale[k]);
  }
  if (!r.wrappers.empty()) {
    // The optimizer, then each wrapper around it, innermost first; then the groups.
    OptimizerPtr opt = registry.create(r.optimizer.name, std::vector<ParamGroupSpec>{}, r.defaults);
    for (auto it = r.wrappers.rbegin(); it != r.wrappers.rend(); ++it) {
      opt = make_wrapped(registry.create(it->descriptor.name, std::vector<ParamGroupSpec>{}, it->options), std::move(opt));
    }
    for (std::size_t k = 0; k < specs.size(); ++k) {
      const int ci = config_index[k];
      const ConfigMark& at = ci < 0 ? config.optimizer_mark : config.groups[static_cast<std::size_t>(ci)].mark;
      add_placed(config, *opt, std::move(specs[k]), ci, at);
    }
    return opt;
  }
  if (!is_composite_config(r)) return registry.create(r.optimizer.name, std::move(specs), r.defaults);
  std::vector<OptimizerPtr> parts;
  std::vector<std::string> names;
  parts.push_back(registry.create(r.optimizer.name, std::vector<ParamGroupSpec>{}, r.defaults));
  names.push_back(r.optimizer.name);
  for (const auto& o : r.group_optimizers) {
    if (std::find(names.begin(), names.end(), o.name) != names.end()) continue;
    parts.push_back(registry.create(o.name, std::vector<ParamGroupSpec>{}, {}));
    names.push_back(o.name);
  }
  OptimizerPtr composite = make_composite(std::move(parts));
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const int ci = config_index[k];
    const std::string& part = ci < 0 ? r.optimizer.name : r.group_optimizers[static_cast<std::size_t>(ci)].name;
    specs[k].options["optimizer"] = Value(part);
    const ConfigMark& at = ci < 0 || config.groups[static_cast<std::size_t>(ci)].optimizer.empty()
                               ? config.optimizer_mark
                               : config.groups[static_cast<std::size_t>(ci)].optimizer_mark;
    add_placed(config, *composite, std::move(specs[k]), ci, at);
  }
  return composite;
}

SchedulerDescriptor find_scheduler(const std::string& source, const SchedulerConfig& sc, const Registry& registry) {
  if (auto d = registry.find_scheduler(sc.name)) return *d;
  std::vector<std::string> known;
  for (const auto& d : registry.list_schedulers()) known.push_back(d.name);
  throw error_at(source, sc.name_mark, unknown_name_message("unknown scheduler '" + sc.name + "'", sc.name, known));
}

const std::string kSequence = std::string("scheduler '") + kSequentialScheduler + "'";

/// The milestones of a sequence: whole numbers of steps, positive, increasing, one fewer than
/// its schedulers (check_sequence()). Throws ConfigError at the milestones (at the sequence
/// when they are left out).
std::vector<std::int64_t> milestones_of(const std::string& source, const SchedulerConfig& sc) {
  std::vector<std::int64_t> milestones;
  ConfigMark at = sc.mark;
  for (const auto& o : sc.options) {
    Value v;
    try {
      v = sequential_schema()->check(o.name, o.value, kSequence);
    } catch (const OptionError& e) {
      throw placed(source, e, sc.options, sc.mark, kSequence);
    }
    at = o.value_mark;
    for (double m : v.as_float_list()) {
      if (m != std::floor(m) || m > 9.0e18) {
        throw error_at(source, at, kSequence + ": option 'milestones' must hold whole numbers of steps; " +
                                       Value(m).to_string() + " is not one");
      }
      milestones.push_back(static_cast<std::int64_t>(m));
    }
  }
  try {
    check_sequence(milestones, sc.schedulers.size());
  } catch (const UsageError& e) {
    throw error_at(source, at, e.what());
  }
  return milestones;
}

/// A scheduler of a composite (`parent`, sequential or chained): found, and stepped by count.
SchedulerDescriptor sequence_child(const std::string& source, const SchedulerConfig& parent, const SchedulerConfig& child,
                                   std::size_t i, const Registry& registry) {
  const SchedulerDescriptor d = find_scheduler(source, child, registry);
  if (d.needs_metric) {
    throw error_at(source, child.name_mark,
                   "scheduler '" + parent.name + "', schedulers[" + std::to_string(i) + "]: scheduler '" + d.name +
                       "' is driven by a metric; " + (parent.name == kSequentialScheduler ? "a sequence" : "a chain") +
                       " steps its schedulers by count");
  }
  return d;
}

std::string child_label(const SchedulerConfig& parent, const SchedulerConfig& child, std::size_t i) {
  return "scheduler '" + parent.name + "', schedulers[" + std::to_string(i) + "] ('" + child.name + "')";
}

/// A chain takes no option of its own: each is a ConfigError at it.
void check_chain_options(const std::string& source, const SchedulerConfig& sc) {
  const std::string who = std::string("scheduler '") + kChainedScheduler + "'";
  for (const auto& o : sc.options) {
    try {
      chained_schema()->check(o.name, o.value, who);
    } catch (const OptionError& e) {
      throw placed(source, e, sc.options, sc.mark, who);
    }
  }
}

/// One scheduler of a config (a sequence: its schedulers too) with its options resolved;
/// nothing when an error was found, each added to `errors`.
std::optional<ResolvedScheduler> resolve_scheduler(const std::string& source, const SchedulerConfig& sc,
                                                   const Registry& registry, const std::string& label,
                                                   std::vector<ConfigError>& errors) {
  ResolvedScheduler r;
  if (!collect(errors, [&] { r.descriptor = find_scheduler(source, sc, registry); })) return std::nullopt;
  const Options given = written(sc.options);
  if (!is_composite_scheduler(sc.name)) {
    const std::vector<OptionError> found = registry.validate_scheduler_options(sc.name, given);
    for (const auto& e : found) errors.push_back(placed(source, e, sc.options, sc.name_mark, label));
    if (!found.empty()) return std::nullopt;
    r.options = r.descriptor.schema->resolve(r.descriptor.schema->defaults(), given, label);
    return r;
  }
  bool ok = collect(errors, [&] {
    if (sc.name == kSequentialScheduler) {
      milestones_of(source, sc);
    } else {
      check_chain_options(source, sc);
    }
  });
  if (ok) r.options = r.descriptor.schema->resolve(r.descriptor.schema->defaults(), given, label);
  for (std::size_t i = 0; i < sc.schedulers.size(); ++i) {
    const SchedulerConfig& child = sc.schedulers[i];
    std::optional<ResolvedScheduler> c;
    if (collect(errors, [&] { sequence_child(source, sc, child, i, registry); })) {
      c = resolve_scheduler(source, child, registry, child_label(sc, child, i), errors);
    }
    ok = ok && c.has_value();
    if (c) r.children.push_back(std::move(*c));
  }
  if (!ok) return std::nullopt;
  return r;
}

/// Makes one scheduler of a config (not a sequence) over `optimizer`; an option it refuses,
/// or its fit to the optimizer, is a ConfigError at that option or at its name.
SchedulerPtr make_scheduler(const std::string& source, const SchedulerConfig& sc, Optimizer& optimizer,
                            const Registry& registry, const std::string& label) {
  const SchedulerDescriptor d = find_scheduler(source, sc, registry);
  try {
    return registry.create_scheduler(d.name, optimizer, written(sc.options));
  } catch (const OptionError& e) {
    throw placed(source, e, sc.options, sc.name_mark, label);
  } catch (const UsageError& e) {
    throw error_at(source, sc.name_mark, e.what());
  }
}

}  // namespace

namespace {

/// resolve_config() with `planner` sorting the parameters, when there are any.
ConfigCheck resolve(const OptimizerConfig& config, const Registry& registry, const std::function<GroupPlan()>& planner) {
  ConfigCheck out;
  ResolvedConfig r;
  const bool optimizer_ok = resolve_optimizer(config, registry, r, out.errors);
  if (planner) collect(out.errors, [&] { r.plan = planner(); });
  for (std::size_t g = 0; g < config.groups.size() && optimizer_ok; ++g) {
    const ConfigGroup& group = config.groups[g];
    if (!group.layer_decay) continue;
    const Hyperparameter* lr = r.group_optimizers[g].schema->find("lr");
    if (lr == nullptr || lr->type != ValueType::Float) {
      out.errors.push_back(error_at(config.source, group.layer_decay_mark,
                                    "param_groups[" + std::to_string(g) + "]: layer_decay scales the option 'lr', which "
                                    "optimizer '" + r.group_optimizers[g].name + "' does not have"));
    }
  }
  if (config.accumulate && optimizer_ok && (r.optimizer.flags & abi::kOptimizerNeedsClosure) != 0) {
    out.errors.push_back(error_at(config.source, config.accumulate->mark,
                                  "section 'accumulate': optimizer '" + r.optimizer.name +
                                      "' re-evaluates the loss with a closure within a step, so it cannot take "
                                      "gradients accumulated over micro-batches"));
  }
  if (config.scheduler) {
    const SchedulerConfig& sc = *config.scheduler;
    r.scheduler = resolve_scheduler(config.source, sc, registry, "scheduler '" + sc.name + "'", out.errors);
  }
  if (config.scheduler && optimizer_ok && out.errors.empty()) {
    // Its fit to the optimizer (onecycle cycles a momentum the optimizer must have) is checked
    // by attaching it to an optimizer of the config's defaults over one stand-in parameter.
    // A composite gets one stand-in matrix per entry of param_groups as well.
    std::vector<ParamGroupSpec> specs{{{Parameter("stand-in", Tensor({1, 1}))}, {}}};
    std::vector<int> index{-1};
    for (std::size_t g = 0; g < config.groups.size() && is_composite_config(r); ++g) {
      specs.push_back({{Parameter("stand-in " + std::to_string(g), Tensor({1, 1}))}, {}});
      index.push_back(static_cast<int>(g));
    }
    OptimizerPtr stand_in = create_resolved(config, r, registry, std::move(specs), index);
    collect(out.errors, [&] { build_scheduler(config, *stand_in, registry); });
  }
  std::stable_sort(out.errors.begin(), out.errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::make_pair(a.line(), a.column()) < std::make_pair(b.line(), b.column());
  });
  if (out.errors.empty()) out.resolved = std::move(r);
  return out;
}

}  // namespace

ConfigCheck resolve_config(const OptimizerConfig& config, const Registry& registry,
                           const std::optional<std::vector<std::string>>& param_names) {
  if (!param_names) return resolve(config, registry, nullptr);
  return resolve(config, registry, [&] { return plan_groups(config, *param_names); });
}

ConfigCheck resolve_config_with_shapes(const OptimizerConfig& config, const Registry& registry, const std::vector<ParamInfo>& params) {
  return resolve(config, registry, [&] { return plan_groups_with_shapes(config, params); });
}

void check_config(const OptimizerConfig& config, const Registry& registry) {
  ConfigCheck c = resolve_config(config, registry);
  if (!c.errors.empty()) throw c.errors.front();
}

namespace {

/// Whether the parameter `name` (of shape `shape`, when known) meets the selectors of `group`
/// other than its regex.
bool selects(const ConfigGroup& group, const std::string& name, const Shape* shape) {
  if (!group.patterns.empty()) {
    const bool any = std::any_of(group.patterns.begin(), group.patterns.end(),
                                 [&](const std::string& p) { return ::fnmatch(p.c_str(), name.c_str(), 0) == 0; });
    if (!any) return false;
  }
  if (group.ndim && static_cast<std::int64_t>(shape->size()) != *group.ndim) return false;
  if (group.shape && *shape != *group.shape) return false;
  return true;
}

/// plan_groups() over names, with their shapes when `shapes` is given.
GroupPlan plan(const OptimizerConfig& config, const std::vector<std::string>& names, const std::vector<Shape>* shapes) {
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!seen.emplace(names[i], i).second) {
      throw UsageError("two parameters are named '" + names[i] + "' (positions " + std::to_string(seen[names[i]]) +
                       " and " + std::to_string(i) + "); config groups match parameters by name");
    }
  }
  std::vector<std::optional<detail::NameRegex>> regexes(config.groups.size());
  // Whether group g's regex matches `name` (its captures into `captures` when given); a match the
  // matcher gives up on is an error at the regex's line.
  const auto regex_matches = [&](std::size_t g, const std::string& name, std::vector<std::string>* captures) {
    try {
      return regexes[g]->matches(name, captures);
    } catch (const std::runtime_error& e) {
      const ConfigGroup& group = config.groups[g];
      throw error_at(config.source, group.regex_mark,
                     "regex '" + *group.regex + "' of param_groups[" + std::to_string(g) + "]: " + e.what() +
                         " (parameter " + quoted_name(name) + ")");
    }
  };
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const ConfigGroup& group = config.groups[g];
    const std::string what = "param_groups[" + std::to_string(g) + "]";
    if ((group.ndim || group.shape) && shapes == nullptr) {
      throw error_at(config.source, group.ndim ? group.ndim_mark : group.shape_mark,
                     what + " selects parameters by " + (group.ndim ? "ndim" : "shape") +
                         ", which needs their shapes (optreg check --params FILE gives them)");
    }
    for (std::size_t k = 0; k < group.patterns.size(); ++k) {
      const bool any = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
        return ::fnmatch(group.patterns[k].c_str(), n.c_str(), 0) == 0;
      });
      if (!any) {
        throw error_at(config.source, group.pattern_marks[k],
                       "pattern '" + group.patterns[k] + "' of " + what + " matches no parameter" +
                           did_you_mean(group.patterns[k], names));
      }
    }
    if (!group.regex) continue;
    try {
      regexes[g].emplace(*group.regex);
    } catch (const std::runtime_error& e) {  // a config made in code: the parser checks its own
      throw error_at(config.source, group.regex_mark, what + ".regex is not a valid regular expression: " + e.what());
    }
    const bool any =
        std::any_of(names.begin(), names.end(), [&](const std::string& n) { return regex_matches(g, n, nullptr); });
    if (!any) throw error_at(config.source, group.regex_mark, "regex '" + *group.regex + "' of " + what + " matches no parameter");
  }
  std::vector<int> owner(names.size(), -1);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const Shape* shape = shapes != nullptr ? &(*shapes)[i] : nullptr;
    for (std::size_t g = 0; g < config.groups.size() && owner[i] < 0; ++g) {
      if (selects(config.groups[g], names[i], shape) && (!regexes[g] || regex_matches(g, names[i], nullptr))) {
        owner[i] = static_cast<int>(g);
      }
    }
  }
  GroupPlan out;
  GroupPlan::Group fallback;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (owner[i] < 0) fallback.params.push_back(i);
  }
  if (!fallback.params.empty()) out.groups.push_back(std::move(fallback));
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const ConfigGroup& cg = config.groups[g];
    const std::string what = "param_groups[" + std::to_string(g) + "]";
    GroupPlan::Group group;
    group.config_index = static_cast<int>(g);
    group.options = written(cg.options);
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (owner[i] == static_cast<int>(g)) group.params.push_back(i);
    }
    if (group.params.empty()) {
      throw error_at(config.source, cg.mark,
                     what + " gets no parameter: every parameter its selectors match is taken by an earlier group");
    }
    if (!cg.layer_decay) {
      out.groups.push_back(std::move(group));
      continue;
    }
    if (!regexes[g]) {  // a config made in code: the parser refuses it
      throw error_at(config.source, cg.layer_decay_mark,
                     what + ".layer_decay needs a 'regex' whose first capture is the layer of each parameter");
    }
    // One group per layer: the regex's first capture of each parameter's name.
    std::map<std::int64_t, std::vector<std::size_t>> layers;
    for (std::size_t i : group.params) {
      std::vector<std::string> captures;
      regex_matches(g, names[i], &captures);
      const std::string text = captures.empty() ? std::string() : captures[0];
      const bool whole = !text.empty() && text.size() <= 9 && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!whole) {
        throw error_at(config.source, cg.regex_mark,
                       what + ": the first capture of regex '" + *cg.regex + "' in parameter '" + names[i] + "' is " +
                           (text.empty() ? std::string("empty") : "'" + text + "'") +
                           ", but layer_decay takes it as the parameter's layer, a whole number");
      }
      layers[std::stoll(text)].push_back(i);
    }
    const std::int64_t n = cg.num_layers ? *cg.num_layers : layers.rbegin()->first + 1;
    if (layers.rbegin()->first > n) {
      throw error_at(config.source, cg.num_layers_mark,
                     what + ": num_layers " + std::to_string(n) + " is below layer " +
                         std::to_string(layers.rbegin()->first) + " of parameter '" +
                         names[layers.rbegin()->second.front()] + "'");
    }
    for (auto& [layer, params] : layers) {
      GroupPlan::Group part = group;
      part.params = std::move(params);
      part.layer = layer;
      part.lr_scale = std::pow(*cg.layer_decay, static_cast<double>(n - layer));
      out.groups.push_back(std::move(part));
    }
  }
  return out;
}

}  // namespace

GroupPlan plan_groups(const OptimizerConfig& config, const std::vector<std::string>& names) {
  return plan(config, names, nullptr);
}

GroupPlan plan_groups_with_shapes(const OptimizerConfig& config, const std::vector<ParamInfo>& params) {
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& p : params) {
    names.push_back(p.name);
    shapes.push_back(p.shape);
  }
  return plan(config, names, &shapes);
}

SchedulerPtr build_scheduler(const OptimizerConfig& config, Optimizer& optimizer, const Registry& registry) {
  if (!config.scheduler) return nullptr;
  const SchedulerConfig& sc = *config.scheduler;
  const std::string& source = config.source;
  if (!is_composite_scheduler(sc.name)) {
    return make_scheduler(source, sc, optimizer, registry, "scheduler '" + sc.name + "'");
  }
  const bool sequential = sc.name == kSequentialScheduler;
  std::vector<std::int64_t> milestones;
  if (sequential) {
    milestones = milestones_of(source, sc);
  } else {
    check_chain_options(source, sc);
  }
  // Every child is attached at the optimizer's own lrs, as PyTorch's children all record the
  // same initial lrs.
  std::vector<double> base;
  for (const auto& g : optimizer.param_groups()) base.push_back(g.option("lr").as_float());
  std::vector<SchedulerPtr> children;
  for (std::size_t i = 0; i < sc.schedulers.size(); ++i) {
    const SchedulerConfig& child = sc.schedulers[i];
    sequence_child(source, sc, child, i, registry);
    for (std::size_t g = 0; g < base.size(); ++g) optimizer.set_option(g, "lr", Value(base[g]));
    children.push_back(make_scheduler(source, child, optimizer, registry, child_label(sc, child, i)));
  }
  try {
    return sequential ? make_sequential(optimizer, std::move(children), milestones)
                      : make_chained(optimizer, std::move(children));
  } catch (const UsageError& e) {  // the milestones are checked; the children's fit is not
    throw error_at(source, sc.name_mark, e.what());
  }
}

OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                             const Registry& registry) {
  return build_optimizer(config, params, registry, nullptr);
}

OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                             const Registry& registry, const GroupSubstitute& substitute) {
  std::vector<ParamInfo> infos;
  for (const auto& p : params) infos.push_back(ParamInfo{p.name(), p.value().shape()});
  ConfigCheck c = resolve_config_with_shapes(config, registry, infos);
  if (!c.errors.empty()) throw c.errors.front();
  const ResolvedConfig& r = *c.resolved;
  std::vector<ParamGroupSpec> specs;
  std::vector<int> index;
  std::vector<double> scale;
  for (const auto& g : r.plan->groups) {
    ParamGroupSpec spec;
    for (std::size_t i : g.params) spec.params.push_back(params[i]);
    if (substitute) spec.params = substitute(specs.size(), spec.params);
    specs.push_back(std::move(spec));
    index.push_back(g.config_index);
    scale.push_back(g.lr_scale);
  }
  return create_resolved(config, r, registry, std::move(specs), index, scale);
}

}  // namespace optreg
