#pragma once
// The scalars of a config: their YAML 1.2 core-schema form, numbers of any length, and the
// explicit tags a scalar may carry. Shared by the config document (config_document.cpp) and the
// readers of its sections (config.cpp); free of yaml-cpp types.

#include <cstdint>
#include <string>

#include <optreg/config_document.hpp>

namespace optreg::detail {

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

}  // namespace optreg::detail
