// optreg list / optreg show: what the registry holds.
#include <algorithm>
#include <cmath>
#include <ostream>

#include "cli.hpp"
#include "isolate.hpp"

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

void print_text(const OptimizerDescriptor& d, std::ostream& out) {
  out << escape_text(d.name) << "  " << escape_text(d.plugin_version) << "  " << escape_text(d.description) << '\n';
  out << "  from " << escape_text(d.source) << " (plugin " << escape_text(d.plugin_name) << ")\n";
  print_schema_table(*d.schema, out);
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

/// The ends of a range as JSON fields: an infinite end is null, inclusive when +-inf itself is
/// allowed (never for an int); the ends of an int range are integers.
std::string range_json(const Range& r, ValueType type) {
  const auto end = [&](double d) {
    if (std::isinf(d)) return std::string("null");
    if (type == ValueType::Int && d == std::floor(d) && std::fabs(d) < 9.2e18) return std::to_string(static_cast<std::int64_t>(d));
    return json_number(d);
  };
  const auto inclusive = [&](double d, bool open) { return open || (type == ValueType::Int && std::isinf(d)) ? "false" : "true"; };
  return "\"min\": " + end(r.lo) + ", \"min_inclusive\": " + inclusive(r.lo, r.lo_open) + ", \"max\": " + end(r.hi) +
         ", \"max_inclusive\": " + inclusive(r.hi, r.hi_open);
}

std::string schema_json(const Schema& schema, const std::string& indent) {
  std::string s = "[";
  bool first = true;
  for (const auto& h : schema.entries()) {
    s += first ? "\n" : ",\n";
    first = false;
    s += indent + "  {\"name\": " + json_string(h.name) + ", \"type\": " + json_string(to_string(h.type)) +
         ", \"default\": " + json_value(h.default_value);
    if (h.type == ValueType::Int || h.type == ValueType::Float || h.type == ValueType::FloatList) {
      s += ", " + range_json(h.range, h.type);
    }
    if (h.type == ValueType::FloatList) s += ", \"length\": " + std::to_string(h.list_size);
    if (!h.choices.empty()) {
      s += ", \"choices\": [";
      for (std::size_t i = 0; i < h.choices.size(); ++i) s += (i ? ", " : "") + json_string(h.choices[i]);
      s += "]";
    }
    s += ", \"meaning\": " + json_string(h.meaning) + "}";
  }
  return s + (first ? "]" : "\n" + indent + "]");
}

std::string state_json(const StateSchema& state) {
  std::string s = "[";
  for (std::size_t i = 0; i < state.size(); ++i) {
    const auto& e = state[i];
    s += std::string(i ? ", " : "") + "{\"name\": " + json_string(e.name) + ", \"kind\": " + json_string(to_string(e.kind)) +
         ", \"optional\": " + (e.optional ? "true" : "false") + ", \"own_shape\": " + (e.custom_shape ? "true" : "false") +
         ", \"domain\": " + (e.domain ? "{" + range_json(*e.domain, value_type(e.kind)) + "}" : std::string("null")) +
         ", \"meaning\": " + json_string(e.meaning) + "}";
  }
  return s + "]";
}

std::string descriptor_json(const OptimizerDescriptor& d, const std::string& indent) {
  return indent + "{\"name\": " + json_string(d.name) + ", \"version\": " + json_string(d.plugin_version) +
         ", \"plugin\": " + json_string(d.plugin_name) + ", \"source\": " + json_string(d.source) +
         ",\n" + indent + " \"description\": " + json_string(d.description) +
         ",\n" + indent + " \"hyperparameters\": " + schema_json(*d.schema, indent + " ") +
         ",\n" + indent + " \"state\": " + state_json(*d.state) + "}";
}

void print_text(const SchedulerDescriptor& d, std::ostream& out) {
  out << escape_text(d.name) << "  " << escape_text(d.plugin_version) << "  " << escape_text(d.description) << '\n';
  out << "  from "
      << (d.source == "built in" ? std::string("the core (built in)")
                                 : escape_text(d.source) + " (plugin " + escape_text(d.plugin_name) + ")")
      << "; stepped " << (d.needs_metric ? "with a metric: step(metric)" : "once per optimizer step: step()") << '\n';
  print_schema_table(*d.schema, out);
}

std::string descriptor_json(const SchedulerDescriptor& d, const std::string& indent) {
  return indent + "{\"name\": " + json_string(d.name) + ", \"version\": " + json_string(d.plugin_version) +
         ", \"plugin\": " + json_string(d.plugin_name) + ", \"source\": " + json_string(d.source) +
         ", \"needs_metric\": " + (d.needs_metric ? "true" : "false") +
         ",\n" + indent + " \"description\": " + json_string(d.description) +
         ",\n" + indent + " \"hyperparameters\": " + schema_json(*d.schema, indent + " ") + "}";
}

const char* kListHelp =
    "usage: optreg list [--json] [--plugin-path DIR|FILE]... [--no-default-path] [--allow-refused]\n"
    "                   [--isolate [--timeout SECONDS]]\n"
    "\n"
    "Lists every loaded optimizer, then every learning-rate scheduler, with its version, source\n"
    "file and hyperparameter schema, and every plugin that was refused with the reason.\n"
    "\n"
    "  --json              machine-readable output\n"
    "  --plugin-path P     load a plugin folder or file first (repeatable)\n"
    "  --no-default-path   do not search OPTREG_PLUGIN_PATH and the installed plugin folder\n"
    "  --allow-refused     exit 0 even when a plugin was refused\n"
    "  --isolate           load each plugin file in a child process first; a file whose loading\n"
    "                      crashes, aborts or hangs there is refused by name and never loaded\n"
    "                      into this process (loading a library runs its code: see\n"
    "                      docs/plugin-abi.md)\n"
    "  --timeout SECONDS   with --isolate, the time each file may take to load (default 10)\n"
    "\n"
    "Exit status: 0 when every plugin loaded, 1 when any was refused, 2 on a usage error.\n";

const char* kShowHelp =
    "usage: optreg show NAME [--json] [--plugin-path DIR|FILE]... [--no-default-path]\n"
    "\n"
    "Shows one optimizer or learning-rate scheduler (both when both kinds have the name):\n"
    "version, source file, description and hyperparameter schema.\n";

}  // namespace

int run_list(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  PluginOptions plugins;
  bool json = false;
  bool allow_refused = false;
  bool timeout_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      out << kListHelp;
      return kOk;
    }
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--allow-refused") {
      allow_refused = true;
    } else if (args[i] == "--isolate") {
      plugins.isolate = true;
    } else if (args[i] == "--timeout") {
      if (i + 1 >= args.size()) throw UsageError{"optreg list: --timeout needs a number of seconds"};
      plugins.timeout = parse_timeout("optreg list: --timeout", args[++i]);
      timeout_given = true;
    } else if (!parse_plugin_option(args, i, plugins)) {
      throw UsageError{"optreg list: unknown argument '" + args[i] + "'"};
    }
  }
  if (timeout_given && !plugins.isolate) throw UsageError{"optreg list: --timeout goes with --isolate"};
  Registry registry;
  const std::vector<Refusal> refused = load_plugins(registry, plugins);
  const auto all = registry.list();
  const auto schedulers = registry.list_schedulers();
  if (json) {
    out << "{\n  \"optimizers\": [";
    for (std::size_t i = 0; i < all.size(); ++i) out << (i ? ",\n" : "\n") << descriptor_json(all[i], "    ");
    out << (all.empty() ? "]" : "\n  ]") << ",\n  \"schedulers\": [";
    for (std::size_t i = 0; i < schedulers.size(); ++i) out << (i ? ",\n" : "\n") << descriptor_json(schedulers[i], "    ");
    out << (schedulers.empty() ? "]" : "\n  ]") << ",\n  \"refused\": [";
    for (std::size_t i = 0; i < refused.size(); ++i) {
      out << (i ? ",\n" : "\n") << "    {\"path\": " << json_string(refused[i].path)
          << ", \"reason\": " << json_message(refused[i].reason) << "}";
    }
    out << (refused.empty() ? "]" : "\n  ]") << "\n}\n";
  } else {
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
  if (!refused.empty() && !allow_refused) {
    err << "optreg list: " << refused.size() << " plugin" << (refused.size() == 1 ? " was" : "s were")
        << " refused (see above; --allow-refused to exit 0)\n";
    return kFailure;
  }
  return kOk;
}

int run_show(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  PluginOptions plugins;
  bool json = false;
  std::string name;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      out << kShowHelp;
      return kOk;
    }
    if (args[i] == "--json") {
      json = true;
    } else if (!parse_plugin_option(args, i, plugins)) {
      if (!name.empty() || args[i].rfind("-", 0) == 0) throw UsageError{"optreg show: unexpected argument '" + args[i] + "'"};
      name = args[i];
    }
  }
  if (name.empty()) throw UsageError{"optreg show: name the optimizer or scheduler to show"};
  Registry registry;
  load_plugins(registry, plugins);
  const auto d = registry.find(name);
  const auto s = registry.find_scheduler(name);
  if (!d && !s) {
    std::vector<std::string> known;
    for (const auto& x : registry.list()) known.push_back(x.name);
    for (const auto& x : registry.list_schedulers()) known.push_back(x.name);
    const auto near = closest_names(name, known);
    std::string message = "no optimizer or scheduler named " + quoted_name(name) + " is registered";
    if (!near.empty()) message += " (did you mean '" + near.front() + "'?)";
    if (json) out << "{\"name\": " << json_string(name) << ", \"error\": " << json_message(message) << "}\n";
    err << "optreg show: " << message << '\n';
    return kFailure;
  }
  if (json) {
    // One object for one kind; both kinds under their names when both have it.
    if (d && s) {
      out << "{\"optimizer\":\n" << descriptor_json(*d, " ") << ",\n\"scheduler\":\n" << descriptor_json(*s, " ") << "}\n";
    } else {
      out << (d ? descriptor_json(*d, "") : descriptor_json(*s, "")) << '\n';
    }
  } else {
    if (d) print_text(*d, out);
    if (d && s) out << '\n';
    if (s) print_text(*s, out);
  }
  return kOk;
}

}  // namespace optreg::cli
