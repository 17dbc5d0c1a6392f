// Configs: the optimizer's sections of a config document, and building optimizers from them.
#include <optreg/config.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cmath>

#include <filesystem>
#include <map>

#include <optreg/clip.hpp>
#include <optreg/detail/files.hpp>

#include "config_scalar.hpp"
#include "name_regex.hpp"

namespace optreg {

namespace fs = std::filesystem;

namespace {

using namespace detail;

const std::vector<std::string> kSections = {"optimizer", "param_groups", "plugins", "scheduler", "clip", "average",
                                            "accumulate"};

[[noreturn]] void fail(const std::string& source, const ConfigMark& m, const std::string& what) {
  throw_config_error(source, m, what);
}

std::vector<std::pair<std::string, ConfigMark>> string_list(const ConfigNode& n, const std::string& what) {
  std::vector<std::pair<std::string, ConfigMark>> out;
  const auto one = [&](const ConfigNode& e) {
    if (!e.is_scalar() || e.text().empty()) e.fail(what + " must be a non-empty string");
    out.emplace_back(e.text(), e.mark());
  };
  if (n.is_scalar()) {
    one(n);
  } else if (n.is_list() && n.size() > 0) {
    for (const auto& e : n.items()) one(e);
  } else {
    n.fail(what + " must be a string or a non-empty list of strings, not " + n.kind_name());
  }
  return out;
}

ConfigOption option_of(const ConfigEntry& entry) {
  // A missing value is placed at its key: an empty value is marked where the next line starts.
  if (entry.value.is_null()) entry.key.fail("option '" + entry.key.text() + "' has no value");
  return ConfigOption{entry.key.text(), entry.value.to_value(entry.key.text()), entry.key.mark(), entry.value.mark()};
}

/// A `scheduler:` map, or one entry of a sequence's `schedulers` list (`what` names it).
SchedulerConfig parse_scheduler(const std::string& source, const ConfigNode& node, const std::string& what, bool nested) {
  if (!node.is_map()) node.fail(what + " must be a map with a 'name', not " + node.kind_name());
  SchedulerConfig sc;
  sc.mark = node.mark();
  bool has_name = false;
  ConfigNode list;
  bool has_list = false;
  ConfigMark list_key;
  for (const auto& e : node.entries(what)) {
    if (e.key.text() == "name") {
      if (!e.value.is_scalar() || e.value.text().empty()) e.value.fail("'name' must be a scheduler name");
      sc.name = e.value.text();
      sc.name_mark = e.value.mark();
      has_name = true;
    } else if (e.key.text() == "schedulers") {
      list = e.value;
      has_list = true;
      list_key = e.key.mark();
    } else {
      sc.options.push_back(option_of(e));
    }
  }
  if (!has_name) fail(source, sc.mark, what + " needs a 'name' (such as 'name: cosine')");
  const bool composite = is_composite_scheduler(sc.name);
  if (has_list && !composite) {
    fail(source, list_key, "'schedulers' belongs to scheduler 'sequential' or 'chained', not '" + sc.name + "'");
  }
  if (composite) {
    if (nested) fail(source, sc.name_mark, "a '" + sc.name + "' scheduler cannot be inside another composite scheduler");
    if (!has_list) fail(source, sc.mark, "scheduler '" + sc.name + "' needs 'schedulers': the list of schedulers it runs");
    if (!list.is_list()) list.fail(std::string("'schedulers' must be a list of schedulers, not ") + list.kind_name());
    if (list.size() == 0) list.fail("'schedulers' is empty; scheduler '" + sc.name + "' needs at least one scheduler");
    const std::vector<ConfigNode> items = list.items();
    for (std::size_t i = 0; i < items.size(); ++i) {
      sc.schedulers.push_back(parse_scheduler(source, items[i], "schedulers[" + std::to_string(i) + "]", true));
    }
  }
  return sc;
}

/// A number of a `clip:` section (`.inf` and "inf" allowed where `allow_inf`).
double clip_number(const std::string& source, const ConfigOption& o, bool allow_inf) {
  if (allow_inf && o.value.type() == ValueType::String && (o.value.as_string() == "inf")) return HUGE_VAL;
  if (o.value.type() != ValueType::Float && o.value.type() != ValueType::Int) {
    fail(source, o.value_mark, "clip option '" + o.name + "' must be a number, not " + o.value.to_string());
  }
  const double d = o.value.as_float();
  if (!(d > 0) || (!allow_inf && std::isinf(d))) {
    fail(source, o.value_mark, "clip option '" + o.name + "' = " + o.value.to_string() + " must be a positive number" +
                                   (allow_inf ? " or inf" : ""));
  }
  return d;
}

/// The options of section `name`, a map whose keys are among `known`.
std::vector<ConfigOption> section_options(const ConfigNode& node, const std::string& name,
                                          const std::vector<std::string>& known) {
  if (!node.is_map()) node.fail("section '" + name + "' must be a map, not " + node.kind_name());
  std::vector<ConfigOption> opts;
  for (const auto& e : node.entries("section '" + name + "'")) {
    const std::string& k = e.key.text();
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      e.key.fail("unknown key '" + k + "' in section '" + name + "'" + did_you_mean(k, known) +
                 "; known keys: " + join_names(known));
    }
    opts.push_back(option_of(e));
  }
  return opts;
}

ClipConfig parse_clip(const std::string& source, const ConfigNode& node) {
  const std::vector<ConfigOption> opts =
      section_options(node, "clip", {"max_norm", "norm_type", "error_if_nonfinite", "value"});
  ClipConfig c;
  c.mark = node.mark();
  const ConfigOption* norm = nullptr;
  const ConfigOption* value = nullptr;
  for (const auto& o : opts) {
    if (o.name == "max_norm") {
      norm = &o;
      c.max_norm = clip_number(source, o, false);
    } else if (o.name == "value") {
      value = &o;
      c.value = clip_number(source, o, false);
    } else if (o.name == "norm_type") {
      c.norm_type = clip_number(source, o, true);
    } else if (o.value.type() != ValueType::Bool) {
      fail(source, o.value_mark, "clip option 'error_if_nonfinite' must be true or false, not " + o.value.to_string());
    } else {
      c.error_if_nonfinite = o.value.as_bool();
    }
  }
  if (norm != nullptr && value != nullptr) {
    const ConfigOption* later = norm->key_mark.line > value->key_mark.line ||
                                        (norm->key_mark.line == value->key_mark.line && norm->key_mark.column > value->key_mark.column)
                                    ? norm
                                    : value;
    fail(source, later->key_mark, "section 'clip' takes either 'max_norm' (clip by norm) or 'value' (clip by value), not both");
  }
  if (norm == nullptr && value == nullptr) {
    fail(source, c.mark, "section 'clip' needs 'max_norm' (clip by norm) or 'value' (clip by value)");
  }
  c.mode = norm != nullptr ? ClipConfig::Mode::Norm : ClipConfig::Mode::Value;
  if (c.mode == ClipConfig::Mode::Value) {
    for (const auto& o : opts) {
      if (o.name == "norm_type" || o.name == "error_if_nonfinite") {
        fail(source, o.key_mark, "clip option '" + o.name + "' belongs to clipping by norm ('max_norm'), not by 'value'");
      }
    }
  }
  return c;
}

/// A whole number of section `section` in [lo, hi] (`hi_text` as the message writes it).
std::int64_t section_int(const std::string& source, const std::string& section, const ConfigOption& o, std::int64_t lo,
                         std::int64_t hi, const std::string& hi_text) {
  if (o.value.type() != ValueType::Int || o.value.as_int() < lo || o.value.as_int() > hi) {
    fail(source, o.value_mark, section + " option '" + o.name + "' = " + o.value.to_string() + " must be a whole number in [" +
                                   std::to_string(lo) + ", " + hi_text + "]");
  }
  return o.value.as_int();
}

/// A string of section `section` that is one of `choices`.
std::string section_choice(const std::string& source, const std::string& section, const ConfigOption& o,
                           const std::vector<std::string>& choices) {
  const std::string v = o.value.type() == ValueType::String ? o.value.as_string() : std::string();
  if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
    fail(source, o.value_mark, section + " option '" + o.name + "' = " + o.value.to_string() + " is not one of: " +
                                   join_names(choices));
  }
  return v;
}

AverageConfig parse_average(const std::string& source, const ConfigNode& node) {
  AverageConfig a;
  a.mark = node.mark();
  a.options = section_options(node, "average", {"kind", "decay", "warmup", "every", "start"});
  for (const ConfigOption& o : a.options) {
    if (o.name == "kind") a.settings.kind = average_kind(section_choice(source, "average", o, {"ema", "swa"}));
  }
  for (const ConfigOption& o : a.options) {
    const bool ema_only = o.name == "decay" || o.name == "warmup";
    if (ema_only && a.settings.kind != AverageSettings::Kind::Ema) {
      fail(source, o.key_mark, "average option '" + o.name + "' belongs to kind 'ema'; kind 'swa' averages uniformly");
    }
    if (o.name == "decay") {
      const bool number = o.value.type() == ValueType::Float || o.value.type() == ValueType::Int;
      if (!number || !(o.value.as_float() >= 0.0 && o.value.as_float() < 1.0)) {
        fail(source, o.value_mark, "average option 'decay' = " + o.value.to_string() + " must be a number in [0, 1)");
      }
      a.settings.decay = o.value.as_float();
    } else if (o.name == "warmup") {
      if (o.value.type() != ValueType::Bool) {
        fail(source, o.value_mark, "average option 'warmup' must be true or false, not " + o.value.to_string());
      }
      a.settings.warmup = o.value.as_bool();
    } else if (o.name == "every") {
      a.settings.every = section_int(source, "average", o, 1, kMaxCount, "2^53");
    } else if (o.name == "start") {
      a.settings.start = section_int(source, "average", o, 0, kMaxCount, "2^53");
    }
  }
  return a;
}

AccumulateConfig parse_accumulate(const std::string& source, const ConfigNode& node) {
  AccumulateConfig a;
  a.mark = node.mark();
  a.options = section_options(node, "accumulate", {"steps", "reduce"});
  bool has_steps = false;
  for (const ConfigOption& o : a.options) {
    if (o.name == "steps") {
      a.settings.steps = section_int(source, "accumulate", o, 1, kMaxAccumulateSteps, "2^20");
      has_steps = true;
    } else {
      a.settings.reduce = accumulate_reduce(section_choice(source, "accumulate", o, {"mean", "sum"}));
    }
  }
  if (!has_steps) fail(source, a.mark, "section 'accumulate' needs 'steps': the micro-batches of one update");
  return a;
}

}  // namespace

namespace {

/// An optimizer's map (`what` names it): its name and options, and with `inner:` a wrapper
/// around the optimizer of that map, read the same way.
void parse_optimizer_map(OptimizerConfig& config, const ConfigNode& value, const ConfigNode& key, const std::string& what) {
  if (!value.is_map()) value.fail(what + " must be a map, not " + value.kind_name());
  bool has_name = false;
  std::string name;
  ConfigMark name_mark;
  std::vector<ConfigOption> options;
  std::optional<ConfigEntry> inner;
  for (const auto& e : value.entries(what)) {
    if (e.key.text() == "name") {
      if (!e.value.is_scalar() || e.value.text().empty()) e.value.fail("'name' must be an optimizer name");
      name = e.value.text();
      name_mark = e.value.mark();
      has_name = true;
    } else if (e.key.text() == "inner") {
      inner = e;
    } else {
      options.push_back(option_of(e));
    }
  }
  if (!has_name) key.fail(what + " needs a 'name' (such as 'name: adam')");
  if (!inner) {
    config.optimizer = std::move(name);
    config.optimizer_mark = name_mark;
    config.options = std::move(options);
    return;
  }
  config.wrappers.push_back(WrapperConfig{name, name_mark, std::move(options), inner->key.mark()});
  parse_optimizer_map(config, inner->value, inner->key, "'inner' of optimizer '" + name + "'");
}

void parse_optimizer(OptimizerConfig& config, const ConfigEntry& section) {
  parse_optimizer_map(config, section.value, section.key, "section 'optimizer'");
}

/// A whole number of at least `least` written at `n`, else a ConfigError there naming `what`.
std::int64_t whole_number(const ConfigNode& n, const std::string& what, std::int64_t least) {
  const Value v = n.is_scalar() ? n.to_value(what) : Value();
  if (!n.is_scalar() || v.type() != ValueType::Int || v.as_int() < least) {
    n.fail(what + " must be a whole number of at least " + std::to_string(least));
  }
  return v.as_int();
}

/// The selectors and layer decay of a `param_groups` entry (`e` is one of its keys); false
/// for a key that is none of them.
bool parse_selector(ConfigGroup& group, const ConfigEntry& e, const std::string& what) {
  const std::string& key = e.key.text();
  const std::string at = what + "." + key;
  if (key == "regex") {
    if (!e.value.is_scalar() || e.value.text().empty()) e.value.fail(at + " must be a regular expression");
    try {
      detail::NameRegex check(e.value.text());
    } catch (const std::runtime_error& err) {
      e.value.fail(at + " is not a valid regular expression: " + err.what());
    }
    group.regex = e.value.text();
    group.regex_mark = e.value.mark();
  } else if (key == "ndim") {
    group.ndim = whole_number(e.value, at, 0);
    group.ndim_mark = e.value.mark();
  } else if (key == "shape") {
    if (!e.value.is_list()) e.value.fail(at + " must be a list of extents, such as [10, 784]");
    Shape shape;
    for (const ConfigNode& d : e.value.items()) shape.push_back(whole_number(d, at + " extent", 0));
    group.shape = shape;
    group.shape_mark = e.value.mark();
  } else if (key == "layer_decay") {
    const Value v = e.value.is_scalar() ? e.value.to_value(at) : Value();
    const bool number = v.type() == ValueType::Float || v.type() == ValueType::Int;
    if (!number || !(v.as_float() > 0) || !std::isfinite(v.as_float())) {
      e.value.fail(at + " must be a positive number (timm's 0.65 to 0.9)");
    }
    group.layer_decay = v.as_float();
    group.layer_decay_mark = e.value.mark();
  } else if (key == "num_layers") {
    group.num_layers = whole_number(e.value, at, 1);
    group.num_layers_mark = e.value.mark();
  } else {
    return false;
  }
  return true;
}

void parse_param_groups(OptimizerConfig& config, const ConfigNode& value) {
  if (!value.is_list()) value.fail(std::string("section 'param_groups' must be a list, not ") + value.kind_name());
  const std::vector<ConfigNode> items = value.items();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const ConfigNode& g = items[i];
    const std::string what = "param_groups[" + std::to_string(i) + "]";
    if (!g.is_map()) g.fail(what + " must be a map with 'params', not " + g.kind_name());
    ConfigGroup group;
    group.mark = g.mark();
    bool has_params = false;
    const std::vector<ConfigEntry> entries = g.entries(what);
    const auto at_key = [&](const char* key) -> const ConfigNode& {
      return std::find_if(entries.begin(), entries.end(), [&](const ConfigEntry& e) { return e.key.text() == key; })->value;
    };
    for (const auto& e : entries) {
      if (parse_selector(group, e, what)) continue;
      if (e.key.text() == "params") {
        has_params = true;
        for (auto& [p, m] : string_list(e.value, what + ".params")) {
          group.patterns.push_back(p);
          group.pattern_marks.push_back(m);
        }
      } else if (e.key.text() == "optimizer") {
        if (!e.value.is_scalar() || e.value.text().empty()) {
          e.value.fail(what + ".optimizer must be an optimizer name (the optimizer that steps the group)");
        }
        group.optimizer = e.value.text();
        group.optimizer_mark = e.value.mark();
      } else {
        group.options.push_back(option_of(e));
      }
    }
    if (!has_params && !group.regex && !group.ndim && !group.shape) {
      g.fail(what + " needs 'params' (the parameter names or patterns it holds), or another selector: 'regex', "
                    "'ndim' or 'shape'");
    }
    if (group.layer_decay && !group.regex) {
      at_key("layer_decay").fail(what + ".layer_decay needs a 'regex' whose first capture is the layer of each parameter");
    }
    if (group.num_layers && !group.layer_decay) {
      at_key("num_layers").fail(what + ".num_layers belongs to 'layer_decay', which the group lacks");
    }
    config.groups.push_back(std::move(group));
  }
}

void parse_plugins(OptimizerConfig& config, const ConfigNode& value, const std::string& base_dir) {
  if (!value.is_map()) value.fail(std::string("section 'plugins' must be a map, not ") + value.kind_name());
  for (const auto& e : value.entries("section 'plugins'")) {
    if (e.key.text() != "paths") {
      e.key.fail("unknown key '" + e.key.text() + "' in section 'plugins'" + did_you_mean(e.key.text(), {"paths"}) +
                 "; known keys: paths");
    }
    const fs::path base = base_dir.empty() ? fs::current_path() : fs::path(base_dir);
    for (const auto& [p, m] : string_list(e.value, "plugins.paths")) {
      const fs::path path(p);
      config.plugin_paths.push_back((path.is_absolute() ? path : base / path).lexically_normal().string());
      config.plugin_path_marks.push_back(m);
    }
  }
}

}  // namespace

OptimizerConfig parse_config(const std::string& text, const std::string& source, const std::string& base_dir) {
  return parse_config_sections(parse_config_document(text, source), base_dir, {});
}

OptimizerConfig parse_config_sections(const ConfigNode& root, const std::string& base_dir,
                                      const std::vector<std::string>& host_sections) {
  std::vector<ConfigError> errors;
  OptimizerConfig config = parse_config_sections(root, base_dir, host_sections, errors);
  if (!errors.empty()) throw errors.front();
  return config;
}

OptimizerConfig parse_config_sections(const ConfigNode& root, const std::string& base_dir,
                                      const std::vector<std::string>& host_sections, std::vector<ConfigError>& errors) {
  OptimizerConfig config;
  config.source = root.source();
  if (!root.is_map()) {
    root.fail(std::string("a config must be a map with an 'optimizer' section, not ") +
              (root.is_null() ? std::string("an empty document") : root.kind_name()));
  }
  bool has_optimizer = false;
  for (const auto& e : root.entries("the config")) {
    const std::string& section = e.key.text();
    // A section that fails is left out, and the others are still read.
    try {
      if (section == "optimizer") {
        has_optimizer = true;
        OptimizerConfig parsed;
        parse_optimizer(parsed, e);
        config.optimizer = parsed.optimizer;
        config.optimizer_mark = parsed.optimizer_mark;
        config.options = std::move(parsed.options);
        config.wrappers = std::move(parsed.wrappers);
      } else if (section == "param_groups") {
        OptimizerConfig parsed;
        parse_param_groups(parsed, e.value);
        config.groups = std::move(parsed.groups);
      } else if (section == "plugins") {
        OptimizerConfig parsed;
        parse_plugins(parsed, e.value, base_dir);
        config.plugin_paths = std::move(parsed.plugin_paths);
        config.plugin_path_marks = std::move(parsed.plugin_path_marks);
      } else if (section == "scheduler") {
        config.scheduler = parse_scheduler(config.source, e.value, "section 'scheduler'", false);
      } else if (section == "clip") {
        config.clip = parse_clip(config.source, e.value);
      } else if (section == "average") {
        config.average = parse_average(config.source, e.value);
      } else if (section == "accumulate") {
        config.accumulate = parse_accumulate(config.source, e.value);
      } else if (std::find(host_sections.begin(), host_sections.end(), section) == host_sections.end()) {
        auto known = kSections;
        known.insert(known.end(), host_sections.begin(), host_sections.end());
        e.key.fail("unknown section '" + section + "'" + did_you_mean(section, known) +
                   "; known sections: " + join_names(known));
      }
    } catch (const ConfigError& error) {
      errors.push_back(error);
    }
  }
  if (!has_optimizer) {
    try {
      root.fail("the config has no 'optimizer' section");
    } catch (const ConfigError& error) {
      errors.push_back(error);
    }
  }
  return config;
}

OptimizerConfig load_config(const std::string& path) {
  const ConfigNode root = load_config_document(path);
  return parse_config_sections(root, fs::absolute(path).parent_path().string(), {});
}

std::vector<ParamInfo> load_param_list(const std::string& path) {
  const ConfigNode root = load_config_document(path, "parameter list");
  if (!root.is_map()) root.fail("a parameter list must map each parameter name to its shape");
  std::vector<ParamInfo> out;
  for (const auto& e : root.entries("the parameter list")) {
    ParamInfo p;
    p.name = e.key.text();
    if (!e.value.is_list()) e.value.fail("the shape of '" + p.name + "' must be a list such as [64, 32]");
    for (const auto& d : e.value.items()) {
      const bool number = d.is_scalar() && !d.is_string() && form_of(d.text()) == ScalarForm::Int;
      if (!number || d.text()[0] == '-') d.fail("the shape of '" + p.name + "' must hold non-negative integers");
      p.shape.push_back(parse_int(path, d.mark(), "an extent of '" + p.name + "'", d.text()));
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<Refusal> load_config_plugins(const OptimizerConfig& config, Registry& registry) {
  std::vector<Refusal> refused;
  for (std::size_t i = 0; i < config.plugin_paths.size(); ++i) {
    const std::string& p = config.plugin_paths[i];
    std::error_code ec;
    const fs::file_status status = fs::status(p, ec);
    if (status.type() == fs::file_type::not_found) {
      fail(config.source, config.plugin_path_marks[i], "plugin path " + p + " does not exist");
    }
    if (ec) fail(config.source, config.plugin_path_marks[i], FileRefused{ec.value(), 0}.describe("plugin path " + p));
    if (fs::is_directory(p, ec)) {
      auto r = registry.load_directory(p);
      refused.insert(refused.end(), r.begin(), r.end());
    } else {
      LoadResult r = registry.try_load_file(p);
      if (!r.ok) refused.push_back(r.refusal);
    }
  }
  auto r = registry.load_default();
  refused.insert(refused.end(), r.begin(), r.end());
  return refused;
}

std::string optimizer_names(const OptimizerConfig& config) {
  std::vector<std::string> names{config.optimizer};
  for (const auto& g : config.groups) {
    if (!g.optimizer.empty() && std::find(names.begin(), names.end(), g.optimizer) == names.end()) names.push_back(g.optimizer);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : " + ") + n;
  for (auto it = config.wrappers.rbegin(); it != config.wrappers.rend(); ++it) out = it->name + "(" + out + ")";
  return out;
}

std::unique_ptr<WeightAverage> build_average(const OptimizerConfig& config, Optimizer& optimizer) {
  if (!config.average) return nullptr;
  return std::make_unique<WeightAverage>(optimizer, config.average->settings);
}

std::unique_ptr<GradientAccumulator> build_accumulator(const OptimizerConfig& config, const std::vector<Parameter>& params) {
  if (!config.accumulate) return nullptr;
  return std::make_unique<GradientAccumulator>(params, config.accumulate->settings);
}

std::optional<double> apply_clip(const OptimizerConfig& config, const std::vector<Parameter>& params) {
  if (!config.clip) return std::nullopt;
  const ClipConfig& c = *config.clip;
  if (c.mode == ClipConfig::Mode::Value) {
    clip_grad_value(params, c.value);
    return std::nullopt;
  }
  return clip_grad_norm(params, c.max_norm, c.norm_type, c.error_if_nonfinite);
}

}  // namespace optreg
