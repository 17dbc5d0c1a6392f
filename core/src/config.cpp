// YAML configs (yaml-cpp 0.7): parsing with positions, and building optimizers from them.
#include <optreg/config.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cmath>

#include <filesystem>
#include <map>

#include <yaml-cpp/yaml.h>

#include <optreg/clip.hpp>

#include "config_yaml.hpp"
#include "files.hpp"

namespace optreg {

namespace fs = std::filesystem;

namespace detail {

ConfigMark mark_of(const YAML::Mark& m) {
  // yaml-cpp marks are 0-based, and -1 when unknown.
  return ConfigMark{m.line < 0 ? 1 : m.line + 1, m.column < 0 ? 1 : m.column + 1};
}
ConfigMark mark_of(const YAML::Node& n) { return mark_of(n.Mark()); }

std::string place(const std::string& source, const ConfigMark& m) {
  return source + ":" + std::to_string(m.line) + ":" + std::to_string(m.column) + ": ";
}

[[noreturn]] void fail(const std::string& source, const ConfigMark& m, const std::string& what) {
  throw ConfigError(place(source, m) + what);
}

std::string suggestion(const std::string& name, const std::vector<std::string>& known) {
  const auto near = closest_names(name, known);
  return near.empty() ? std::string() : " (did you mean '" + near.front() + "'?)";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

const char* kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return n.size() == 0 ? "an empty map" : "a map";
    case YAML::NodeType::Sequence: return n.size() == 0 ? "an empty list" : "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    default: return "nothing";
  }
}

/// The pairs of a map node, refusing duplicate and non-scalar keys (yaml-cpp keeps duplicates
/// silently).
std::vector<std::pair<YAML::Node, YAML::Node>> entries(const std::string& source, const YAML::Node& map,
                                                       const std::string& what) {
  std::vector<std::pair<YAML::Node, YAML::Node>> out;
  std::map<std::string, ConfigMark> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar()) fail(source, mark_of(key), "a key of " + what + " must be a name, not " + kind_of(key));
    const auto [at, fresh] = seen.emplace(key.Scalar(), mark_of(key));
    if (!fresh) {
      fail(source, mark_of(key), "duplicate key '" + key.Scalar() + "' in " + what + " (first at line " +
                                     std::to_string(at->second.line) + ", column " + std::to_string(at->second.column) +
                                     ")");
    }
    out.emplace_back(key, it->second);
  }
  return out;
}

}  // namespace detail

namespace {

using namespace detail;

const std::vector<std::string> kSections = {"optimizer", "param_groups", "plugins", "scheduler", "clip"};

}  // namespace

namespace detail {


/// A YAML value as a typed option value (YAML 1.2 core schema for plain scalars; quoted
/// scalars are strings; a list of numbers is a list of floats).
Value to_value(const std::string& source, const std::string& name, const YAML::Node& n) {
  if (n.IsNull()) fail(source, mark_of(n), "option '" + name + "' has no value");
  if (n.IsMap()) fail(source, mark_of(n), "option '" + name + "' must be a value, not a map");
  if (n.IsSequence()) {
    std::vector<double> out;
    for (const auto& e : n) {
      if (!e.IsScalar() || e.Tag() == "!") {
        fail(source, mark_of(e), "option '" + name + "' must be a list of numbers; this element is not a number");
      }
      const Value v = to_value(source, name, e);
      if (v.type() != ValueType::Float && v.type() != ValueType::Int) {
        fail(source, mark_of(e), "option '" + name + "' must be a list of numbers; '" + e.Scalar() + "' is not a number");
      }
      out.push_back(v.as_float());
    }
    return Value(std::move(out));
  }
  const std::string& s = n.Scalar();
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == kStrTag) return Value(s);  // quoted, or tagged !!str
  // A plain scalar, or one tagged !!int, !!float, !!bool or !!null, whose form check_yaml()
  // has found to fit its tag.
  const std::string what = "option '" + name + "'";
  switch (form_of(s)) {
    case ScalarForm::Null: fail(source, mark_of(n), what + " has no value");
    case ScalarForm::Bool: return Value(s[0] == 't' || s[0] == 'T');
    case ScalarForm::Int:
      if (tag == kFloatTag) return Value(parse_float(source, mark_of(n), what, s));
      return Value(parse_int(source, mark_of(n), what, s));
    case ScalarForm::Float: return Value(parse_float(source, mark_of(n), what, s));
    case ScalarForm::String: break;
  }
  return Value(s);
}

}  // namespace detail

namespace {

std::vector<std::pair<std::string, ConfigMark>> string_list(const std::string& source, const YAML::Node& n,
                                                           const std::string& what) {
  std::vector<std::pair<std::string, ConfigMark>> out;
  const auto one = [&](const YAML::Node& e) {
    if (!e.IsScalar() || e.Scalar().empty()) fail(source, mark_of(e), what + " must be a non-empty string");
    out.emplace_back(e.Scalar(), mark_of(e));
  };
  if (n.IsScalar()) {
    one(n);
  } else if (n.IsSequence() && n.size() > 0) {
    for (const auto& e : n) one(e);
  } else {
    fail(source, mark_of(n), what + " must be a string or a non-empty list of strings, not " + kind_of(n));
  }
  return out;
}

ConfigOption option_of(const std::string& source, const YAML::Node& key, const YAML::Node& value) {
  // A missing value is placed at its key: yaml-cpp marks an empty value where the next line starts.
  if (value.IsNull()) {
    fail(source, mark_of(key), "option '" + key.Scalar() + "' has no value");
  }
  return ConfigOption{key.Scalar(), to_value(source, key.Scalar(), value), mark_of(key), mark_of(value)};
}

/// Checks one option against a schema, placing the error at the key (unknown name) or the value.
Value checked(const std::string& source, const Schema& schema, const ConfigOption& o, const std::string& where) {
  try {
    return schema.check(o.name, o.value, where);
  } catch (const OptionError& e) {
    fail(source, schema.find(o.name) == nullptr ? o.key_mark : o.value_mark, e.what());
  }
}

OptimizerDescriptor find_optimizer(const OptimizerConfig& config, const Registry& registry) {
  if (auto d = registry.find(config.optimizer)) return *d;
  std::vector<std::string> known;
  for (const auto& d : registry.list()) known.push_back(d.name);
  fail(config.source, config.optimizer_mark,
       "unknown optimizer '" + config.optimizer + "'" + suggestion(config.optimizer, known) +
           (known.empty() ? "; no plugin is loaded" : "; registered: " + join(known)));
}

Options options_of(const OptimizerConfig& config, const Schema& schema, const std::vector<ConfigOption>& opts,
                   const std::string& where) {
  Options out;
  for (const auto& o : opts) out[o.name] = checked(config.source, schema, o, where);
  return out;
}

/// A `scheduler:` map, or one entry of a sequence's `schedulers` list (`what` names it).
SchedulerConfig parse_scheduler(const std::string& source, const YAML::Node& node, const std::string& what, bool nested) {
  if (!node.IsMap()) fail(source, mark_of(node), what + " must be a map with a 'name', not " + kind_of(node));
  SchedulerConfig sc;
  sc.mark = mark_of(node);
  bool has_name = false;
  YAML::Node list;
  bool has_list = false;
  ConfigMark list_key;
  for (const auto& [k, v] : entries(source, node, what)) {
    if (k.Scalar() == "name") {
      if (!v.IsScalar() || v.Scalar().empty()) fail(source, mark_of(v), "'name' must be a scheduler name");
      sc.name = v.Scalar();
      sc.name_mark = mark_of(v);
      has_name = true;
    } else if (k.Scalar() == "schedulers") {
      list = v;
      has_list = true;
      list_key = mark_of(k);
    } else {
      sc.options.push_back(option_of(source, k, v));
    }
  }
  if (!has_name) fail(source, sc.mark, what + " needs a 'name' (such as 'name: cosine')");
  const bool sequential = sc.name == kSequentialScheduler;
  if (has_list && !sequential) {
    fail(source, list_key, "'schedulers' belongs to scheduler 'sequential', not '" + sc.name + "'");
  }
  if (sequential) {
    if (nested) fail(source, sc.name_mark, "a sequence cannot hold another sequence");
    if (!has_list) fail(source, sc.mark, "scheduler 'sequential' needs 'schedulers': the list of schedulers it runs");
    if (!list.IsSequence()) {
      fail(source, mark_of(list), std::string("'schedulers' must be a list of schedulers, not ") + kind_of(list));
    }
    if (list.size() == 0) fail(source, mark_of(list), "'schedulers' is empty; a sequence needs at least one scheduler");
    for (std::size_t i = 0; i < list.size(); ++i) {
      sc.schedulers.push_back(parse_scheduler(source, list[i], "schedulers[" + std::to_string(i) + "]", true));
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

ClipConfig parse_clip(const std::string& source, const YAML::Node& node) {
  if (!node.IsMap()) fail(source, mark_of(node), std::string("section 'clip' must be a map, not ") + kind_of(node));
  const std::vector<std::string> known = {"max_norm", "norm_type", "error_if_nonfinite", "value"};
  ClipConfig c;
  c.mark = mark_of(node);
  const ConfigOption* norm = nullptr;
  const ConfigOption* value = nullptr;
  std::vector<ConfigOption> opts;
  for (const auto& [k, v] : entries(source, node, "section 'clip'")) {
    if (std::find(known.begin(), known.end(), k.Scalar()) == known.end()) {
      fail(source, mark_of(k), "unknown key '" + k.Scalar() + "' in section 'clip'" + suggestion(k.Scalar(), known) +
                                   "; known keys: " + join(known));
    }
    opts.push_back(option_of(source, k, v));
  }
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

}  // namespace

YAML::Node detail::load_yaml(const std::string& text, const std::string& source) {
  try {
    check_yaml(text, source);  // one document, known tags, bounded nesting
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail(source, mark_of(e.mark), "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    fail(source, mark_of(e.mark), "YAML error: " + e.msg);
  }
}

std::string detail::read_text_file(const std::string& path, const std::string& what) {
  const std::string subject = "the " + what;
  const auto too_large = [&](const std::string& size) {
    return ConfigError(path + ": " + subject + " is " + size + " bytes, above the limit of " +
                       std::to_string(kMaxConfigFileBytes) + " bytes (1 MiB)");
  };
  try {
    std::uint64_t size = 0;
    const UniqueFd fd = open_regular_file(path, &size);  // a FIFO or a device is refused, never waited on
    if (size > kMaxConfigFileBytes) throw too_large(std::to_string(size));
    std::string text;
    // The limit holds for what is read too: the file may have grown since fstat.
    if (!read_at_most(fd.get(), kMaxConfigFileBytes, text)) {
      throw too_large("more than " + std::to_string(kMaxConfigFileBytes));
    }
    return text;
  } catch (const FileRefused& r) {
    throw ConfigError(path + ": " + r.describe(subject));
  }
}

OptimizerConfig parse_config(const std::string& text, const std::string& source, const std::string& base_dir) {
  return detail::parse_config_node(detail::load_yaml(text, source), source, base_dir, {});
}

OptimizerConfig detail::parse_config_node(const YAML::Node& root, const std::string& source,
                                          const std::string& base_dir, const std::vector<std::string>& host_sections) {
  OptimizerConfig config;
  config.source = source;
  if (!root.IsMap()) {
    fail(source, mark_of(root),
         std::string("a config must be a map with an 'optimizer' section, not ") +
             (root.IsNull() || !root.IsDefined() ? std::string("an empty document") : kind_of(root)));
  }
  try {
    bool has_optimizer = false;
    for (const auto& [key, value] : entries(source, root, "the config")) {
      const std::string& section = key.Scalar();
      if (section == "optimizer") {
        has_optimizer = true;
        if (!value.IsMap()) fail(source, mark_of(value), std::string("section 'optimizer' must be a map, not ") + kind_of(value));
        bool has_name = false;
        for (const auto& [k, v] : entries(source, value, "section 'optimizer'")) {
          if (k.Scalar() == "name") {
            if (!v.IsScalar() || v.Scalar().empty()) fail(source, mark_of(v), "'name' must be an optimizer name");
            config.optimizer = v.Scalar();
            config.optimizer_mark = mark_of(v);
            has_name = true;
          } else {
            config.options.push_back(option_of(source, k, v));
          }
        }
        if (!has_name) fail(source, mark_of(key), "section 'optimizer' needs a 'name' (such as 'name: adam')");
      } else if (section == "param_groups") {
        if (!value.IsSequence()) {
          fail(source, mark_of(value), std::string("section 'param_groups' must be a list, not ") + kind_of(value));
        }
        for (std::size_t i = 0; i < value.size(); ++i) {
          const YAML::Node g = value[i];
          const std::string what = "param_groups[" + std::to_string(i) + "]";
          if (!g.IsMap()) fail(source, mark_of(g), what + " must be a map with 'params', not " + kind_of(g));
          ConfigGroup group;
          group.mark = mark_of(g);
          bool has_params = false;
          for (const auto& [k, v] : entries(source, g, what)) {
            if (k.Scalar() == "params") {
              has_params = true;
              for (auto& [p, m] : string_list(source, v, what + ".params")) {
                group.patterns.push_back(p);
                group.pattern_marks.push_back(m);
              }
            } else {
              group.options.push_back(option_of(source, k, v));
            }
          }
          if (!has_params) fail(source, group.mark, what + " needs 'params': the parameter names or patterns it holds");
          config.groups.push_back(std::move(group));
        }
      } else if (section == "plugins") {
        if (!value.IsMap()) fail(source, mark_of(value), std::string("section 'plugins' must be a map, not ") + kind_of(value));
        for (const auto& [k, v] : entries(source, value, "section 'plugins'")) {
          if (k.Scalar() != "paths") {
            fail(source, mark_of(k), "unknown key '" + k.Scalar() + "' in section 'plugins'" +
                                         suggestion(k.Scalar(), {"paths"}) + "; known keys: paths");
          }
          const fs::path base = base_dir.empty() ? fs::current_path() : fs::path(base_dir);
          for (const auto& [p, m] : string_list(source, v, "plugins.paths")) {
            const fs::path path(p);
            config.plugin_paths.push_back((path.is_absolute() ? path : base / path).lexically_normal().string());
            config.plugin_path_marks.push_back(m);
          }
        }
      } else if (section == "scheduler") {
        config.scheduler = parse_scheduler(source, value, "section 'scheduler'", false);
      } else if (section == "clip") {
        config.clip = parse_clip(source, value);
      } else if (std::find(host_sections.begin(), host_sections.end(), section) == host_sections.end()) {
        auto known = kSections;
        known.insert(known.end(), host_sections.begin(), host_sections.end());
        fail(source, mark_of(key), "unknown section '" + section + "'" + suggestion(section, known) +
                                       "; known sections: " + join(known));
      }
    }
    if (!has_optimizer) fail(source, mark_of(root), "the config has no 'optimizer' section");
  } catch (const YAML::Exception& e) {
    fail(source, mark_of(e.mark), "YAML error: " + e.msg);
  }
  return config;
}

OptimizerConfig load_config(const std::string& path) {
  const std::string text = detail::read_text_file(path, "config file");
  return parse_config(text, path, fs::absolute(path).parent_path().string());
}

std::vector<ParamInfo> load_param_list(const std::string& path) {
  const YAML::Node root = detail::load_yaml(detail::read_text_file(path, "parameter list"), path);
  if (!root.IsMap()) fail(path, mark_of(root), "a parameter list must map each parameter name to its shape");
  std::vector<ParamInfo> out;
  for (const auto& [k, v] : entries(path, root, "the parameter list")) {
    ParamInfo p;
    p.name = k.Scalar();
    if (!v.IsSequence()) fail(path, mark_of(v), "the shape of '" + p.name + "' must be a list such as [64, 32]");
    for (const auto& d : v) {
      const bool number = d.IsScalar() && d.Tag() != "!" && d.Tag() != kStrTag && form_of(d.Scalar()) == ScalarForm::Int;
      if (!number || d.Scalar()[0] == '-') {
        fail(path, mark_of(d), "the shape of '" + p.name + "' must hold non-negative integers");
      }
      p.shape.push_back(parse_int(path, mark_of(d), "an extent of '" + p.name + "'", d.Scalar()));
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

GroupPlan plan_groups(const OptimizerConfig& config, const std::vector<std::string>& names) {
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!seen.emplace(names[i], i).second) {
      throw UsageError("two parameters are named '" + names[i] + "' (positions " + std::to_string(seen[names[i]]) +
                       " and " + std::to_string(i) + "); config groups match parameters by name");
    }
  }
  std::vector<int> owner(names.size(), -1);
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const ConfigGroup& group = config.groups[g];
    for (std::size_t k = 0; k < group.patterns.size(); ++k) {
      bool any = false;
      for (std::size_t i = 0; i < names.size(); ++i) {
        if (::fnmatch(group.patterns[k].c_str(), names[i].c_str(), 0) != 0) continue;
        any = true;
        if (owner[i] < 0) owner[i] = static_cast<int>(g);
      }
      if (!any) {
        fail(config.source, group.pattern_marks[k],
             "pattern '" + group.patterns[k] + "' of param_groups[" + std::to_string(g) + "] matches no parameter" +
                 suggestion(group.patterns[k], names));
      }
    }
  }
  GroupPlan plan;
  GroupPlan::Group fallback;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (owner[i] < 0) fallback.params.push_back(i);
  }
  if (!fallback.params.empty()) plan.groups.push_back(std::move(fallback));
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    GroupPlan::Group group;
    group.config_index = static_cast<int>(g);
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (owner[i] == static_cast<int>(g)) group.params.push_back(i);
    }
    if (group.params.empty()) {
      fail(config.source, config.groups[g].mark,
           "param_groups[" + std::to_string(g) + "] gets no parameter: every parameter its patterns match is taken by "
           "an earlier group");
    }
    plan.groups.push_back(std::move(group));
  }
  return plan;
}

void check_config(const OptimizerConfig& config, const Registry& registry) {
  const OptimizerDescriptor d = find_optimizer(config, registry);
  const Schema& schema = *d.schema;
  const std::string what = "optimizer '" + d.name + "'";
  const Options defaults = options_of(config, schema, config.options, what);
  // The optimizer's own rules (nesterov needs momentum) are checked by creating it, once for
  // the defaults and once for each group, each over a stand-in parameter.
  try {
    registry.create(d.name, std::vector<ParamGroupSpec>{}, defaults);
  } catch (const OptionError& e) {
    fail(config.source, config.optimizer_mark, e.what());
  }
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const std::string where = what + ", param_groups[" + std::to_string(g) + "]";
    const Options overrides = options_of(config, schema, config.groups[g].options, where);
    try {
      registry.create(d.name, std::vector<ParamGroupSpec>{{{Parameter("stand-in", Tensor({1}))}, overrides}}, defaults);
    } catch (const OptionError& e) {
      // Name the config's group rather than the stand-in optimizer's.
      std::string m = e.what();
      const std::string inner = what + ", param group 0: ";
      if (m.rfind(inner, 0) == 0) m = m.substr(inner.size());
      fail(config.source, config.groups[g].mark, where + ": " + m);
    }
  }
  if (config.scheduler) {
    // The scheduler's own rules and its fit to the optimizer (onecycle's momentum) are checked
    // by making it over a stand-in optimizer with the config's defaults.
    OptimizerPtr stand_in =
        registry.create(d.name, std::vector<ParamGroupSpec>{{{Parameter("stand-in", Tensor({1}))}, {}}}, defaults);
    build_scheduler(config, *stand_in, registry);
  }
}

namespace {

SchedulerDescriptor find_scheduler(const std::string& source, const SchedulerConfig& sc, const Registry& registry) {
  if (auto d = registry.find_scheduler(sc.name)) return *d;
  std::vector<std::string> known;
  for (const auto& d : registry.list_schedulers()) known.push_back(d.name);
  fail(source, sc.name_mark, "unknown scheduler '" + sc.name + "'" + suggestion(sc.name, known) + "; registered: " + join(known));
}

/// Makes one scheduler of a config (not a sequence) over `optimizer`.
SchedulerPtr make_scheduler(const std::string& source, const SchedulerConfig& sc, Optimizer& optimizer,
                            const Registry& registry, const std::string& what) {
  const SchedulerDescriptor d = find_scheduler(source, sc, registry);
  Options options;
  for (const auto& o : sc.options) options[o.name] = checked(source, *d.schema, o, what);
  try {
    return registry.create_scheduler(d.name, optimizer, options);
  } catch (const OptionError& e) {
    fail(source, sc.name_mark, e.what());
  } catch (const UsageError& e) {
    fail(source, sc.name_mark, e.what());
  }
}

}  // namespace

SchedulerPtr build_scheduler(const OptimizerConfig& config, Optimizer& optimizer, const Registry& registry) {
  if (!config.scheduler) return nullptr;
  const SchedulerConfig& sc = *config.scheduler;
  const std::string& source = config.source;
  if (sc.name != kSequentialScheduler) return make_scheduler(source, sc, optimizer, registry, "scheduler '" + sc.name + "'");

  const std::string what = std::string("scheduler '") + kSequentialScheduler + "'";
  const Schema& schema = *sequential_schema();
  std::vector<std::int64_t> milestones;
  ConfigMark milestones_mark = sc.mark;
  for (const auto& o : sc.options) {
    const Value v = checked(source, schema, o, what);
    milestones_mark = o.value_mark;
    for (double m : v.as_float_list()) {
      if (m != std::floor(m) || m > 9.0e18) {
        fail(source, o.value_mark, what + ": option 'milestones' must hold whole numbers of steps; " + Value(m).to_string() +
                                       " is not one");
      }
      milestones.push_back(static_cast<std::int64_t>(m));
    }
  }
  if (milestones.size() + 1 != sc.schedulers.size()) {
    fail(source, milestones_mark, what + " needs one milestone fewer than schedulers: got " +
                                      std::to_string(sc.schedulers.size()) + " schedulers and " +
                                      std::to_string(milestones.size()) + " milestones");
  }
  // Every child is attached at the optimizer's own lrs, as PyTorch's children all record the
  // same initial lrs.
  std::vector<double> base;
  for (const auto& g : optimizer.param_groups()) base.push_back(g.option("lr").as_float());
  std::vector<SchedulerPtr> children;
  for (std::size_t i = 0; i < sc.schedulers.size(); ++i) {
    const SchedulerConfig& child = sc.schedulers[i];
    const std::string at = what + ", schedulers[" + std::to_string(i) + "]";
    const SchedulerDescriptor d = find_scheduler(source, child, registry);
    if (d.needs_metric) {
      fail(source, child.name_mark, at + ": scheduler '" + d.name + "' is driven by a metric; a sequence steps its "
                                    "schedulers by count");
    }
    for (std::size_t g = 0; g < base.size(); ++g) optimizer.set_option(g, "lr", Value(base[g]));
    children.push_back(make_scheduler(source, child, optimizer, registry, at + " ('" + child.name + "')"));
  }
  try {
    return make_sequential(optimizer, std::move(children), milestones);
  } catch (const UsageError& e) {
    fail(source, milestones_mark, e.what());
  }
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

OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                             const Registry& registry) {
  check_config(config, registry);
  const OptimizerDescriptor d = *registry.find(config.optimizer);
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name());
  const GroupPlan plan = plan_groups(config, names);
  std::vector<ParamGroupSpec> specs;
  for (const auto& g : plan.groups) {
    ParamGroupSpec spec;
    for (std::size_t i : g.params) spec.params.push_back(params[i]);
    if (g.config_index >= 0) {
      spec.options = options_of(config, *d.schema, config.groups[static_cast<std::size_t>(g.config_index)].options, "");
    }
    specs.push_back(std::move(spec));
  }
  const Options defaults = options_of(config, *d.schema, config.options, "");
  return registry.create(d.name, std::move(specs), defaults);
}

}  // namespace optreg
