#include "cli.hpp"

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

std::vector<Refusal> load_plugins(Registry& registry, const PluginOptions& options) {
  std::vector<Refusal> refused;
  for (const auto& p : options.paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      auto r = registry.load_directory(p);
      refused.insert(refused.end(), r.begin(), r.end());
    } else {
      LoadResult r = registry.try_load_file(p);
      if (!r.ok) refused.push_back(r.refusal);
    }
  }
  if (options.default_path) {
    auto r = registry.load_default();
    refused.insert(refused.end(), r.begin(), r.end());
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
