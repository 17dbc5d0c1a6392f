#pragma once
// The YAML layer of config.cpp, shared with in-tree hosts whose configs hold an optimizer
// config next to sections of their own (the training tool). Not installed: it exposes
// yaml-cpp types, which the public headers keep out.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <optreg/config.hpp>

namespace optreg::detail {

/// The 1-based position of a yaml-cpp mark or node.
ConfigMark mark_of(const YAML::Mark& m);
ConfigMark mark_of(const YAML::Node& n);
/// Throws ConfigError("SOURCE:LINE:COLUMN: WHAT").
[[noreturn]] void fail(const std::string& source, const ConfigMark& m, const std::string& what);
/// " (did you mean 'X'?)" for the closest of `known`, or "".
std::string suggestion(const std::string& name, const std::vector<std::string>& known);
std::string join(const std::vector<std::string>& v);
/// "a map", "a list", "a scalar" or "nothing".
const char* kind_of(const YAML::Node& n);
/// The pairs of a map node in order, refusing duplicate and non-scalar keys; `what` names the
/// map in messages.
std::vector<std::pair<YAML::Node, YAML::Node>> entries(const std::string& source, const YAML::Node& map,
                                                       const std::string& what);
/// A YAML value as a typed option value (YAML 1.2 core schema; quoted scalars and !!str are
/// strings; !!int, !!float and !!bool give their type).
Value to_value(const std::string& source, const std::string& name, const YAML::Node& n);

/// The explicit core tags a scalar of a config may carry (yaml-cpp's spelling of !!str, ...).
inline constexpr char kStrTag[] = "tag:yaml.org,2002:str";
inline constexpr char kIntTag[] = "tag:yaml.org,2002:int";
inline constexpr char kFloatTag[] = "tag:yaml.org,2002:float";
inline constexpr char kBoolTag[] = "tag:yaml.org,2002:bool";
inline constexpr char kNullTag[] = "tag:yaml.org,2002:null";

/// How deep maps and lists may nest in a config (the top-level map is 1).
inline constexpr int kMaxNesting = 100;

/// What a plain scalar denotes under the YAML 1.2 core schema (decimal integers only).
enum class ScalarForm { String, Null, Bool, Int, Float };
/// The form of a plain scalar, told by one linear scan, so that any length is fine.
ScalarForm form_of(const std::string& s);
/// A scalar as messages show it: cut short past 40 characters, with its length.
std::string shown(const std::string& s);
/// The value of an integer of form Int, of any length; ConfigError "SOURCE:M: WHAT = S is too
/// large for an integer ..." when it does not fit 64 bits.
std::int64_t parse_int(const std::string& source, const ConfigMark& m, const std::string& what, const std::string& s);
/// The value of a number of form Int or Float (.inf and .nan too), of any length; ConfigError
/// at `m` when it is too large for a float, or too small (not 0, but it would be 0).
double parse_float(const std::string& source, const ConfigMark& m, const std::string& what, const std::string& s);
/// Checks a config's YAML text in one pass over the parser's events, before it is loaded: one
/// document only, no tags but the core ones (and !!int, !!float, !!bool, !!null only on scalars
/// of their form), maps and lists nested at most kMaxNesting deep. ConfigError at the place.
void check_yaml(const std::string& text, const std::string& source);

/// Parses YAML text, placing syntax errors.
YAML::Node load_yaml(const std::string& text, const std::string& source);
/// The whole content of a regular file of at most kMaxConfigFileBytes, opened without blocking;
/// ConfigError "PATH: the WHAT is a FIFO (named pipe), not a regular file" and the like otherwise.
std::string read_text_file(const std::string& path, const std::string& what);

/// Parses a map node as an optimizer config (sections optimizer, param_groups, plugins). Keys
/// listed in `host_sections` are left to the caller; any other unknown key is an error that
/// lists both kinds.
OptimizerConfig parse_config_node(const YAML::Node& root, const std::string& source, const std::string& base_dir,
                                  const std::vector<std::string>& host_sections);

}  // namespace optreg::detail
