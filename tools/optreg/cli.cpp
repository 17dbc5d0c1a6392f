#include "cli.hpp"
#include "isolate.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <new>

namespace optreg::cli {

bool parse_plugin_option(const std::vector<std::string>& args, std::size_t& i, PluginOptions& out) {
  const std::string& a = args[i];
  if (a == "--no-default-path") {
    out.default_path = false;
    return true;
  }
  if (a == "--plugin-path") {
    if (i + 1 >= args.size()) throw UsageError{"--plugin-path needs a folder or a plugin file"};
    out.paths.push_back(args[++i]);
    return true;
  }
  if (a.rfind("--plugin-path=", 0) == 0) {
    out.paths.push_back(a.substr(std::string("--plugin-path=").size()));
    return true;
  }
  return false;
}

namespace {

/// Loads one plugin file after a child process loaded it alone without crashing or hanging.
void load_isolated(Registry& registry, const std::string& file, double timeout, std::vector<Refusal>& refused) {
  const ChildRun run = run_self({kLoadProbeCommand, file}, timeout);
  const std::vector<std::string> report = run.exited && run.exit_status == kOk && !run.out.empty()
                                              ? parse_report_line(run.out.substr(0, run.out.find('\n')))
                                              : std::vector<std::string>{};
  if (report.size() == 2 && report[0] == "loaded") {
    LoadResult r = registry.try_load_file(file);
    if (!r.ok) refused.push_back(r.refusal);
  } else if (report.size() == 3 && report[0] == "refused") {
    refused.push_back(Refusal{report[1], report[2]});
  } else {
    std::error_code ec;
    const std::filesystem::path canonical = std::filesystem::canonical(file, ec);
    refused.push_back(Refusal{ec ? file : canonical.string(),
                              "loading it in a separate process failed: the process " + describe_end(run, timeout)});
  }
}

/// Loads one plugin folder or file, in-process or isolated.
void load_path(Registry& registry, const std::string& path, const PluginOptions& options, std::vector<Refusal>& refused) {
  std::error_code ec;
  const bool folder = std::filesystem::is_directory(path, ec);
  if (!options.isolate) {
    if (folder) {
      auto r = registry.load_directory(path);
      refused.insert(refused.end(), r.begin(), r.end());
    } else {
      LoadResult r = registry.try_load_file(path);
      if (!r.ok) refused.push_back(r.refusal);
    }
    return;
  }
  const std::vector<std::string> files = folder ? Registry::plugin_files(path) : std::vector<std::string>{path};
  for (const auto& f : files) load_isolated(registry, f, options.timeout, refused);
}

}  // namespace

std::vector<Refusal> load_plugins(Registry& registry, const PluginOptions& options) {
  std::vector<Refusal> refused;
  for (const auto& p : options.paths) load_path(registry, p, options, refused);
  if (options.default_path) {
    for (const auto& dir : Registry::default_search_path()) {
      std::error_code ec;
      if (std::filesystem::is_directory(dir, ec)) load_path(registry, dir, options, refused);
    }
  }
  return refused;
}

namespace {

/// `text` between double quotes, with JSON's escapes for the quote and the backslash; `text`
/// is inert already, so it holds no other character that JSON must escape.
std::string json_quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string json_string(const std::string& s) { return json_quoted(escape_text(s)); }

std::string json_message(const std::string& s) { return json_quoted(escape_message(s)); }

std::string json_number(double d, int digits) {
  if (!std::isfinite(d)) return "\"" + Value(d).to_string() + "\"";  // ".inf", "-.inf", ".nan"
  if (digits <= 0) return Value(d).to_string();  // shortest round trip: 0.001, 1e-08, 2.0
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, d);
  return buf;
}

std::string json_value(const Value& v) {
  switch (v.type()) {
    case ValueType::String: return json_string(v.as_string());
    case ValueType::Float: return json_number(v.as_float());
    case ValueType::FloatList: {
      std::string out = "[";
      for (double d : v.as_float_list()) out += (out.size() > 1 ? ", " : "") + json_number(d);
      return out + "]";
    }
    case ValueType::Bool:
    case ValueType::Int: break;
  }
  return v.to_string();
}

std::string options_text(const Options& o) {
  std::string s = "{";
  for (const auto& [k, v] : o) s += (s.size() > 1 ? ", " : "") + escape_text(k) + ": " + v.to_string();
  return s + "}";
}

std::string options_json(const Options& o) {
  std::string s = "{";
  for (const auto& [k, v] : o) s += (s.size() > 1 ? ", " : "") + json_string(k) + ": " + json_value(v);
  return s + "}";
}

std::string json_error(const std::string& message) { return "{\"error\": " + json_message(message) + "}"; }

std::string current_error_message() {
  try {
    throw;
  } catch (const UsageError& e) {
    return e.message;
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& e) {
    // An optreg::Error, or such as a std::filesystem::filesystem_error, which names the path
    // and the reason.
    return e.what();
  } catch (...) {
    return "an unknown error";
  }
}

}  // namespace optreg::cli
