#pragma once
/// \file
/// Regular expressions over parameter names (config selectors, layer decay, the renames of a
/// name-matched load), matched with Boost.Regex rather than std::regex. libstdc++'s std::regex
/// matcher recurses once per character, so a long name overflows the stack, and it backtracks
/// without bound, so `(a*)*b` takes exponential time. Boost.Regex 1.74's matcher keeps its
/// state on the heap and gives up with an error once a match takes more steps than a bound
/// set from the length of the name.

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

  /// Whether the pattern matches the whole of `name`; `captures` (when given) receives
  /// capture k (empty when it took no part) at index k - 1. Throws std::runtime_error saying
  /// so when the matcher gives up on `name`.
  bool matches(const std::string& name, std::vector<std::string>* captures = nullptr) const {
    boost::smatch m;
    bool matched = false;
    try {
      matched = boost::regex_match(name, m, re_);
    } catch (const std::runtime_error&) {
      throw std::runtime_error("matching it against a name of " + std::to_string(name.size()) +
                               " characters takes more steps than the matcher allows (a repetition inside a "
                               "repetition, as in '(a*)*', can backtrack without bound)");
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
