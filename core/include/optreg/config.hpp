#pragma once
/// \file
/// Optimizers by config name: a YAML config names the optimizer, its hyperparameters,
/// per-group overrides matched by parameter name, and plugin folders (docs/config.md).
///
/// Contract:
/// - Every error is a ConfigError whose message begins with "FILE:LINE:COLUMN: " (1-based),
///   FILE being the config's path or the name given for a string.
/// - Parsing checks the structure (sections, keys, types of the values, duplicate keys);
///   building checks the optimizer name and every option against the registry's schemas.
/// - Relative plugin paths resolve against the config file's folder, never the current one.
/// - A parameter matched by several groups goes to the first; parameters no group matches form
///   the default group, which comes first; a pattern that matches no parameter is an error.

#include <string>
#include <vector>

#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/registry.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// A 1-based position in a config file.
struct ConfigMark {
  int line = 1;
  int column = 1;
};

/// An option as written in a config, with where it was written.
struct ConfigOption {
  std::string name;
  Value value;
  ConfigMark key_mark;
  ConfigMark value_mark;
};

/// One entry of `param_groups`: name patterns and option overrides.
struct ConfigGroup {
  /// Glob patterns (`*`, `?`, `[...]`) matched against whole parameter names.
  std::vector<std::string> patterns;
  std::vector<ConfigMark> pattern_marks;
  std::vector<ConfigOption> options;
  ConfigMark mark;
};

/// A parsed config.
struct OptimizerConfig {
  /// The file it came from (or the name given to parse_config), used in messages.
  std::string source;
  std::string optimizer;
  ConfigMark optimizer_mark;
  /// The optimizer's options, in the order written.
  std::vector<ConfigOption> options;
  std::vector<ConfigGroup> groups;
  /// `plugins.paths`, resolved to absolute paths against the config's folder.
  std::vector<std::string> plugin_paths;
  std::vector<ConfigMark> plugin_path_marks;
};

/// Reads and parses a config file; throws ConfigError.
OptimizerConfig load_config(const std::string& path);
/// Parses a config held in a string. `source` names it in messages; relative plugin paths
/// resolve against `base_dir` (the current folder when empty).
OptimizerConfig parse_config(const std::string& text, const std::string& source = "<string>",
                             const std::string& base_dir = "");

/// Loads the plugins a config asks for, in this order: its `plugins.paths`, then each folder of
/// OPTREG_PLUGIN_PATH, then the installed plugin folder. Returns the refusals; a path of
/// `plugins.paths` that does not exist is a ConfigError.
std::vector<Refusal> load_config_plugins(const OptimizerConfig& config, Registry& registry);

/// A parameter name with its shape (for checking a config without a model).
struct ParamInfo {
  std::string name;
  Shape shape;
};

/// Reads a parameter list for checking a config without a model: a YAML map from each
/// parameter name to its shape, in order (`layer1.weight: [64, 32]`). Throws ConfigError.
std::vector<ParamInfo> load_param_list(const std::string& path);

/// How a config sorts parameters into groups.
struct GroupPlan {
  struct Group {
    /// -1 for the default group, else the index in the config's `param_groups`.
    int config_index = -1;
    std::vector<std::size_t> params;  // indices into the given parameter list
    Options options;                  // the overrides given for the group
  };
  std::vector<Group> groups;
};

/// Sorts parameters into the config's groups; throws ConfigError for a pattern that matches no
/// parameter or a group left empty, and for two parameters with the same name.
GroupPlan plan_groups(const OptimizerConfig& config, const std::vector<std::string>& param_names);

/// Builds the optimizer a config describes over named parameters; the result is what
/// Registry::create() gives. Throws ConfigError for an unknown optimizer or a bad option (with
/// the closest known names), placed at the offending line and column.
OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                             const Registry& registry);

/// Checks the optimizer name and every option of a config against a registry without any
/// parameter; throws ConfigError as build_optimizer() does.
void check_config(const OptimizerConfig& config, const Registry& registry);

}  // namespace optreg
