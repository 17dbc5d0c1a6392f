#include <optreg/value.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include <optreg/error.hpp>
#include <optreg/text.hpp>

namespace optreg {

const char* to_string(ValueType type) noexcept {
  switch (type) {
    case ValueType::Bool: return "bool";
    case ValueType::Int: return "int";
    case ValueType::Float: return "float";
    case ValueType::String: return "string";
    case ValueType::FloatList: return "list of floats";
  }
  return "unknown type";
}

namespace {
/// "a float", "an int".
std::string a(ValueType type) { return std::string(type == ValueType::Int ? "an " : "a ") + to_string(type); }

[[noreturn]] void wrong_type(const Value& v, ValueType wanted) {
  throw OptionError("expected " + a(wanted) + ", got the " + to_string(v.type()) + " " + v.to_string());
}

std::string format_double(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  char buf[64];
  // Shortest text that reads back as the same double.
  auto res = std::to_chars(buf, buf + sizeof buf, d);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
}  // namespace

bool Value::as_bool() const {
  if (const auto* b = std::get_if<bool>(&v_)) return *b;
  wrong_type(*this, ValueType::Bool);
}

std::int64_t Value::as_int() const {
  if (const auto* i = std::get_if<std::int64_t>(&v_)) return *i;
  wrong_type(*this, ValueType::Int);
}

double Value::as_float() const {
  if (const auto* d = std::get_if<double>(&v_)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*i);
  wrong_type(*this, ValueType::Float);
}

const std::string& Value::as_string() const {
  if (const auto* s = std::get_if<std::string>(&v_)) return *s;
  wrong_type(*this, ValueType::String);
}

const std::vector<double>& Value::as_float_list() const {
  if (const auto* l = std::get_if<std::vector<double>>(&v_)) return *l;
  wrong_type(*this, ValueType::FloatList);
}

std::string Value::to_string() const {
  switch (type()) {
    case ValueType::Bool: return std::get<bool>(v_) ? "true" : "false";
    case ValueType::Int: return std::to_string(std::get<std::int64_t>(v_));
    case ValueType::Float: return format_double(std::get<double>(v_));
    case ValueType::String: {
      // Inert (<optreg/text.hpp>), and still a YAML double-quoted string: \" and \xNN are its escapes.
      std::string out = "\"";
      for (char c : escape_text(std::get<std::string>(v_))) {
        if (c == '"') out += '\\';
        out += c;
      }
      return out + "\"";
    }
    case ValueType::FloatList: {
      std::string out = "[";
      const auto& l = std::get<std::vector<double>>(v_);
      for (std::size_t i = 0; i < l.size(); ++i) out += (i ? ", " : "") + format_double(l[i]);
      return out + "]";
    }
  }
  return "?";
}

std::string Value::to_short_string() const {
  constexpr std::size_t kStringBytes = 64;
  constexpr std::size_t kListElements = 8;
  if (const auto* s = std::get_if<std::string>(&v_); s != nullptr && s->size() > kStringBytes) {
    return Value(std::string(text_prefix(*s, kStringBytes))).to_string() + "... (" + std::to_string(s->size()) +
           " bytes)";
  }
  if (const auto* l = std::get_if<std::vector<double>>(&v_); l != nullptr && l->size() > kListElements) {
    std::string out = "[";
    for (std::size_t i = 0; i < kListElements; ++i) out += format_double((*l)[i]) + ", ";
    return out + "...] (" + std::to_string(l->size()) + " elements)";
  }
  return to_string();
}

bool Range::contains(double x) const noexcept {
  if (std::isnan(x)) return false;
  const bool above = lo_open ? x > lo : x >= lo;
  const bool below = hi_open ? x < hi : x <= hi;
  return above && below;
}

bool Range::contains_integer(std::int64_t x) const noexcept {
  if (std::isnan(lo) || std::isnan(hi)) return false;
  // An end in [-2^63, 2^63) converts to int64 exactly once rounded to a whole number (a double
  // of 2^53 or more is whole already); an end outside it bounds every int64 or none.
  constexpr double kTwo63 = 9223372036854775808.0;
  bool above = lo < -kTwo63;
  if (lo >= -kTwo63 && lo < kTwo63) {
    const double f = std::floor(lo);
    const auto l = static_cast<std::int64_t>(f);
    above = f == lo && !lo_open ? x >= l : x > l;
  }
  bool below = hi >= kTwo63;
  if (hi >= -kTwo63 && hi < kTwo63) {
    const double c = std::ceil(hi);
    const auto h = static_cast<std::int64_t>(c);
    below = c == hi && !hi_open ? x <= h : x < h;
  }
  return above && below;
}

std::string Range::to_string() const {
  const auto end = [](double d) { return std::isinf(d) ? std::string(d < 0 ? "-inf" : "inf") : format_double(d); };
  return std::string(lo_open ? "(" : "[") + end(lo) + ", " + end(hi) + (hi_open ? ")" : "]");
}

std::string Range::to_string(ValueType type) const {
  if (type != ValueType::Int) return to_string();
  const auto end = [](double d) {
    if (std::isinf(d)) return std::string(d < 0 ? "-inf" : "inf");
    if (d == std::floor(d) && std::fabs(d) < 9.2e18) return std::to_string(static_cast<std::int64_t>(d));
    return format_double(d);
  };
  return std::string(lo_open || std::isinf(lo) ? "(" : "[") + end(lo) + ", " + end(hi) +
         (hi_open || std::isinf(hi) ? ")" : "]");
}

const Hyperparameter* Schema::find(const std::string& name) const noexcept {
  for (const auto& h : entries_) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

Options Schema::defaults() const {
  Options o;
  for (const auto& h : entries_) o.emplace(h.name, h.default_value);
  return o;
}

Value Schema::check(const std::string& name, const Value& value, const std::string& where) const {
  const Hyperparameter* h = find(name);
  if (h == nullptr) {
    std::vector<std::string> known;
    for (const auto& e : entries_) known.push_back(e.name);
    std::string msg = "unknown option " + quoted_name(name);
    const auto near = closest_names(name, known);
    if (!near.empty()) {
      msg += " (did you mean ";
      for (std::size_t i = 0; i < near.size(); ++i) msg += (i ? ", '" : "'") + near[i] + "'";
      msg += "?)";
    }
    std::string all;
    for (std::size_t i = 0; i < known.size(); ++i) all += (i ? ", " : "") + known[i];
    throw OptionError(OptionFacts{where, name, value.to_short_string(), OptionPart::Name, -1, msg + "; known options: " + all});
  }
  const std::string subject = "option " + quoted_name(name) + " = " + value.to_short_string();
  const auto bad_value = [&](const std::string& what) {
    throw OptionError(OptionFacts{where, name, value.to_short_string(), OptionPart::Value, -1, subject + what});
  };
  const auto out_of_range = [&](const std::string& what) {
    bad_value(" is out of range: " + what + " must be in " + h->range.to_string(h->type) + " (" + h->meaning + ")");
  };
  switch (h->type) {
    case ValueType::Bool:
      if (value.type() != ValueType::Bool) break;
      return value;
    case ValueType::Int:
      if (value.type() != ValueType::Int) break;
      if (!h->range.contains_integer(value.as_int())) out_of_range("the value");
      return value;
    case ValueType::Float: {
      if (value.type() != ValueType::Float && value.type() != ValueType::Int) break;
      const double d = value.as_float();
      if (!h->range.contains(d)) out_of_range("the value");
      return Value(d);
    }
    case ValueType::String:
      if (value.type() != ValueType::String) break;
      if (!h->choices.empty() &&
          std::find(h->choices.begin(), h->choices.end(), value.as_string()) == h->choices.end()) {
        std::string all;
        for (std::size_t i = 0; i < h->choices.size(); ++i) all += (i ? ", " : "") + h->choices[i];
        bad_value(" is not one of: " + all);
      }
      return value;
    case ValueType::FloatList: {
      if (value.type() != ValueType::FloatList) break;
      const auto& l = value.as_float_list();
      if (h->list_size != 0 && l.size() != h->list_size) {
        bad_value(" has " + std::to_string(l.size()) + " elements, expected " + std::to_string(h->list_size));
      }
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (!h->range.contains(l[i])) out_of_range("element " + std::to_string(i));
      }
      return value;
    }
  }
  bad_value(" has the wrong type: expected " + a(h->type) + ", got " + a(value.type()));
  return value;  // not reached
}

Options Schema::resolve(const Options& base, const Options& overrides, const std::string& where) const {
  Options out = base;
  for (const auto& [name, value] : overrides) out[name] = check(name, value, where);
  return out;
}

namespace {
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& known,
                                       std::size_t limit) {
  // A suggestion is worth making when at most about a third of the name differs, or when one
  // name contains the other ("lr" for "base_lr").
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& k : known) {
    const std::size_t budget = std::max<std::size_t>(2, std::max(name.size(), k.size()) / 3);
    const bool contains = name.size() >= 2 && k.size() >= 2 &&
                          (k.find(name) != std::string::npos || name.find(k) != std::string::npos);
    // The distance is at least the difference in length: a name read from a file may be huge.
    const std::size_t apart = name.size() > k.size() ? name.size() - k.size() : k.size() - name.size();
    if (apart > budget && !contains) continue;
    const std::size_t d = edit_distance(name, k);
    if (d <= budget || contains) scored.emplace_back(d, k);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < scored.size() && i < limit; ++i) out.push_back(scored[i].second);
  return out;
}

std::string did_you_mean(const std::string& name, const std::vector<std::string>& known) {
  const auto near = closest_names(name, known);
  return near.empty() ? std::string() : " (did you mean '" + near.front() + "'?)";
}

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i == 0 ? "" : ", ") + names[i];
  return s;
}

std::string unknown_name_message(const std::string& head, const std::string& name,
                                 const std::vector<std::string>& known, ListKnown list) {
  std::string message = head + did_you_mean(name, known);
  if (list == ListKnown::No) return message;
  return message + (known.empty() ? "; no plugin is loaded" : "; registered: " + join_names(known));
}

}  // namespace optreg
