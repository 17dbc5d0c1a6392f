// optreg check: validates a config and prints it resolved.
#include <iostream>
#include <memory>
#include <optional>

#include <optreg/config.hpp>

#include "cli.hpp"

namespace optreg::cli {

namespace {

const CommandHelp kCheckHelp = {
    "optreg check CONFIG [--params FILE] [--json] [--plugin-path DIR|FILE]...",
    "validate a config and print it resolved",
    "Validates a config: its structure, the optimizer name and every option against the\n"
    "optimizer's schema, and its scheduler and clip sections. Prints the resolved configuration\n"
    "with every default filled in and, with --params, which parameters land in which group.",
    "Plugins are loaded from --plugin-path, then the config's plugins.paths, then\n"
    "OPTREG_PLUGIN_PATH, then the installed plugin folder.\n"
    "Exit status: 0 when the config is valid, 1 when it is not, 2 on a usage error.",
};

/// The arguments of `optreg check`.
struct CheckArgs {
  PluginOptions plugins;
  bool json = false;
  std::string path;
  std::string params_path;
};

std::string patterns_text(const ConfigGroup& g) {
  std::string s;
  for (const auto& p : g.patterns) s += (s.empty() ? "" : ", ") + Value(p).to_string();
  return s;
}

Json patterns_json(const ConfigGroup& g) {
  Json list = Json::array();
  for (const auto& p : g.patterns) list.push_back(json_text(p));
  return list;
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

Json scheduler_json(const ResolvedScheduler& r) {
  Json j = {{"name", json_text(r.descriptor.name)}, {"version", json_text(r.descriptor.plugin_version)},
            {"source", json_text(r.descriptor.source)}, {"options", options_json(r.options)}};
  if (!r.children.empty()) {
    Json& children = j["schedulers"] = Json::array();
    for (const auto& c : r.children) children.push_back(scheduler_json(c));
  }
  return j;
}

std::string clip_text(const ClipConfig& c) {
  if (c.mode == ClipConfig::Mode::Value) return "by value, to [-" + Value(c.value).to_string() + ", " + Value(c.value).to_string() + "]";
  return "by norm, max_norm " + Value(c.max_norm).to_string() + ", norm_type " + Value(c.norm_type).to_string() +
         (c.error_if_nonfinite ? ", error if not finite" : "");
}

Json clip_json(const ClipConfig& c) {
  if (c.mode == ClipConfig::Mode::Value) return Json{{"mode", "value"}, {"value", json_number(c.value)}};
  return Json{{"mode", "norm"}, {"max_norm", json_number(c.max_norm)}, {"norm_type", json_number(c.norm_type)},
              {"error_if_nonfinite", c.error_if_nonfinite}};
}

struct ResolvedGroup {
  std::string label;
  const ConfigGroup* config = nullptr;
  Options options;
  std::vector<ParamInfo> params;
};

/// A valid config with every default filled in: what `optreg check` prints.
struct ResolvedConfig {
  OptimizerDescriptor optimizer;
  Options defaults;
  std::vector<ResolvedGroup> groups;
  std::optional<ResolvedScheduler> scheduler;
};

/// Resolves a config that check_config() accepted; with `params_path`, groups the parameters
/// that file lists as the optimizer would.
ResolvedConfig resolve(const OptimizerConfig& config, const Registry& registry, const std::string& params_path) {
  ResolvedConfig r;
  r.optimizer = *registry.find(config.optimizer);
  const Schema& schema = *r.optimizer.schema;
  Options overrides;
  for (const auto& o : config.options) overrides[o.name] = schema.check(o.name, o.value, "");
  r.defaults = schema.resolve(schema.defaults(), overrides, "");
  const auto group_options = [&](const ConfigGroup& g) {
    Options o;
    for (const auto& x : g.options) o[x.name] = schema.check(x.name, x.value, "");
    return schema.resolve(r.defaults, o, "");
  };
  if (config.scheduler) r.scheduler = resolve_scheduler(*config.scheduler, registry);
  if (params_path.empty()) {
    for (std::size_t g = 0; g < config.groups.size(); ++g) {
      r.groups.push_back(ResolvedGroup{"param_groups[" + std::to_string(g) + "]", &config.groups[g],
                                       group_options(config.groups[g]), {}});
    }
    return r;
  }
  const std::vector<ParamInfo> params = load_param_list(params_path);
  std::vector<std::string> names;
  for (const auto& p : params) names.push_back(p.name);
  for (const auto& g : plan_groups(config, names).groups) {
    ResolvedGroup group;
    if (g.config_index < 0) {
      group.label = "default group (parameters no pattern matches)";
      group.options = r.defaults;
    } else {
      group.config = &config.groups[static_cast<std::size_t>(g.config_index)];
      group.label = "param_groups[" + std::to_string(g.config_index) + "]";
      group.options = group_options(*group.config);
    }
    for (std::size_t i : g.params) group.params.push_back(params[i]);
    r.groups.push_back(std::move(group));
  }
  return r;
}

Json groups_json(const ResolvedConfig& r, bool with_params) {
  Json list = Json::array();
  for (const auto& g : r.groups) {
    Json j = {{"group", json_text(g.label)}, {"patterns", g.config ? patterns_json(*g.config) : Json::array()},
              {"options", options_json(g.options)}};
    if (with_params) {
      Json& params = j["params"] = Json::array();
      for (const auto& p : g.params) params.push_back(Json{{"name", json_text(p.name)}, {"shape", json_text(to_string(p.shape))}});
    }
    list.push_back(std::move(j));
  }
  return list;
}

void print_json(const CheckArgs& args, const OptimizerConfig& config, const ResolvedConfig& r,
                const std::vector<Refusal>& refused, std::ostream& out) {
  Json plugin_paths = Json::array();
  for (const auto& p : config.plugin_paths) plugin_paths.push_back(json_text(p));
  const Json j = {{"config", json_text(args.path)},
                  {"valid", true},
                  {"optimizer", {{"name", json_text(r.optimizer.name)}, {"version", json_text(r.optimizer.plugin_version)},
                                 {"source", json_text(r.optimizer.source)}}},
                  {"defaults", options_json(r.defaults)},
                  {"groups", groups_json(r, !args.params_path.empty())},
                  {"scheduler", r.scheduler ? scheduler_json(*r.scheduler) : Json(nullptr)},
                  {"clip", config.clip ? clip_json(*config.clip) : Json(nullptr)},
                  {"plugin_paths", plugin_paths},
                  {"refused", refusals_json(refused)}};
  out << json_block(j) << '\n';
}

void print_text(const CheckArgs& args, const OptimizerConfig& config, const ResolvedConfig& r, std::ostream& out) {
  out << "config " << escape_text(args.path) << " is valid\n";
  out << "optimizer: " << escape_text(r.optimizer.name) << " " << escape_text(r.optimizer.plugin_version) << " (from "
      << escape_text(r.optimizer.source) << ")\n";
  out << "defaults: " << options_text(r.defaults) << '\n';
  for (const auto& g : r.groups) {
    out << g.label;
    if (g.config) out << " (params " << patterns_text(*g.config) << ")";
    out << ": " << options_text(g.options) << '\n';
    for (const auto& p : g.params) out << "    " << escape_text(p.name) << " " << to_string(p.shape) << '\n';
  }
  if (r.scheduler) out << "scheduler: " << scheduler_text(*r.scheduler, "");
  if (config.clip) out << "clip: " << clip_text(*config.clip) << '\n';
  if (!config.plugin_paths.empty()) {
    out << "plugin paths:";
    for (const auto& p : config.plugin_paths) out << ' ' << escape_text(p);
    out << '\n';
  }
}

int run_check(const CheckArgs& args, std::ostream& out, std::ostream& err) {
  if (args.path.empty()) throw CommandLineError{"optreg check: name the config file"};
  Registry registry;
  std::vector<Refusal> refused;
  const auto warn_refused = [&] {
    for (const auto& r : refused) {
      err << "optreg check: warning: refused plugin " << escape_text(r.path) << ": " << escape_message(r.reason) << '\n';
    }
  };
  // Every failure, the config's own or not (a file that cannot be read, a plugin that cannot
  // be loaded), is reported the same way: with --json as a JSON object too.
  const auto invalid = [&](const std::string& message) {
    if (args.json) {
      out << json_line(Json{{"config", json_text(args.path)}, {"valid", false}, {"error", json_message(message)},
                            {"refused", refusals_json(refused)}})
          << '\n';
    }
    warn_refused();
    err << "optreg check: " << escape_message(message) << '\n';
    return kFailure;
  };

  try {
    const OptimizerConfig config = load_config(args.path);
    refused = load_plugins(registry, PluginOptions{args.plugins.paths, false});
    const auto more = load_config_plugins(config, registry);
    refused.insert(refused.end(), more.begin(), more.end());
    check_config(config, registry);
    const ResolvedConfig resolved = resolve(config, registry, args.params_path);
    if (args.json) {
      print_json(args, config, resolved, refused, out);
    } else {
      print_text(args, config, resolved, out);
    }
    warn_refused();
    return kOk;
  } catch (const OptionError& e) {
    return invalid(args.path + ": " + e.what());
  } catch (...) {
    return invalid(current_error_message());
  }
}

}  // namespace

void add_check_command(CLI::App& root, int& status) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App& command = add_command(root, "check", kCheckHelp);
  add_positional(command, "CONFIG", args->path, "the config file");
  command.add_option("--params", args->params_path,
                     "a YAML map from parameter name to shape, such as 'fc.weight: [10, 784]'")
      ->type_name("FILE");
  add_json_flag(command, args->json);
  add_plugin_options(command, args->plugins);
  run_when_parsed(command, "optreg check: unexpected argument", status,
                  [args] { return run_check(*args, std::cout, std::cerr); });
}

}  // namespace optreg::cli
