#include "cli.hpp"

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
