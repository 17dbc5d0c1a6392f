#include "cli.hpp"
#include "isolate.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>

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

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_value(const Value& v) {
  switch (v.type()) {
    case ValueType::String: return json_string(v.as_string());
    case ValueType::Float: {
      // JSON has no inf or nan: write them as strings.
      return std::isfinite(v.as_float()) ? v.to_string() : json_string(v.to_string());
    }
    default: return v.to_string();
  }
}

}  // namespace optreg::cli
