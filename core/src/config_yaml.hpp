#pragma once
// The YAML layer of config.cpp, shared with in-tree hosts whose configs hold an optimizer
// config next to sections of their own (the training tool). Not installed: it exposes
// yaml-cpp types, which the public headers keep out.

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
/// A YAML value as a typed option value (YAML 1.2 core schema; quoted scalars are strings).
Value to_value(const std::string& source, const std::string& name, const YAML::Node& n);

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
