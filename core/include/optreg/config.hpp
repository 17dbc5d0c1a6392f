#pragma once
/// \file
/// Optimizers by config name: a YAML config names the optimizer, its hyperparameters,
/// per-group overrides matched by parameter name, plugin folders, and optionally a
/// learning-rate scheduler and gradient clipping (docs/config.md).
///
/// A training loop over a config:
///   auto opt = build_optimizer(config, params, registry);
///   auto sched = build_scheduler(config, *opt, registry);  // nullptr without a `scheduler:`
///   each step: compute gradients; apply_clip(config, params); opt->step();
///              if (sched && !sched->needs_metric()) sched->step();
///   each evaluation: if (sched && sched->needs_metric()) sched->step(metric);
///
/// Contract:
/// - Every error is a ConfigError whose message begins with "FILE:LINE:COLUMN: " (1-based),
///   FILE being the config's path or the name given for a string.
/// - Parsing checks the structure (sections, keys, types of the values, duplicate keys);
///   building checks the optimizer name and every option against the registry's schemas.
/// - Relative plugin paths resolve against the config file's folder, never the current one.
/// - A parameter matched by several groups goes to the first; parameters no group matches form
///   the default group, which comes first; a pattern that matches no parameter is an error.

#include <optreg/export.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <optreg/config_document.hpp>
#include <optreg/accumulate.hpp>
#include <optreg/average.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/registry.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// An option as written in a config, with where it was written.
struct OPTREG_API ConfigOption {
  std::string name;
  Value value;
  ConfigMark key_mark;
  ConfigMark value_mark;
};

/// One entry of `param_groups`: selectors, option overrides, and optionally the optimizer that
/// steps it. A parameter is selected when it meets every selector written: `params`, `regex`,
/// `ndim`, `shape` (at least one is).
struct OPTREG_API ConfigGroup {
  /// `params`: glob patterns (`*`, `?`, `[...]`) matched against whole parameter names; a
  /// parameter matches when one of them does.
  std::vector<std::string> patterns;
  std::vector<ConfigMark> pattern_marks;
  /// `regex`: a regular expression (Boost.Regex's Perl syntax, a superset of ECMAScript's)
  /// matched against whole names. Its first capture, a whole number, is the parameter's layer
  /// for `layer_decay`.
  std::optional<std::string> regex;
  ConfigMark regex_mark;
  /// `ndim`: the number of dimensions (1 for biases and norms' weights).
  std::optional<std::int64_t> ndim;
  ConfigMark ndim_mark;
  /// `shape`: the exact shape.
  std::optional<Shape> shape;
  ConfigMark shape_mark;
  /// `layer_decay`: the parameters of layer L (the regex's capture) take lr * layer_decay^(N - L),
  /// N being `num_layers` (by default the largest layer selected + 1), as timm's layer-wise
  /// decay: one group of the optimizer per layer, whose lr is the real one.
  std::optional<double> layer_decay;
  ConfigMark layer_decay_mark;
  std::optional<std::int64_t> num_layers;
  ConfigMark num_layers_mark;
  std::vector<ConfigOption> options;
  ConfigMark mark;
  /// `optimizer:`: the optimizer that steps the group, when it is not the config's (empty).
  /// Its options then override that optimizer's defaults, not the config's optimizer options.
  std::string optimizer;
  ConfigMark optimizer_mark;
};

/// A `scheduler:` section, or one entry of a sequence's `schedulers` list.
struct OPTREG_API SchedulerConfig {
  std::string name;
  ConfigMark name_mark;
  /// Where the section's map begins.
  ConfigMark mark;
  /// Its options, in the order written (for sequential: `milestones`).
  std::vector<ConfigOption> options;
  /// sequential only: the schedulers it runs, in order.
  std::vector<SchedulerConfig> schedulers;
};

/// A `clip:` section: clipping of gradients by their global norm or by value.
struct OPTREG_API ClipConfig {
  enum class Mode { Norm, Value };
  Mode mode = Mode::Norm;
  /// Norm: the largest total norm; `norm_type`: p of the p-norm (a positive number or infinity).
  double max_norm = 0;
  double norm_type = 2;
  /// Norm: throw when the total norm is not finite, instead of returning it.
  bool error_if_nonfinite = false;
  /// Value: gradients are clamped to [-value, value].
  double value = 0;
  ConfigMark mark;
};

/// A wrapper of a nested `optimizer:` section, `{name: lookahead, k: 5, inner: {name: adam}}`:
/// its name, its options, and where its `inner:` key is written.
struct OPTREG_API WrapperConfig {
  std::string name;
  ConfigMark name_mark;
  std::vector<ConfigOption> options;
  ConfigMark inner_mark;
};

/// An `average:` section: a weight average of the parameters (WeightAverage): `kind` (ema or
/// swa, default ema), `decay` and `warmup` (ema only), `every`, `start`.
struct OPTREG_API AverageConfig {
  AverageSettings settings;
  /// Where the section's map begins.
  ConfigMark mark;
  /// Its options as written, in order.
  std::vector<ConfigOption> options;
};

/// An `accumulate:` section: gradient accumulation over `steps` micro-batches, reduced by
/// `reduce` (mean or sum, default mean) (GradientAccumulator).
struct OPTREG_API AccumulateConfig {
  AccumulateSettings settings;
  ConfigMark mark;
  std::vector<ConfigOption> options;
};

/// A parsed config.
struct OPTREG_API OptimizerConfig {
  /// The file it came from (or the name given to parse_config), used in messages.
  std::string source;
  /// The optimizer that steps the parameters: of a nested section, the innermost one.
  std::string optimizer;
  ConfigMark optimizer_mark;
  /// The optimizer's options, in the order written.
  std::vector<ConfigOption> options;
  /// The wrappers of a nested `optimizer:` section, outermost first (empty without `inner:`).
  std::vector<WrapperConfig> wrappers;
  std::vector<ConfigGroup> groups;
  /// `plugins.paths`, resolved to absolute paths against the config's folder.
  std::vector<std::string> plugin_paths;
  std::vector<ConfigMark> plugin_path_marks;
  /// The `scheduler:` section, if any.
  std::optional<SchedulerConfig> scheduler;
  /// The `clip:` section, if any.
  std::optional<ClipConfig> clip;
  /// The `average:` section, if any.
  std::optional<AverageConfig> average;
  /// The `accumulate:` section, if any.
  std::optional<AccumulateConfig> accumulate;
};

/// Reads and parses a config file; throws ConfigError. Only a regular file of at most
/// kMaxConfigFileBytes is read: a folder, a FIFO or a device is refused without waiting on it.
OPTREG_API OptimizerConfig load_config(const std::string& path);
/// Parses a config held in a string. `source` names it in messages; relative plugin paths
/// resolve against `base_dir` (the current folder when empty).
OPTREG_API OptimizerConfig parse_config(const std::string& text, const std::string& source = "<string>",
                             const std::string& base_dir = "");
/// Parses the optimizer's sections of a config document (`optimizer`, `param_groups`,
/// `plugins`, `scheduler`, `clip`, `average`, `accumulate`), for a host whose config holds sections of its own: a
/// top-level key named in `host_sections` is left to the host, which reads it from `root`
/// (config_document.hpp); any other is a ConfigError "unknown section 'K' (did you mean ...);
/// known sections: ..." that lists both kinds. Relative plugin paths resolve against
/// `base_dir` (the current folder when empty).
OPTREG_API OptimizerConfig parse_config_sections(const ConfigNode& root, const std::string& base_dir,
                                      const std::vector<std::string>& host_sections);
/// parse_config_sections() that goes on past a malformed section: each section's first error
/// is added to `errors`, and the section is left out of the result (an unknown top-level key
/// is an error of its own). A config with no `optimizer` section, or one that failed, has an
/// empty `optimizer` name.
OPTREG_API OptimizerConfig parse_config_sections(const ConfigNode& root, const std::string& base_dir,
                                      const std::vector<std::string>& host_sections,
                                      std::vector<ConfigError>& errors);

/// The optimizers a config steps its parameters with, as tables and logs name them: its
/// optimizer, then each other one that an entry of `param_groups` names, in the order they
/// first appear, joined by " + " ("adamw + muon"); inside its wrappers' names ("lookahead(adam)").
OPTREG_API std::string optimizer_names(const OptimizerConfig& config);

/// Loads the plugins a config asks for, in this order: its `plugins.paths`, then each folder of
/// OPTREG_PLUGIN_PATH, then the installed plugin folder. Returns the refusals; a path of
/// `plugins.paths` that does not exist is a ConfigError.
OPTREG_API std::vector<Refusal> load_config_plugins(const OptimizerConfig& config, Registry& registry);

/// A parameter name with its shape (for checking a config without a model).
struct OPTREG_API ParamInfo {
  std::string name;
  Shape shape;
};

/// Reads a parameter list for checking a config without a model: a YAML map from each
/// parameter name to its shape, in order (`layer1.weight: [64, 32]`). Throws ConfigError.
OPTREG_API std::vector<ParamInfo> load_param_list(const std::string& path);

/// How a config sorts parameters into groups.
struct OPTREG_API GroupPlan {
  struct Group {
    /// -1 for the default group, else the index in the config's `param_groups`.
    int config_index = -1;
    std::vector<std::size_t> params;  // indices into the given parameter list
    Options options;                  // the overrides given for the group
    /// Of an entry with `layer_decay`: the layer of its parameters, and the factor of its lr
    /// (layer_decay^(num_layers - layer)); -1 and 1 otherwise.
    std::int64_t layer = -1;
    double lr_scale = 1.0;
  };
  std::vector<Group> groups;
};

/// Sorts parameters into the config's groups: each goes to the first entry of `param_groups`
/// whose selectors it meets, the rest to the default group (first); an entry with
/// `layer_decay` makes one group per layer, in increasing order. Throws ConfigError for a
/// pattern or regex that matches no parameter name, a group left empty, a layer that is not a
/// whole number, and for two parameters with the same name.
OPTREG_API GroupPlan plan_groups_with_shapes(const OptimizerConfig& config, const std::vector<ParamInfo>& params);
/// The same by names alone: a config that selects by `ndim` or `shape` is a ConfigError.
OPTREG_API GroupPlan plan_groups(const OptimizerConfig& config, const std::vector<std::string>& param_names);

/// One scheduler of a config with every option resolved (a sequence: its schedulers too).
struct OPTREG_API ResolvedScheduler {
  SchedulerDescriptor descriptor;
  Options options;
  std::vector<ResolvedScheduler> children;
};

/// A wrapper of a config with its own options resolved (every option of its schema but the
/// core's precision options, which the groups hold).
struct OPTREG_API ResolvedWrapper {
  OptimizerDescriptor descriptor;
  Options options;
};

/// A config checked against a registry, with every default filled in.
struct OPTREG_API ResolvedConfig {
  OptimizerDescriptor optimizer;
  /// The options of every group: the optimizer's defaults with the config's applied.
  Options defaults;
  /// Each entry of `param_groups`: its resolved options (of an entry with an `optimizer:` of
  /// its own, that optimizer's defaults with the entry's applied).
  std::vector<Options> groups;
  /// Each entry of `param_groups`: the optimizer that steps it (`optimizer` above, unless the
  /// entry names another). A config whose entries name any other builds a composite
  /// (make_composite()) of `optimizer` and the others, in the order they first appear.
  std::vector<OptimizerDescriptor> group_optimizers;
  /// The config's wrappers, outermost first: the optimizer built is each wrapped around the
  /// next (make_wrapped()), the last around `optimizer`. A group's options (`groups`) may set
  /// a wrapper's options too.
  std::vector<ResolvedWrapper> wrappers;
  /// With parameter names: how they sort into groups.
  std::optional<GroupPlan> plan;
  std::optional<ResolvedScheduler> scheduler;
};

/// What resolve_config() found.
struct OPTREG_API ConfigCheck {
  /// Every error found, in the order of their place in the file.
  std::vector<ConfigError> errors;
  /// The resolved config, when there is no error.
  std::optional<ResolvedConfig> resolved;
};

/// Checks a parsed config against a registry without making the optimizer, and resolves it:
/// the optimizer name, every option of the defaults and of each group against the schema,
/// the optimizer's rules between options (Registry::validate_options()), with `param_names`
/// the grouping of the parameters (plan_groups()), the scheduler's name, options and rules,
/// and, when all of that holds, its fit to the optimizer (by attaching it to an optimizer of
/// the config's defaults over one stand-in parameter). Reports every error it finds, each a
/// ConfigError at the line and column of the option or name it is about (a rule at the
/// option it names), and stops only where an error leaves nothing to check: an unknown
/// optimizer's options are not checked, and a group's rules are not checked when the
/// defaults break one. Throws only what the registry throws for a failing plugin.
OPTREG_API ConfigCheck resolve_config(const OptimizerConfig& config, const Registry& registry,
                                      const std::optional<std::vector<std::string>>& param_names = std::nullopt);
/// The same with the parameters' shapes, which selectors by `ndim` and `shape` need.
OPTREG_API ConfigCheck resolve_config_with_shapes(const OptimizerConfig& config, const Registry& registry,
                                                  const std::vector<ParamInfo>& params);

/// Builds the optimizer a config describes over named parameters; the result is what
/// Registry::create() gives. Throws ConfigError for an unknown optimizer or a bad option (with
/// the closest known names), placed at the offending line and column: the first error in the
/// file that resolve_config() reports.
OPTREG_API OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                             const Registry& registry);

/// Given group `group` of build_optimizer()'s grouping (in the order of GroupPlan::groups) and
/// the parameters the config sorts into it, the parameters the optimizer is to step in their
/// place (a sharded optimizer's parts of them; optreg::mpi).
using GroupSubstitute =
    std::function<std::vector<Parameter>(std::size_t group, const std::vector<Parameter>& members)>;

/// build_optimizer() with each group's parameters replaced by what `substitute` returns for
/// them (when it is set): the config is resolved against `params`, names and shapes, and the
/// optimizer is made over the substitutes with the options each group resolved to.
OPTREG_API OptimizerPtr build_optimizer(const OptimizerConfig& config, const std::vector<Parameter>& params,
                                        const Registry& registry, const GroupSubstitute& substitute);

/// Checks a config against a registry without any parameter (resolve_config()); throws the
/// first error in the file as a ConfigError.
OPTREG_API void check_config(const OptimizerConfig& config, const Registry& registry);

/// Builds the scheduler a config's `scheduler:` section describes, bound to `optimizer` (which
/// must outlive it; build it with build_optimizer() from the same config); nullptr when the
/// config has none. The scheduler takes its initial step at once (scheduler.hpp). Throws
/// ConfigError placed at the offending line and column: unknown name, bad option, a rule of
/// the scheduler (placed at its name), a bad sequence.
OPTREG_API SchedulerPtr build_scheduler(const OptimizerConfig& config, Optimizer& optimizer, const Registry& registry);

/// The weight average a config's `average:` section describes, over the parameters `optimizer`
/// has (build it with build_optimizer() from the same config; it must outlive the average);
/// nullptr when the config has none.
OPTREG_API std::unique_ptr<WeightAverage> build_average(const OptimizerConfig& config, Optimizer& optimizer);

/// The gradient accumulation a config's `accumulate:` section describes, over `params`;
/// nullptr when the config has none.
OPTREG_API std::unique_ptr<GradientAccumulator> build_accumulator(const OptimizerConfig& config,
                                                                  const std::vector<Parameter>& params);

/// Applies a config's `clip:` section to the gradients of `params` (call it after the
/// gradients are computed and before Optimizer::step()). Returns the total norm before
/// clipping when clipping by norm (see clip_grad_norm()), nothing when clipping by value or
/// when the config has no `clip:` section.
OPTREG_API std::optional<double> apply_clip(const OptimizerConfig& config, const std::vector<Parameter>& params);

}  // namespace optreg
