#pragma once
/// \file
/// Regular expressions over parameter names (config selectors, layer decay, the renames of a
/// name-matched load), matched with Boost.Regex (its Perl syntax, a superset of ECMAScript's)
/// rather than std::regex. libstdc++'s std::regex matcher recurses once per character, so a
/// long name overflows the stack, and it backtracks without bound, so `(a*)*b` takes
/// exponential time. Boost.Regex 1.74's matcher keeps its state on the heap and gives up with
/// an error once a match takes more steps than a bound set from the length of the name, or
/// more backtracking memory than its own bound.

#include <stdexcept>
#include <string>
#include <vector>

#include <boost/regex.hpp>

namespace optreg::detail {

class NameRegex {
 public:
  /// Compiles `pattern` (ECMAScript syntax); throws std::runtime_error saying what is wrong
  /// with it when it is not a regular expression.
  explicit NameRegex(const std::string& pattern) {
    try {
      re_.assign(pattern, boost::regex::ECMAScript);
    } catch (const boost::regex_error& e) {
      throw std::runtime_error(e.what());
    }
  }

  /// How many capturing groups the pattern has.
  std::size_t groups() const { return re_.mark_count(); }

  /// Whether the pattern matches the whole of `name`; `captures` (when given) receives
  /// capture k (empty when it took no part) at index k - 1. Throws std::runtime_error saying
  /// so when the matcher gives up on `name`.
  bool matches(const std::string& name, std::vector<std::string>* captures = nullptr) const {
    boost::smatch m;
    bool matched = false;
    try {
      matched = boost::regex_match(name, m, re_);
    } catch (const std::runtime_error&) {
      // Boost throws regex_error(error_complexity) past its bound on steps and a plain
      // runtime_error past its bound on backtracking memory: the same cause either way.
      throw std::runtime_error("matching it against a name of " + std::to_string(name.size()) +
                               " characters exceeds the matcher's bounds on steps and memory (a repetition "
                               "inside a repetition, as in '(a*)*', or a repeated group over a long name can "
                               "grow without bound)");
    }
    if (matched && captures != nullptr) {
      captures->clear();
      for (std::size_t k = 1; k < m.size(); ++k) captures->push_back(m[k].matched ? m[k].str() : std::string());
    }
    return matched;
  }

 private:
  boost::regex re_;
};

}  // namespace optreg::detail
