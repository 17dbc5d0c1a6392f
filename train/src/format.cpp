// Values and options as text and JSON (format.hpp).
#include <optreg/train/format.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <optreg/text.hpp>

namespace optreg::train {

namespace {

/// The options joined by ", ", each as `name` + `between` + its value's text.
std::string joined(const Options& o, bool escape_names, const char* between) {
  std::string s;
  for (const auto& [k, v] : o) {
    s += (s.empty() ? "" : ", ") + (escape_names ? escape_text(k) : k) + between + v.to_string();
  }
  return s;
}

/// Whether `j` is an array or an object that holds objects only, and at least one.
bool holds_objects(const Json& j) {
  if (!j.is_array() && !j.is_object()) return false;
  bool any = false;
  for (const auto& e : j) {
    if (!e.is_object()) return false;
    any = true;
  }
  return any;
}

void write_line(std::string& out, const Json& j);

/// Writes the members of an object or the elements of an array, each after `before` and
/// separated by `between`.
void write_items(std::string& out, const Json& j, const std::string& before, const char* between) {
  bool first = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    out += (first ? "" : between) + before;
    first = false;
    if (j.is_object()) out += Json(it.key()).dump() + ": ";
    write_line(out, *it);
  }
}

void write_line(std::string& out, const Json& j) {
  if (!j.is_array() && !j.is_object()) {
    out += j.dump();  // nlohmann's escapes and its shortest round-trip numbers
    return;
  }
  out += j.is_object() ? "{" : "[";
  write_items(out, j, "", ", ");
  out += j.is_object() ? "}" : "]";
}

}  // namespace

std::string options_text(const Options& o) { return "{" + joined(o, true, ": ") + "}"; }

std::string options_assignments(const Options& o) { return joined(o, false, "="); }

Json json_text(const std::string& s) { return escape_text(s); }

Json json_message(const std::string& s) { return escape_message(s); }

Json json_number(double d, int digits) {
  if (!std::isfinite(d)) return Value(d).to_string();  // ".inf", "-.inf", ".nan"
  if (digits <= 0) return d;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, d);
  return std::strtod(buf, nullptr);  // printed with the fewest digits, at most `digits`
}

Json json_value(const Value& v) {
  switch (v.type()) {
    case ValueType::String: return json_text(v.as_string());
    case ValueType::Float: return json_number(v.as_float());
    case ValueType::FloatList: {
      Json list = Json::array();
      for (double d : v.as_float_list()) list.push_back(json_number(d));
      return list;
    }
    case ValueType::Bool: return v.as_bool();
    case ValueType::Int: return v.as_int();
  }
  return nullptr;
}

Json options_json(const Options& o) {
  Json j = Json::object();
  for (const auto& [k, v] : o) j[escape_text(k)] = json_value(v);
  return j;
}

std::string json_line(const Json& j) {
  std::string out;
  write_line(out, j);
  return out;
}

std::string json_block(const Json& j) {
  if (!j.is_object() || j.empty()) return json_line(j);
  std::string out = "{";
  for (auto it = j.begin(); it != j.end(); ++it) {
    out += (it == j.begin() ? "\n  " : ",\n  ") + Json(it.key()).dump() + ": ";
    if (holds_objects(*it)) {
      out += it->is_object() ? "{" : "[";
      write_items(out, *it, "\n    ", ",");
      out += it->is_object() ? "\n  }" : "\n  ]";
    } else {
      write_line(out, *it);
    }
  }
  return out + "\n}";
}

}  // namespace optreg::train
