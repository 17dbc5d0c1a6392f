// optreg check: validates a config and prints it resolved.
#include <cmath>
#include <ostream>

#include <optional>

#include <optreg/config.hpp>

#include "cli.hpp"

namespace optreg::cli {

namespace {

const char* kCheckHelp =
    "usage: optreg check CONFIG [--params FILE] [--json] [--plugin-path DIR|FILE]...\n"
    "\n"
    "Validates a config: its structure, the optimizer name and every option against the\n"
    "optimizer's schema, and its scheduler and clip sections. Prints the resolved configuration\n"
    "with every default filled in and, with --params, which parameters land in which group.\n"
    "\n"
    "  --params FILE       a YAML map from parameter name to shape, such as 'fc.weight: [10, 784]'\n"
    "  --json              machine-readable output\n"
    "  --plugin-path P     load a plugin folder or file before the config's own (repeatable)\n"
    "\n"
    "Plugins are loaded from --plugin-path, then the config's plugins.paths, then\n"
    "OPTREG_PLUGIN_PATH, then the installed plugin folder.\n"
    "Exit status: 0 when the config is valid, 1 when it is not, 2 on a usage error.\n";

std::string patterns_text(const ConfigGroup& g, bool json) {
  std::string s;
  for (const auto& p : g.patterns) s += (s.empty() ? "" : ", ") + (json ? json_string(p) : Value(p).to_string());
  return json ? "[" + s + "]" : s;
}

/// One scheduler of the config with every option resolved (a sequence: its schedulers too).
struct ResolvedScheduler {
  SchedulerDescriptor descriptor;
  Options options;
  std::vector<ResolvedScheduler> children;
};

ResolvedScheduler resolve_scheduler(const SchedulerConfig& sc, const Registry& registry) {
  ResolvedScheduler r;
  r.descriptor = *registry.find_scheduler(sc.name);  // check_config() found it
  Options given;
  for (const auto& o : sc.options) given[o.name] = r.descriptor.schema->check(o.name, o.value, "");
  r.options = r.descriptor.schema->resolve(r.descriptor.schema->defaults(), given, "");
  for (const auto& c : sc.schedulers) r.children.push_back(resolve_scheduler(c, registry));
  return r;
}

std::string scheduler_text(const ResolvedScheduler& r, const std::string& indent) {
  std::string s = escape_text(r.descriptor.name) + " " + escape_text(r.descriptor.plugin_version) + " (from " +
                  escape_text(r.descriptor.source) + "): " + options_text(r.options) + '\n';
  for (std::size_t i = 0; i < r.children.size(); ++i) {
    s += indent + "  schedulers[" + std::to_string(i) + "]: " + scheduler_text(r.children[i], indent + "  ");
  }
  return s;
}

std::string scheduler_json(const ResolvedScheduler& r) {
  std::string s = "{\"name\": " + json_string(r.descriptor.name) + ", \"version\": " +
                  json_string(r.descriptor.plugin_version) + ", \"source\": " + json_string(r.descriptor.source) +
                  ", \"options\": " + options_json(r.options);
  if (!r.children.empty()) {
    s += ", \"schedulers\": [";
    for (std::size_t i = 0; i < r.children.size(); ++i) s += (i ? ", " : "") + scheduler_json(r.children[i]);
    s += "]";
  }
  return s + "}";
}

std::string clip_text(const ClipConfig& c) {
  if (c.mode == ClipConfig::Mode::Value) return "by value, to [-" + Value(c.value).to_string() + ", " + Value(c.value).to_string() + "]";
  return "by norm, max_norm " + Value(c.max_norm).to_string() + ", norm_type " + Value(c.norm_type).to_string() +
         (c.error_if_nonfinite ? ", error if not finite" : "");
}

std::string clip_json(const ClipConfig& c) {
  if (c.mode == ClipConfig::Mode::Value) return "{\"mode\": \"value\", \"value\": " + json_number(c.value) + "}";
  return "{\"mode\": \"norm\", \"max_norm\": " + json_number(c.max_norm) +
         ", \"norm_type\": " + json_number(c.norm_type) +
         ", \"error_if_nonfinite\": " + (c.error_if_nonfinite ? "true" : "false") + "}";
}

struct ResolvedGroup {
  std::string label;
  const ConfigGroup* config = nullptr;
  Options options;
  std::vector<ParamInfo> params;
};

}  // namespace

int run_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  PluginOptions plugins;
  bool json = false;
  std::string path;
  std::string params_path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out << kCheckHelp;
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (a == "--params") {
      if (i + 1 >= args.size()) throw UsageError{"optreg check: --params needs a file"};
      params_path = args[++i];
    } else if (parse_plugin_option(args, i, plugins)) {
    } else if (path.empty() && a.rfind("-", 0) != 0) {
      path = a;
    } else {
      throw UsageError{"optreg check: unexpected argument '" + a + "'"};
    }
  }
  if (path.empty()) throw UsageError{"optreg check: name the config file"};

  Registry registry;
  std::vector<Refusal> refused;
  const auto refused_json = [&] {
    std::string s = "[";
    for (std::size_t i = 0; i < refused.size(); ++i) {
      s += (i ? ", " : "") + std::string("{\"path\": ") + json_string(refused[i].path) +
           ", \"reason\": " + json_message(refused[i].reason) + "}";
    }
    return s + "]";
  };
  const auto warn_refused = [&] {
    for (const auto& r : refused) {
      err << "optreg check: warning: refused plugin " << escape_text(r.path) << ": " << escape_message(r.reason) << '\n';
    }
  };
  // Every failure, the config's own or not (a file that cannot be read, a plugin that cannot
  // be loaded), is reported the same way: with --json as a JSON object too.
  const auto invalid = [&](const std::string& message) {
    if (json) {
      out << "{\"config\": " << json_string(path) << ", \"valid\": false, \"error\": " << json_message(message)
          << ", \"refused\": " << refused_json() << "}\n";
    }
    warn_refused();
    err << "optreg check: " << escape_message(message) << '\n';
    return kFailure;
  };

  try {
    const OptimizerConfig config = load_config(path);
    refused = load_plugins(registry, PluginOptions{plugins.paths, false});
    const auto more = load_config_plugins(config, registry);
    refused.insert(refused.end(), more.begin(), more.end());
    check_config(config, registry);
    const OptimizerDescriptor d = *registry.find(config.optimizer);
    const Schema& schema = *d.schema;
    Options overrides;
    for (const auto& o : config.options) overrides[o.name] = schema.check(o.name, o.value, "");
    const Options defaults = schema.resolve(schema.defaults(), overrides, "");
    const auto group_options = [&](const ConfigGroup& g) {
      Options o;
      for (const auto& x : g.options) o[x.name] = schema.check(x.name, x.value, "");
      return schema.resolve(defaults, o, "");
    };

    std::optional<ResolvedScheduler> scheduler;
    if (config.scheduler) scheduler = resolve_scheduler(*config.scheduler, registry);

    std::vector<ResolvedGroup> groups;
    if (!params_path.empty()) {
      const std::vector<ParamInfo> params = load_param_list(params_path);
      std::vector<std::string> names;
      for (const auto& p : params) names.push_back(p.name);
      for (const auto& g : plan_groups(config, names).groups) {
        ResolvedGroup r;
        if (g.config_index < 0) {
          r.label = "default group (parameters no pattern matches)";
          r.options = defaults;
        } else {
          r.config = &config.groups[static_cast<std::size_t>(g.config_index)];
          r.label = "param_groups[" + std::to_string(g.config_index) + "]";
          r.options = group_options(*r.config);
        }
        for (std::size_t i : g.params) r.params.push_back(params[i]);
        groups.push_back(std::move(r));
      }
    } else {
      for (std::size_t g = 0; g < config.groups.size(); ++g) {
        groups.push_back(ResolvedGroup{"param_groups[" + std::to_string(g) + "]", &config.groups[g],
                                       group_options(config.groups[g]), {}});
      }
    }

    if (json) {
      out << "{\n  \"config\": " << json_string(path) << ",\n  \"valid\": true,\n  \"optimizer\": {\"name\": "
          << json_string(d.name) << ", \"version\": " << json_string(d.plugin_version)
          << ", \"source\": " << json_string(d.source) << "},\n  \"defaults\": " << options_json(defaults)
          << ",\n  \"groups\": [";
      for (std::size_t g = 0; g < groups.size(); ++g) {
        const auto& r = groups[g];
        out << (g ? ",\n" : "\n") << "    {\"group\": " << json_string(r.label)
            << ", \"patterns\": " << (r.config ? patterns_text(*r.config, true) : "[]")
            << ", \"options\": " << options_json(r.options);
        if (!params_path.empty()) {
          out << ", \"params\": [";
          for (std::size_t i = 0; i < r.params.size(); ++i) {
            out << (i ? ", " : "") << "{\"name\": " << json_string(r.params[i].name) << ", \"shape\": "
                << json_string(to_string(r.params[i].shape)) << "}";
          }
          out << "]";
        }
        out << "}";
      }
      out << (groups.empty() ? "]" : "\n  ]") << ",\n  \"scheduler\": " << (scheduler ? scheduler_json(*scheduler) : "null")
          << ",\n  \"clip\": " << (config.clip ? clip_json(*config.clip) : "null") << ",\n  \"plugin_paths\": [";
      for (std::size_t i = 0; i < config.plugin_paths.size(); ++i) {
        out << (i ? ", " : "") << json_string(config.plugin_paths[i]);
      }
      out << "],\n  \"refused\": " << refused_json() << "\n}\n";
    } else {
      out << "config " << escape_text(path) << " is valid\n";
      out << "optimizer: " << escape_text(d.name) << " " << escape_text(d.plugin_version) << " (from "
          << escape_text(d.source) << ")\n";
      out << "defaults: " << options_text(defaults) << '\n';
      for (const auto& r : groups) {
        out << r.label;
        if (r.config) out << " (params " << patterns_text(*r.config, false) << ")";
        out << ": " << options_text(r.options) << '\n';
        for (const auto& p : r.params) out << "    " << escape_text(p.name) << " " << to_string(p.shape) << '\n';
      }
      if (scheduler) out << "scheduler: " << scheduler_text(*scheduler, "");
      if (config.clip) out << "clip: " << clip_text(*config.clip) << '\n';
      if (!config.plugin_paths.empty()) {
        out << "plugin paths:";
        for (const auto& p : config.plugin_paths) out << ' ' << escape_text(p);
        out << '\n';
      }
    }
    warn_refused();
    return kOk;
  } catch (const OptionError& e) {
    return invalid(path + ": " + e.what());
  } catch (...) {
    return invalid(current_error_message());
  }
}

}  // namespace optreg::cli
