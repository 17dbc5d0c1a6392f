// The scalars of a config: their YAML 1.2 core-schema form and numbers of any length. No
// std::regex: its matcher recurses once per character and overflows the stack on a long scalar.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string_view>
#include <system_error>

#include <optreg/config_document.hpp>

#include "config_scalar.hpp"

namespace optreg::detail {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// The index after an optional sign.
std::size_t after_sign(std::string_view s) { return !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0; }

/// [-+]?[0-9]+
bool is_int(std::string_view s) {
  std::size_t i = after_sign(s);
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (!is_digit(s[i])) return false;
  }
  return true;
}

/// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_decimal(std::string_view s) {
  std::size_t i = after_sign(s);
  std::size_t digits = 0;
  for (; i < s.size() && is_digit(s[i]); ++i) ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    for (; i < s.size() && is_digit(s[i]); ++i) ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (i == s.size()) return false;
    for (; i < s.size(); ++i) {
      if (!is_digit(s[i])) return false;
    }
  }
  return i == s.size();
}

bool one_of(std::string_view s, std::initializer_list<std::string_view> words) {
  for (std::string_view w : words) {
    if (s == w) return true;
  }
  return false;
}

/// [-+]?\.(inf|Inf|INF)
bool is_inf(std::string_view s) { return one_of(s.substr(after_sign(s)), {".inf", ".Inf", ".INF"}); }
bool is_nan(std::string_view s) { return one_of(s, {".nan", ".NaN", ".NAN"}); }

/// Whether a decimal literal that does not fit a double is too large (rather than too small):
/// the power of ten of its first significant digit is positive. Only its sign matters, since a
/// literal out of range is above 1e308 or below 1e-323.
bool beyond_largest(std::string_view s) {
  std::size_t i = after_sign(s);
  std::int64_t power = 0;  // of the first significant digit, from the mantissa
  bool significant = false;
  bool point = false;
  for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      point = true;
    } else if (!significant && s[i] != '0') {
      significant = true;
      power = point ? power - 1 : 0;
    } else if (!significant) {
      if (point) --power;  // a zero between the point and the first significant digit
    } else if (!point) {
      ++power;
    }
  }
  std::int64_t exponent = 0;  // saturated: the literal's exponent may have any number of digits
  bool negative = false;
  if (i < s.size()) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
    for (; i < s.size(); ++i) exponent = std::min<std::int64_t>(exponent * 10 + (s[i] - '0'), std::int64_t{1} << 40);
  }
  return power + (negative ? -exponent : exponent) > 0;
}

}  // namespace

ScalarForm form_of(const std::string& s) {
  if (is_int(s)) return ScalarForm::Int;
  if (is_decimal(s) || is_inf(s) || is_nan(s)) return ScalarForm::Float;
  if (one_of(s, {"true", "True", "TRUE", "false", "False", "FALSE"})) return ScalarForm::Bool;
  if (one_of(s, {"", "~", "null", "Null", "NULL"})) return ScalarForm::Null;
  return ScalarForm::String;
}

std::string shown(const std::string& s) {
  constexpr std::size_t kLongest = 40;
  if (s.size() <= kLongest) return s;
  return s.substr(0, kLongest - 16) + "... (" + std::to_string(s.size()) + " characters)";
}

std::int64_t parse_int(const std::string& source, const ConfigMark& m, const std::string& what, const std::string& s) {
  const std::size_t start = !s.empty() && s[0] == '+' ? 1 : 0;  // from_chars takes no '+'
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data() + start, s.data() + s.size(), v);
  if (r.ec == std::errc::result_out_of_range) {
    throw_config_error(source, m, what + " = " + shown(s) +
                        (s[0] == '-' ? " is too small for an integer (at least -9223372036854775808)"
                                     : " is too large for an integer (at most 9223372036854775807)"));
  }
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    throw_config_error(source, m, what + " = " + shown(s) + " is not an integer");
  }
  return v;
}

double parse_float(const std::string& source, const ConfigMark& m, const std::string& what, const std::string& s) {
  if (is_inf(s)) return s[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (is_nan(s)) return std::numeric_limits<double>::quiet_NaN();
  const std::size_t start = !s.empty() && s[0] == '+' ? 1 : 0;
  double v = 0;
  const auto r = std::from_chars(s.data() + start, s.data() + s.size(), v, std::chars_format::general);
  if (r.ec == std::errc::result_out_of_range) {
    throw_config_error(source, m, what + " = " + shown(s) +
                        (beyond_largest(s) ? " is too large for a float (at most 1.8e308 in magnitude)"
                                           : " is too small for a float: it is not 0, but would be 0 (the smallest is "
                                             "4.9e-324 in magnitude)"));
  }
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    throw_config_error(source, m, what + " = " + shown(s) + " is not a number");
  }
  return v;
}

}  // namespace optreg::detail
