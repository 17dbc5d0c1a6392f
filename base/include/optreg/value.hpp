#pragma once
/// \file
/// Typed hyperparameter values, options maps and hyperparameter schemas.

#include <optreg/export.hpp>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

namespace optreg {

/// The type of a hyperparameter value.
enum class ValueType : std::uint32_t { Bool = 1, Int = 2, Float = 3, String = 4, FloatList = 5 };

/// "bool", "int", "float", "string" or "list of floats".
OPTREG_API const char* to_string(ValueType type) noexcept;

/// A typed hyperparameter value: bool, integer, float, string or list of floats (`betas`).
class OPTREG_API Value {
 public:
  Value() : v_(false) {}
  Value(bool b) : v_(b) {}  // NOLINT(google-explicit-constructor): values read like literals
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Value(I i) : v_(static_cast<std::int64_t>(i)) {}  // NOLINT
  Value(double d) : v_(d) {}                      // NOLINT
  Value(float f) : v_(static_cast<double>(f)) {}  // NOLINT
  Value(const char* s) : v_(std::string(s)) {}    // NOLINT
  Value(std::string s) : v_(std::move(s)) {}      // NOLINT
  Value(std::vector<double> l) : v_(std::move(l)) {}  // NOLINT
  Value(std::initializer_list<double> l) : v_(std::vector<double>(l)) {}  // NOLINT

  ValueType type() const noexcept { return static_cast<ValueType>(v_.index() + 1); }

  /// Typed access; each throws OptionError naming both types when the value holds another type.
  /// as_float() also accepts an integer.
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_float() const;
  const std::string& as_string() const;
  const std::vector<double>& as_float_list() const;

  /// The value as it would be written in a config: true, 3, 0.001, "text", [0.9, 0.999].
  /// Floats are printed with enough digits to read back the same double. A string is
  /// double-quoted and inert: a quote is written \", and a backslash, a control character or a
  /// byte that is not valid UTF-8 \xNN, as by escape_text() (<optreg/text.hpp>).
  std::string to_string() const;
  /// The value for a message: to_string(), but a string longer than 64 bytes or a list longer
  /// than 8 elements is cut after them and followed by its size ("...] (1000 elements)"), so
  /// that a value of any size read from a file gives a message of bounded size.
  std::string to_short_string() const;

  friend bool operator==(const Value& a, const Value& b) { return a.v_ == b.v_; }
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  std::variant<bool, std::int64_t, double, std::string, std::vector<double>> v_;
};

/// Hyperparameters by name.
using Options = std::map<std::string, Value>;

/// An interval of allowed numbers. An end is open (excluded) or closed (included), infinite
/// ends too: [0, inf) holds every finite number from 0 on, [0, inf] holds +inf as well. NaN lies
/// in no range. to_string() prints exactly what contains() accepts.
struct OPTREG_API Range {
  double lo;
  double hi;
  bool lo_open;
  bool hi_open;

  bool contains(double x) const noexcept;
  /// Whether the integer `x` lies in the range, compared exactly (an int64 beyond 2^53 does not
  /// round to a double first). An integer is never infinite: an infinite end bounds nothing.
  bool contains_integer(std::int64_t x) const noexcept;
  /// "[0.0, inf)", "(0.0, 1.0)", "[-inf, inf]".
  std::string to_string() const;
  /// The range as it applies to values of `type`: for ValueType::Int, whole ends print as
  /// integers and infinite ends as open ("[0, inf)", "[0, 9007199254740992]").
  std::string to_string(ValueType type) const;
};

/// The declaration of one hyperparameter.
struct OPTREG_API Hyperparameter {
  std::string name;
  ValueType type = ValueType::Float;
  Value default_value;
  /// Allowed range of an int or float, or of each element of a list of floats.
  Range range{};
  /// Required length of a list of floats (0: any length).
  std::size_t list_size = 0;
  /// Allowed values of a string (empty: any string).
  std::vector<std::string> choices;
  /// One line of meaning.
  std::string meaning;
};

/// The hyperparameter schema of one optimizer.
class OPTREG_API Schema {
 public:
  Schema() = default;
  explicit Schema(std::vector<Hyperparameter> entries) : entries_(std::move(entries)) {}

  const std::vector<Hyperparameter>& entries() const noexcept { return entries_; }
  /// The declaration named `name`, or nullptr.
  const Hyperparameter* find(const std::string& name) const noexcept;
  /// Every hyperparameter at its default.
  Options defaults() const;

  /// Checks that `value` suits the hyperparameter `name` and returns it converted to the
  /// declared type (an integer given for a float becomes a float). Throws OptionError naming
  /// `where`, the option and the value: unknown name (with the closest known names), wrong
  /// type, out of range, wrong list length, string not among the choices.
  Value check(const std::string& name, const Value& value, const std::string& where) const;

  /// `base` with `overrides` applied, every override checked as by check().
  Options resolve(const Options& base, const Options& overrides, const std::string& where) const;

 private:
  std::vector<Hyperparameter> entries_;
};

/// The known names closest to `name` by edit distance (at most `limit`, closest first), for
/// "did you mean" suggestions.
OPTREG_API std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& known,
                                       std::size_t limit = 3);

/// " (did you mean 'X'?)", X being the known name closest to `name`; "" when none is close.
OPTREG_API std::string did_you_mean(const std::string& name, const std::vector<std::string>& known);

/// Names listed for a message: "sgd, adam, adamw".
OPTREG_API std::string join_names(const std::vector<std::string>& names);

/// Whether unknown_name_message() ends with the names it knows.
enum class ListKnown : bool { No = false, Yes = true };

/// The one message for a name that names nothing registered: `head` ("unknown optimizer 'x'",
/// "no scheduler named 'x' is registered"), then did_you_mean(name, known), then, with
/// ListKnown::Yes, "; registered: " and join_names(known), or "; no plugin is loaded" when
/// `known` is empty.
OPTREG_API std::string unknown_name_message(const std::string& head, const std::string& name,
                                            const std::vector<std::string>& known, ListKnown list = ListKnown::Yes);

}  // namespace optreg
