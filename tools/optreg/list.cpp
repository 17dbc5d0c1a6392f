// optreg list / optreg show: what the registry holds.
#include <algorithm>
#include <cstdio>
#include <cmath>
#include <iostream>
#include <memory>

#include <optreg/abi.hpp>
#include <optreg/config_document.hpp>

#include "cli.hpp"
#include "isolate.hpp"
#include "schedule_plot.hpp"

namespace optreg::cli {

namespace {

std::string range_text(const Hyperparameter& h) {
  switch (h.type) {
    case ValueType::Bool: return "true|false";
    case ValueType::String: {
      if (h.choices.empty()) return "any";
      std::string s;
      for (const auto& c : h.choices) s += (s.empty() ? "" : "|") + escape_text(c);
      return s;
    }
    case ValueType::FloatList:
      return (h.list_size ? std::to_string(h.list_size) + " x " : std::string("each ")) + h.range.to_string();
    default: return h.range.to_string(h.type);
  }
}

/// The ValueType whose printing rules a state entry's values follow.
ValueType value_type(StateKind kind) { return kind == StateKind::Int ? ValueType::Int : ValueType::Float; }

/// What a state entry may hold, as `optreg list` prints it.
std::string domain_text(const StateEntry& e) {
  return e.domain ? "in " + e.domain->to_string(value_type(e.kind)) : std::string("any value");
}

void print_schema_table(const Schema& schema, std::ostream& out) {
  std::vector<std::vector<std::string>> rows = {{"name", "type", "default", "range", "meaning"}};
  for (const auto& h : schema.entries()) {
    rows.push_back({escape_text(h.name), to_string(h.type), h.default_value.to_string(), range_text(h),
                    escape_text(h.meaning)});
  }
  std::vector<std::size_t> width(5, 0);
  for (const auto& r : rows) {
    for (std::size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], r[c].size());
  }
  for (const auto& r : rows) {
    out << "    ";
    for (std::size_t c = 0; c < 4; ++c) out << r[c] << std::string(width[c] - r[c].size() + 2, ' ');
    out << r[4] << '\n';
  }
}

/// The state dtypes an optimizer may keep: its step's arithmetic dtypes, then those it declares
/// for the `state_dtype` option.
std::vector<std::string> state_dtype_names(const OptimizerDescriptor& d) {
  std::vector<std::string> out{"float32"};
  if ((d.param_dtypes & dtype_bit(DType::Float64)) != 0) out.emplace_back("float64");
  if ((d.state_dtypes & abi::kStateBFloat16) != 0) out.emplace_back("bfloat16");
  if ((d.state_dtypes & abi::kStateInt8) != 0) out.emplace_back("int8");
  return out;
}

/// The parameter dtypes an optimizer steps, by name.
std::vector<std::string> param_dtype_names(const OptimizerDescriptor& d) {
  std::vector<std::string> out;
  for (const DType t : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    if ((d.param_dtypes & dtype_bit(t)) != 0) out.emplace_back(dtype_name(t));
  }
  return out;
}

/// The state tensors shaped like their parameter that every parameter has (optional and
/// own-shaped entries left out).
std::size_t shaped_state_tensors(const OptimizerDescriptor& d) {
  std::size_t n = 0;
  for (const auto& e : *d.state) n += e.kind == StateKind::Tensor && !e.optional && !e.custom_shape ? 1 : 0;
  return n;
}

/// The state tensors the bytes per element leave out, named with why: optional ones (kept
/// under some options) and own-shaped ones (Adafactor's factored rows and columns).
std::string uncounted_state(const OptimizerDescriptor& d) {
  std::string out;
  for (const auto& e : *d.state) {
    if (e.kind != StateKind::Tensor || (!e.optional && !e.custom_shape)) continue;
    out += (out.empty() ? "" : ", ") + escape_text(e.name) + (e.custom_shape ? " (own shape)" : " (optional)");
  }
  return out;
}

/// Bytes of state per parameter element in float32: 4 per shaped state tensor.
std::size_t state_bytes_per_element(const OptimizerDescriptor& d) { return 4 * shaped_state_tensors(d); }

/// Bytes of state per parameter element for each `state_dtype` the optimizer takes: float32 4
/// per shaped state tensor, bfloat16 2, int8 1 and a float scale per block.
std::vector<std::pair<std::string, double>> state_bytes_by_dtype(const OptimizerDescriptor& d) {
  const auto n = static_cast<double>(shaped_state_tensors(d));
  std::vector<std::pair<std::string, double>> out{{"float32", 4 * n}};
  if ((d.state_dtypes & abi::kStateBFloat16) != 0) out.emplace_back("bfloat16", 2 * n);
  if ((d.state_dtypes & abi::kStateInt8) != 0) {
    out.emplace_back("int8", n * (1.0 + static_cast<double>(sizeof(float)) / static_cast<double>(kQuantBlock)));
  }
  return out;
}

std::string bytes_text(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", bytes);
  return buf;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void print_text(const OptimizerDescriptor& d, std::ostream& out) {
  out << escape_text(d.name) << "  " << escape_text(d.plugin_version) << "  " << escape_text(d.description) << '\n';
  out << "  from " << escape_text(d.source) << " (plugin " << escape_text(d.plugin_name) << ")\n";
  print_schema_table(*d.schema, out);
  out << "  dtypes: parameters " << joined(param_dtype_names(d)) << "; state " << joined(state_dtype_names(d)) << '\n';
  if (d.flags != 0) out << "  flags: " << joined(optimizer_flag_names(d.flags)) << '\n';
  if ((d.flags & abi::kOptimizerWrapper) != 0) {
    out << "  a wrapper: it steps with the optimizer it wraps, which a config gives as\n"
        << "    optimizer: {name: " << escape_text(d.name) << ", ..., inner: {name: adam, ...}}\n"
        << "  (its state follows the inner optimizer's in each parameter's state)\n";
  }
  out << "  state bytes per parameter element:";
  for (const auto& [dtype, bytes] : state_bytes_by_dtype(d)) out << ' ' << dtype << ' ' << bytes_text(bytes);
  out << " (state_dtype)\n";
  if (const std::string more = uncounted_state(d); !more.empty()) out << "  not counted above: " << more << '\n';
  if (d.state && !d.state->empty()) {
    out << "  state per parameter:\n";
    std::size_t width = 0;
    for (const auto& e : *d.state) width = std::max(width, escape_text(e.name).size());
    for (const auto& e : *d.state) {
      std::string kind = to_string(e.kind);
      if (e.optional) kind += ", optional";
      if (e.custom_shape) kind += ", own shape";
      kind += ", " + domain_text(e);
      const std::string name = escape_text(e.name);
      out << "    " << name << std::string(width - name.size() + 2, ' ') << escape_text(e.meaning) << " (" << kind
          << ")\n";
    }
  }
}

/// The ends of a range as JSON members of `out`: an infinite end is null, inclusive when +-inf
/// itself is allowed (never for an int); the ends of an int range are integers.
void add_range_json(Json& out, const Range& r, ValueType type) {
  const auto end = [&](double d) -> Json {
    if (std::isinf(d)) return nullptr;
    if (type == ValueType::Int && d == std::floor(d) && std::fabs(d) < 9.2e18) return static_cast<std::int64_t>(d);
    return json_number(d);
  };
  const auto inclusive = [&](double d, bool open) { return !(open || (type == ValueType::Int && std::isinf(d))); };
  out["min"] = end(r.lo);
  out["min_inclusive"] = inclusive(r.lo, r.lo_open);
  out["max"] = end(r.hi);
  out["max_inclusive"] = inclusive(r.hi, r.hi_open);
}

Json schema_json(const Schema& schema) {
  Json list = Json::array();
  for (const auto& h : schema.entries()) {
    Json e = {{"name", json_text(h.name)}, {"type", json_text(to_string(h.type))}, {"default", json_value(h.default_value)}};
    if (h.type == ValueType::Int || h.type == ValueType::Float || h.type == ValueType::FloatList) {
      add_range_json(e, h.range, h.type);
    }
    if (h.type == ValueType::FloatList) e["length"] = h.list_size;
    if (!h.choices.empty()) {
      Json& choices = e["choices"] = Json::array();
      for (const auto& c : h.choices) choices.push_back(json_text(c));
    }
    e["meaning"] = json_text(h.meaning);
    list.push_back(std::move(e));
  }
  return list;
}

Json state_json(const StateSchema& state) {
  Json list = Json::array();
  for (const auto& e : state) {
    Json domain = nullptr;
    if (e.domain) add_range_json(domain, *e.domain, value_type(e.kind));
    list.push_back(Json{{"name", json_text(e.name)}, {"kind", json_text(to_string(e.kind))}, {"optional", e.optional},
                        {"own_shape", e.custom_shape}, {"domain", domain}, {"meaning", json_text(e.meaning)}});
  }
  return list;
}

/// What optimizers and schedulers both describe, from their name to their provenance.
template <typename Descriptor>
Json provenance_json(const Descriptor& d) {
  return Json{{"name", json_text(d.name)}, {"version", json_text(d.plugin_version)}, {"plugin", json_text(d.plugin_name)},
              {"source", json_text(d.source)}};
}

Json descriptor_json(const OptimizerDescriptor& d) {
  Json j = provenance_json(d);
  j["description"] = json_text(d.description);
  j["hyperparameters"] = schema_json(*d.schema);
  j["state"] = state_json(*d.state);
  j["param_dtypes"] = param_dtype_names(d);
  j["state_dtypes"] = state_dtype_names(d);
  j["kind"] = (d.flags & abi::kOptimizerWrapper) != 0 ? "wrapper" : "optimizer";
  j["flags"] = optimizer_flag_names(d.flags);
  j["state_bytes_per_element"] = state_bytes_per_element(d);
  Json by_dtype = Json::object();
  for (const auto& [dtype, bytes] : state_bytes_by_dtype(d)) by_dtype[dtype] = bytes;
  j["state_bytes_per_element_by_state_dtype"] = by_dtype;
  Json uncounted = Json::array();
  for (const auto& e : *d.state) {
    if (e.kind != StateKind::Tensor || (!e.optional && !e.custom_shape)) continue;
    uncounted.push_back({{"name", e.name}, {"why", e.custom_shape ? "own shape" : "optional"}});
  }
  j["state_not_counted"] = uncounted;
  return j;
}

void print_text(const SchedulerDescriptor& d, std::ostream& out) {
  out << escape_text(d.name) << "  " << escape_text(d.plugin_version) << "  " << escape_text(d.description) << '\n';
  out << "  from "
      << (d.source == "built in" ? std::string("the core (built in)")
                                 : escape_text(d.source) + " (plugin " + escape_text(d.plugin_name) + ")")
      << "; stepped " << (d.needs_metric ? "with a metric: step(metric)" : "once per optimizer step: step()") << '\n';
  print_schema_table(*d.schema, out);
}

Json descriptor_json(const SchedulerDescriptor& d) {
  Json j = provenance_json(d);
  j["needs_metric"] = d.needs_metric;
  j["description"] = json_text(d.description);
  j["hyperparameters"] = schema_json(*d.schema);
  return j;
}

template <typename Descriptor>
Json descriptors_json(const std::vector<Descriptor>& all) {
  Json list = Json::array();
  for (const auto& d : all) list.push_back(descriptor_json(d));
  return list;
}

const CommandHelp kListHelp = {
    "optreg list [--json] [--plugin-path DIR|FILE]... [--no-default-path] [--allow-refused]\n"
    "                   [--isolate [--timeout SECONDS]]",
    "list every loaded optimizer and scheduler, its schema, and refused plugins",
    "Lists every loaded optimizer, then every learning-rate scheduler, with its version, source\n"
    "file and hyperparameter schema, and every plugin that was refused with the reason.",
    "Exit status: 0 when every plugin loaded, 1 when any was refused, 2 on a usage error.",
};

const CommandHelp kShowHelp = {
    "optreg show NAME [--json] [--plugin-path DIR|FILE]... [--no-default-path]\n"
    "       optreg show SCHEDULER --plot FILE [--with YAML] [--steps N] [--lr LR]",
    "show one optimizer or scheduler",
    "Shows one optimizer or learning-rate scheduler (both when both kinds have the name):\n"
    "version, source file, description and hyperparameter schema. With --plot, draws the\n"
    "scheduler's learning rate over --steps steps (default 100) from --lr (default 0.1) to FILE\n"
    "(.svg or .png, through gnuplot, with FILE.dat and FILE.gp beside it); --with gives its\n"
    "options as a YAML flow map, such as --with '{T_max: 100, eta_min: 0.001}'.",
    "",
};

/// The arguments of `optreg list`.
struct ListArgs {
  PluginOptions plugins;
  bool json = false;
  bool allow_refused = false;
  std::string timeout;  // --timeout as given
};

/// The arguments of `optreg show`.
struct ShowArgs {
  PluginOptions plugins;
  bool json = false;
  std::string name;
  std::string plot;   // --plot FILE
  std::string with;   // --with YAML: the scheduler's options
  std::int64_t steps = 100;
  double lr = 0.1;
};

/// `optreg show SCHEDULER --plot FILE`: the scheduler made with the options of --with over a
/// stand-in optimizer at --lr, and its schedule drawn.
int run_show_plot(const ShowArgs& args, const Registry& registry, std::ostream& out) {
  if (!registry.find_scheduler(args.name)) {
    throw CommandLineError{"optreg show: --plot draws a learning-rate scheduler's schedule, and '" + args.name +
                           "' is not a scheduler"};
  }
  if (!(args.lr > 0) || !std::isfinite(args.lr)) {
    throw CommandLineError{"optreg show: --lr must be a positive finite number, not " + Value(args.lr).to_string()};
  }
  Options options;
  if (!args.with.empty()) {
    const ConfigNode node = parse_config_document(args.with, "--with");
    if (!node.is_map() && !node.is_null()) {
      node.fail("--with must be a YAML map of the scheduler's options, such as '{T_max: 100}', not " +
                std::string(node.kind_name()));
    }
    const Schema& schema = *registry.find_scheduler(args.name)->schema;
    for (const ConfigEntry& e : node.entries("--with")) {
      options[e.key.text()] = checked_option(schema, e, "scheduler '" + args.name + "'");
    }
  }
  OptimizerPtr stand_in = schedule_stand_in(args.lr);
  SchedulerPtr scheduler = registry.create_scheduler(args.name, *stand_in, options);
  const std::vector<double> last =
      plot_schedule(*stand_in, *scheduler, args.steps, args.plot,
                    "scheduler " + args.name + (args.with.empty() ? "" : " " + args.with) + ", lr " + Value(args.lr).to_string());
  out << "plot: " << escape_text(args.plot) << " (" << args.steps << " steps; lr " << Value(last.front()).to_string()
      << " at the last)\n";
  return kOk;
}

void print_list_json(const Registry& registry, const std::vector<Refusal>& refused, std::ostream& out) {
  const Json j = {{"optimizers", descriptors_json(registry.list())},
                  {"schedulers", descriptors_json(registry.list_schedulers())},
                  {"refused", refusals_json(refused)}};
  out << json_block(j) << '\n';
}

void print_list_text(const Registry& registry, const std::vector<Refusal>& refused, std::ostream& out) {
  const auto all = registry.list();
  const auto schedulers = registry.list_schedulers();
  if (all.empty()) out << "no optimizer is registered\n";
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i) out << '\n';
    print_text(all[i], out);
  }
  out << "\nlearning-rate schedulers:\n";
  for (std::size_t i = 0; i < schedulers.size(); ++i) {
    if (i) out << '\n';
    print_text(schedulers[i], out);
  }
  if (!refused.empty()) {
    out << "\nrefused plugins:\n";
    for (const auto& r : refused) out << "  " << escape_text(r.path) << ": " << escape_message(r.reason) << '\n';
  }
}

int run_list(ListArgs args, std::ostream& out, std::ostream& err) {
  if (!args.timeout.empty()) {
    if (!args.plugins.isolate) throw CommandLineError{"optreg list: --timeout goes with --isolate"};
    args.plugins.timeout = parse_timeout("optreg list: --timeout", args.timeout);
  }
  Registry registry;
  const std::vector<Refusal> refused = load_plugins(registry, args.plugins);
  if (args.json) {
    print_list_json(registry, refused, out);
  } else {
    print_list_text(registry, refused, out);
  }
  if (!refused.empty() && !args.allow_refused) {
    err << "optreg list: " << refused.size() << " plugin" << (refused.size() == 1 ? " was" : "s were")
        << " refused (see above; --allow-refused to exit 0)\n";
    return kFailure;
  }
  return kOk;
}

/// "no optimizer or scheduler named 'x' is registered (did you mean 'y'?)"
std::string not_found_message(const Registry& registry, const std::string& name) {
  std::vector<std::string> known;
  for (const auto& x : registry.list()) known.push_back(x.name);
  for (const auto& x : registry.list_schedulers()) known.push_back(x.name);
  return unknown_name_message("no optimizer or scheduler named " + quoted_name(name) + " is registered", name, known,
                              ListKnown::No);
}

int run_show(const ShowArgs& args, std::ostream& out, std::ostream& err) {
  if (args.name.empty()) throw CommandLineError{"optreg show: name the optimizer or scheduler to show"};
  Registry registry;
  load_plugins(registry, args.plugins);
  if (!args.plot.empty()) return run_show_plot(args, registry, out);
  const auto d = registry.find(args.name);
  const auto s = registry.find_scheduler(args.name);
  if (!d && !s) {
    const std::string message = not_found_message(registry, args.name);
    if (args.json) out << json_line(Json{{"name", json_text(args.name)}, {"error", json_message(message)}}) << '\n';
    err << "optreg show: " << message << '\n';
    return kFailure;
  }
  if (args.json) {
    // One object for one kind, on one line as in the listing; both kinds under their names
    // when both have it.
    if (d && s) {
      out << json_block(Json{{"optimizer", descriptor_json(*d)}, {"scheduler", descriptor_json(*s)}}) << '\n';
    } else {
      out << json_line(d ? descriptor_json(*d) : descriptor_json(*s)) << '\n';
    }
  } else {
    if (d) print_text(*d, out);
    if (d && s) out << '\n';
    if (s) print_text(*s, out);
  }
  return kOk;
}

void add_list_command(CLI::App& root, int& status) {
  auto list = std::make_shared<ListArgs>();
  CLI::App& list_command = add_command(root, "list", kListHelp);
  add_json_flag(list_command, list->json);
  add_plugin_options(list_command, list->plugins);
  list_command.add_flag("--allow-refused", list->allow_refused, "exit 0 even when a plugin was refused");
  list_command.add_flag("--isolate", list->plugins.isolate,
                        "load each plugin file in a child process first; a file whose loading\n"
                        "crashes, aborts or hangs there is refused by name and never loaded\n"
                        "into this process (loading a library runs its code: see\n"
                        "docs/plugin-abi.md)");
  list_command.add_option("--timeout", list->timeout, "with --isolate, the time each file may take to load (default 10)")
      ->type_name("SECONDS");
  run_when_parsed(list_command, "optreg list: unknown argument", status,
                  [list] { return run_list(*list, std::cout, std::cerr); });
}

void add_show_command(CLI::App& root, int& status) {
  auto show = std::make_shared<ShowArgs>();
  CLI::App& show_command = add_command(root, "show", kShowHelp);
  add_positional(show_command, "NAME", show->name, "the optimizer or scheduler");
  add_json_flag(show_command, show->json);
  add_plugin_options(show_command, show->plugins);
  CLI::Option* plot =
      show_command.add_option("--plot", show->plot, "draw the scheduler's learning rate to FILE (.svg or .png)")
          ->type_name("FILE");
  show_command.add_option("--with", show->with, "with --plot, the scheduler's options as a YAML flow map")
      ->type_name("YAML")
      ->needs(plot);
  show_command.add_option("--steps", show->steps, "with --plot, the steps drawn (default 100)")
      ->type_name("N")
      ->needs(plot);
  show_command.add_option("--lr", show->lr, "with --plot, the lr the scheduler starts from (default 0.1)")
      ->type_name("LR")
      ->needs(plot);
  run_when_parsed(show_command, "optreg show: unexpected argument", status,
                  [show] { return run_show(*show, std::cout, std::cerr); });
}

}  // namespace

void add_registry_commands(CLI::App& root, int& status) {
  add_list_command(root, status);
  add_show_command(root, status);
}

}  // namespace optreg::cli
