// optreg check: validates a config and prints it resolved.
#include <iostream>
#include <memory>
#include <optional>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include <optreg/abi.hpp>
#include <optreg/config.hpp>

#include "cli.hpp"
#include "schedule_plot.hpp"

namespace optreg::cli {

namespace {

namespace fs = std::filesystem;

const CommandHelp kCheckHelp = {
    "optreg check CONFIG [--params FILE] [--plot-lr FILE [--steps N]] [--json] [--plugin-path DIR|FILE]...",
    "validate a config and print it resolved",
    "Validates a config: its structure, the optimizer name and every option against the\n"
    "optimizer's schema, and its scheduler, clip, average and accumulate sections. Prints\n"
    "the resolved configuration with every default filled in and, with --params, which\n"
    "parameters land in which group.\n"
    "Reports every error it finds in one run, each at its file:line:column (--json: the list\n"
    "\"errors\"), and stops early only where an error leaves nothing to check.",
    "Plugins are loaded from --plugin-path, then the config's plugins.paths, then\n"
    "OPTREG_PLUGIN_PATH, then the installed plugin folder.\n"
    "With --plot-lr FILE (.svg or .png), also draws the learning rate its scheduler gives each\n"
    "param group over --steps steps (default 100): the groups of --params when given, else one\n"
    "group at the config's defaults.\n"
    "Exit status: 0 when the config is valid, 1 when it is not, 2 on a usage error.",
};

/// The arguments of `optreg check`.
struct CheckArgs {
  PluginOptions plugins;
  bool json = false;
  std::string path;
  std::string params_path;
  std::string plot_lr;  // --plot-lr FILE
  std::int64_t steps = 100;
};

std::string patterns_text(const ConfigGroup& g) {
  std::string s;
  for (const auto& p : g.patterns) s += (s.empty() ? "" : ", ") + Value(p).to_string();
  return s;
}

/// A group's selectors as `check` prints them: `params "*.bias", ndim 1`.
std::string selectors_text(const ConfigGroup& g) {
  std::string s = g.patterns.empty() ? std::string() : "params " + patterns_text(g);
  const auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (g.regex) add("regex " + Value(*g.regex).to_string());
  if (g.ndim) add("ndim " + std::to_string(*g.ndim));
  if (g.shape) add("shape " + to_string(*g.shape));
  if (g.layer_decay) add("layer_decay " + Value(*g.layer_decay).to_string());
  return s;
}

Json patterns_json(const ConfigGroup& g) {
  Json list = Json::array();
  for (const auto& p : g.patterns) list.push_back(json_text(p));
  return list;
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

std::string average_text(const AverageSettings& a) {
  std::string out = to_string(a.kind);
  if (a.kind == AverageSettings::Kind::Ema) {
    out += ", decay " + Value(a.decay).to_string() + (a.warmup ? " with warm-up" : "");
  }
  return out + ", every " + std::to_string(a.every) + " steps from step " + std::to_string(a.start);
}

Json average_json(const AverageSettings& a) {
  Json j = {{"kind", to_string(a.kind)}};
  if (a.kind == AverageSettings::Kind::Ema) {
    j["decay"] = json_number(a.decay);
    j["warmup"] = a.warmup;
  }
  j["every"] = a.every;
  j["start"] = a.start;
  return j;
}

std::string accumulate_text(const AccumulateSettings& a) {
  return std::to_string(a.steps) + " micro-batches per update, reduced by " + to_string(a.reduce);
}

Json accumulate_json(const AccumulateSettings& a) { return Json{{"steps", a.steps}, {"reduce", to_string(a.reduce)}}; }

/// The wrappers of a config, outermost first: each one's name, version, source and options.
Json wrappers_json(const std::vector<ResolvedWrapper>& wrappers) {
  Json out = Json::array();
  for (const ResolvedWrapper& w : wrappers) {
    out.push_back(Json{{"name", json_text(w.descriptor.name)}, {"version", json_text(w.descriptor.plugin_version)},
                       {"source", json_text(w.descriptor.source)}, {"options", options_json(w.options)}});
  }
  return out;
}

/// A group as `optreg check` shows it.
struct ShownGroup {
  std::string label;
  const ConfigGroup* config = nullptr;
  /// The optimizer that steps it.
  OptimizerDescriptor optimizer;
  Options options;
  std::vector<ParamInfo> params;
};

/// What `optreg check` prints of a valid config.
struct Shown {
  ResolvedConfig resolved;
  std::vector<ShownGroup> groups;
};

/// The groups to show: the config's own, or with --params, the parameters in each group.
std::vector<ShownGroup> shown_groups(const OptimizerConfig& config, const ResolvedConfig& r,
                                     const std::optional<std::vector<ParamInfo>>& params) {
  std::vector<ShownGroup> out;
  if (!params) {
    for (std::size_t g = 0; g < config.groups.size(); ++g) {
      out.push_back(ShownGroup{"param_groups[" + std::to_string(g) + "]", &config.groups[g], r.group_optimizers[g],
                               r.groups[g], {}});
    }
    return out;
  }
  for (const auto& g : r.plan->groups) {
    ShownGroup group;
    if (g.config_index < 0) {
      group.label = "default group (parameters no pattern matches)";
      group.optimizer = r.optimizer;
      group.options = r.defaults;
    } else {
      const auto index = static_cast<std::size_t>(g.config_index);
      group.config = &config.groups[index];
      group.label = "param_groups[" + std::to_string(index) + "]";
      if (g.layer >= 0) group.label += " layer " + std::to_string(g.layer);
      group.optimizer = r.group_optimizers[index];
      group.options = r.groups[index];
      if (g.lr_scale != 1.0) group.options["lr"] = Value(group.options.at("lr").as_float() * g.lr_scale);
    }
    for (std::size_t i : g.params) group.params.push_back((*params)[i]);
    out.push_back(std::move(group));
  }
  return out;
}

Json groups_json(const Shown& r, bool with_params) {
  Json list = Json::array();
  for (const auto& g : r.groups) {
    Json j = {{"group", json_text(g.label)}, {"patterns", g.config ? patterns_json(*g.config) : Json::array()},
              {"selectors", json_text(g.config ? selectors_text(*g.config) : std::string())},
              {"optimizer", json_text(g.optimizer.name)}, {"options", options_json(g.options)}};
    if (with_params) {
      Json& params = j["params"] = Json::array();
      for (const auto& p : g.params) params.push_back(Json{{"name", json_text(p.name)}, {"shape", json_text(to_string(p.shape))}});
    }
    list.push_back(std::move(j));
  }
  return list;
}

void print_json(const CheckArgs& args, const OptimizerConfig& config, const Shown& shown,
                const std::vector<Refusal>& refused, std::ostream& out) {
  const ResolvedConfig& r = shown.resolved;
  Json plugin_paths = Json::array();
  for (const auto& p : config.plugin_paths) plugin_paths.push_back(json_text(p));
  const Json j = {{"config", json_text(args.path)},
                  {"valid", true},
                  {"optimizer", {{"name", json_text(r.optimizer.name)}, {"version", json_text(r.optimizer.plugin_version)},
                                 {"source", json_text(r.optimizer.source)}}},
                  {"wrappers", wrappers_json(r.wrappers)},
                  {"defaults", options_json(r.defaults)},
                  {"groups", groups_json(shown, !args.params_path.empty())},
                  {"scheduler", r.scheduler ? scheduler_json(*r.scheduler) : Json(nullptr)},
                  {"clip", config.clip ? clip_json(*config.clip) : Json(nullptr)},
                  {"average", config.average ? average_json(config.average->settings) : Json(nullptr)},
                  {"accumulate", config.accumulate ? accumulate_json(config.accumulate->settings) : Json(nullptr)},
                  {"plugin_paths", plugin_paths},
                  {"refused", refusals_json(refused)}};
  out << json_block(j) << '\n';
}

void print_text(const CheckArgs& args, const OptimizerConfig& config, const Shown& shown, std::ostream& out) {
  const ResolvedConfig& r = shown.resolved;
  out << "config " << escape_text(args.path) << " is valid\n";
  for (const ResolvedWrapper& w : r.wrappers) {
    out << "wrapper: " << escape_text(w.descriptor.name) << " " << escape_text(w.descriptor.plugin_version) << " (from "
        << escape_text(w.descriptor.source) << "): " << options_text(w.options) << '\n';
  }
  out << (r.wrappers.empty() ? "optimizer: " : "inner optimizer: ") << escape_text(r.optimizer.name) << " "
      << escape_text(r.optimizer.plugin_version) << " (from " << escape_text(r.optimizer.source) << ")\n";
  out << "defaults: " << options_text(r.defaults) << '\n';
  for (const auto& g : shown.groups) {
    out << g.label;
    if (g.config) out << " (" << selectors_text(*g.config) << ")";
    if (g.optimizer.name != r.optimizer.name) out << ", optimizer " << escape_text(g.optimizer.name);
    out << ": " << options_text(g.options) << '\n';
    for (const auto& p : g.params) out << "    " << escape_text(p.name) << " " << to_string(p.shape) << '\n';
  }
  if (r.scheduler) out << "scheduler: " << scheduler_text(*r.scheduler, "");
  if (config.clip) out << "clip: " << clip_text(*config.clip) << '\n';
  if (config.average) out << "average: " << average_text(config.average->settings) << '\n';
  if (config.accumulate) out << "accumulate: " << accumulate_text(config.accumulate->settings) << '\n';
  if (!config.plugin_paths.empty()) {
    out << "plugin paths:";
    for (const auto& p : config.plugin_paths) out << ' ' << escape_text(p);
    out << '\n';
  }
}

Json errors_json(const std::vector<ConfigError>& errors) {
  Json list = Json::array();
  for (const auto& e : errors) {
    list.push_back(Json{{"file", json_text(e.file())},
                        {"line", e.line()},
                        {"column", e.column()},
                        {"reason", json_message(e.reason())},
                        {"message", json_message(e.what())}});
  }
  return list;
}

/// A parameter of --params that its group's optimizer cannot step (a vector in a group of an
/// optimizer of matrices only): a ConfigError at the group's optimizer.
std::vector<ConfigError> misfits(const OptimizerConfig& config, const Shown& shown) {
  std::vector<ConfigError> errors;
  for (const ShownGroup& g : shown.groups) {
    if ((g.optimizer.flags & abi::kOptimizerMatricesOnly) == 0) continue;
    for (const ParamInfo& p : g.params) {
      if (p.shape.size() == 2) continue;
      const ConfigMark& at = g.config == nullptr || g.config->optimizer.empty() ? config.optimizer_mark : g.config->optimizer_mark;
      errors.emplace_back(config.source, at.line, at.column,
                          g.label + ": parameter '" + p.name + "' has shape " + to_string(p.shape) + ", but optimizer '" +
                              g.optimizer.name + "' steps matrices (2-dimensional parameters) only");
      break;
    }
  }
  return errors;
}

/// Every error of the config at `path`: each malformed section, then, for the sections that
/// parsed, everything resolve_config() finds; nothing when it is valid (then `shown` is set).
std::vector<ConfigError> check_file(const CheckArgs& args, Registry& registry, std::vector<Refusal>& refused,
                                    OptimizerConfig& config, std::optional<Shown>& shown) {
  std::vector<ConfigError> errors;
  const ConfigNode root = load_config_document(args.path);
  config = parse_config_sections(root, fs::absolute(args.path).parent_path().string(), {}, errors);
  refused = load_plugins(registry, PluginOptions{args.plugins.paths, false});
  try {
    const auto more = load_config_plugins(config, registry);
    refused.insert(refused.end(), more.begin(), more.end());
  } catch (const ConfigError& e) {  // a plugin path that does not exist: the rest is still checked
    errors.push_back(e);
    const auto more = registry.load_default();
    refused.insert(refused.end(), more.begin(), more.end());
  }
  std::optional<std::vector<ParamInfo>> params;
  if (!args.params_path.empty()) {
    try {
      params = load_param_list(args.params_path);
    } catch (const ConfigError& e) {  // a bad --params file: the config is still checked
      errors.push_back(e);
    }
  }
  ConfigCheck check = params ? resolve_config_with_shapes(config, registry, *params) : resolve_config(config, registry);
  errors.insert(errors.end(), check.errors.begin(), check.errors.end());
  // The config's errors in the order of its lines, then those of the --params file.
  const auto order = [&](const ConfigError& e) { return std::make_tuple(e.file() != config.source, e.line(), e.column()); };
  std::stable_sort(errors.begin(), errors.end(),
                   [&](const ConfigError& a, const ConfigError& b) { return order(a) < order(b); });
  if (errors.empty()) shown = Shown{*check.resolved, shown_groups(config, *check.resolved, params)};
  if (shown && params) errors = misfits(config, *shown);
  if (!errors.empty()) shown.reset();
  return errors;
}

/// `--plot-lr FILE`: the config's optimizer over a stand-in parameter of one element per
/// parameter of --params (so that the config's groups form as they would), or over one
/// parameter at the defaults, and its scheduler's schedule drawn.
/// Returns the line that says so.
std::string plot_config_lr(const CheckArgs& args, const OptimizerConfig& config, const Shown& shown,
                           const Registry& registry) {
  if (!config.scheduler) {
    throw UsageError("--plot-lr draws a config's schedule, and " + args.path + " has no scheduler section");
  }
  OptimizerPtr opt;
  if (!args.params_path.empty()) {
    // Each parameter stands in with its number of dimensions, extents of 1 (its real shape
    // where a group selects by shape), so that the groups form as they would.
    const bool by_shape =
        std::any_of(config.groups.begin(), config.groups.end(), [](const ConfigGroup& g) { return g.shape.has_value(); });
    std::vector<Parameter> params;
    for (const ShownGroup& g : shown.groups) {
      for (const ParamInfo& p : g.params) params.emplace_back(p.name, Tensor(by_shape ? p.shape : Shape(p.shape.size(), 1)));
    }
    opt = build_optimizer(config, params, registry);
  } else {
    opt = registry.create(config.optimizer, std::vector<Parameter>{Parameter("stand_in", Tensor({1, 1}))},
                          shown.resolved.defaults);
  }
  SchedulerPtr scheduler = build_scheduler(config, *opt, registry);
  const std::vector<double> last =
      plot_schedule(*opt, *scheduler, args.steps, args.plot_lr, "schedule of " + args.path);
  return "plot: " + escape_text(args.plot_lr) + " (" + std::to_string(args.steps) + " steps of " +
         std::to_string(last.size()) + (last.size() == 1 ? " param group)\n" : " param groups)\n");
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
  // be loaded), is reported the same way: with --json as a JSON object too, whose "error" is
  // the first and "errors" all of them.
  const auto invalid = [&](const std::vector<ConfigError>& errors, const std::string& message) {
    if (args.json) {
      out << json_line(Json{{"config", json_text(args.path)}, {"valid", false}, {"error", json_message(message)},
                            {"errors", errors_json(errors)}, {"refused", refusals_json(refused)}})
          << '\n';
    }
    warn_refused();
    if (errors.empty()) err << "optreg check: " << escape_message(message) << '\n';
    for (const auto& e : errors) err << "optreg check: " << e.what() << '\n';
    if (errors.size() > 1) err << "optreg check: " << errors.size() << " errors in " << escape_text(args.path) << '\n';
    return kFailure;
  };

  try {
    OptimizerConfig config;
    std::optional<Shown> shown;
    const std::vector<ConfigError> errors = check_file(args, registry, refused, config, shown);
    if (!errors.empty()) return invalid(errors, errors.front().what());
    const std::string plotted = args.plot_lr.empty() ? std::string() : plot_config_lr(args, config, *shown, registry);
    if (args.json) {
      print_json(args, config, *shown, refused, out);
    } else {
      print_text(args, config, *shown, out);
      if (!plotted.empty()) out << '\n' << plotted;
    }
    warn_refused();
    return kOk;
  } catch (const ConfigError& e) {
    return invalid({e}, e.what());
  } catch (const OptionError& e) {
    return invalid({}, args.path + ": " + e.what());
  } catch (...) {
    return invalid({}, current_error_message());
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
  CLI::Option* plot =
      command.add_option("--plot-lr", args->plot_lr, "draw the learning rate of the config's schedule to FILE (.svg or .png)")
          ->type_name("FILE");
  command.add_option("--steps", args->steps, "with --plot-lr, the steps drawn (default 100)")->type_name("N")->needs(plot);
  add_json_flag(command, args->json);
  add_plugin_options(command, args->plugins);
  run_when_parsed(command, "optreg check: unexpected argument", status,
                  [args] { return run_check(*args, std::cout, std::cerr); });
}

}  // namespace optreg::cli
