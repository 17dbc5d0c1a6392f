#pragma once
/// \file
/// optreg::Registry: finds, loads and checks plugins, and creates optimizers and learning-rate
/// schedulers by name.
///
/// Contract:
/// - Plugins are loaded from absolute canonical paths with RTLD_NOW | RTLD_LOCAL. A folder is
///   loaded in sorted path order (files ending in ".so", not recursive), so results never depend
///   on directory order.
/// - Before it calls any function of a plugin, the host checks the descriptor's ABI major, its
///   size and the build tag, then the whole descriptor (names, schema, defaults in range); a
///   plugin that fails any check is refused as a whole with a PluginError naming the file and
///   the reason. Opening the file runs the library's static constructors first: loading a
///   plugin runs its code, in this process (docs/plugin-abi.md, "What a host cannot check").
/// - An optimizer name already registered by another file is an error naming both files; the
///   plugin that came first keeps the name and the later file is refused. Schedulers are a
///   second kind with names of their own, checked the same way; the names "sequential" and
///   "chained" belong to the core (make_sequential(), make_chained()) and a plugin that declares
///   either is refused.
/// - A plugin library may provide optimizers, schedulers, or both; one that provides neither is
///   refused. Every kind is checked, registered, found and named in messages the same way
///   (docs/plugin-abi.md, "Adding a plugin kind").
/// - load_file() throws; try_load_file() and load_directory() report failures and go on, so one
///   broken plugin never stops the others. Refusals are kept and listed by refused().
/// - create() validates every option against the schema (OptionError naming the option and the
///   value) and returns an optimizer that keeps its library loaded for as long as it lives,
///   even after the registry is destroyed.
/// - create_scheduler() binds the scheduler to the optimizer given (which must outlive it),
///   validates its options, and takes the initial step (see scheduler.hpp).
/// - Thread safety: loading is serialised by one mutex; list(), find(), create(),
///   validate_options() and refused() (and their scheduler counterparts) may run concurrently
///   with each other and with loading.

#include <optreg/export.hpp>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// What every registered plugin object (an optimizer, a scheduler, ...) shows in `optreg list`:
/// its name and description, the plugin that provides it, and its hyperparameters.
struct OPTREG_API PluginObjectDescriptor {
  std::string name;
  std::string description;
  std::string plugin_name;
  std::string plugin_version;
  /// Absolute canonical path of the library that provides it ("built in" for the core's own).
  std::string source;
  std::shared_ptr<const Schema> schema;
};

/// What `optreg list` shows of one registered optimizer.
struct OPTREG_API OptimizerDescriptor : PluginObjectDescriptor {
  /// The state it keeps per parameter.
  std::shared_ptr<const StateSchema> state;
  /// The parameter dtypes it steps (dtype_bit()s; float32 alone for a plugin that declares none).
  DTypeSet param_dtypes = dtype_bit(DType::Float32);
  /// The dtypes it may keep its state in besides its step's arithmetic dtype (abi::kStateBFloat16,
  /// abi::kStateInt8).
  std::uint32_t state_dtypes = 0;
  /// What it needs or offers beyond an update per step (abi::kOptimizerNeedsClosure,
  /// abi::kOptimizerEvalWeights, abi::kOptimizerMatricesOnly, abi::kOptimizerWrapper,
  /// abi::kOptimizerWholeTensors).
  std::uint32_t flags = 0;
};

/// The names of an optimizer's flags (OptimizerDescriptor::flags), as `optreg show` and
/// `optreg list --json` print them: "needs_closure", "eval_weights", "matrices_only", "wrapper",
/// "whole_tensors".
OPTREG_API std::vector<std::string> optimizer_flag_names(std::uint32_t flags);

/// What `optreg list` shows of one registered learning-rate scheduler.
struct OPTREG_API SchedulerDescriptor : PluginObjectDescriptor {
  /// Stepped with a metric (step(metric)) rather than once per optimizer step.
  bool needs_metric = false;
};

/// A plugin file that was not loaded, and why.
struct OPTREG_API Refusal {
  /// The file as given, canonical where it exists (data: any bytes a file name holds).
  std::string path;
  /// A message, inert as an Error's (escape_message(), <optreg/text.hpp>).
  std::string reason;
  /// For a plugin built for another ABI: its ABI major and this host's (-1 each otherwise).
  Versions versions{};
};

/// The outcome of loading one plugin file without throwing.
struct OPTREG_API LoadResult {
  bool ok = false;
  /// The optimizer names, then the scheduler names, the file registered (when ok).
  std::vector<std::string> names;
  /// The whole message, "plugin PATH: REASON" (when !ok), inert as an Error's.
  std::string error;
  /// The refused file and the reason (when !ok).
  Refusal refusal;
};

/// Loaded plugins and the optimizers they provide.
class OPTREG_API Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// Loads one plugin file; throws PluginError naming the file and the reason. Loading a file
  /// that is already loaded does nothing. Returns the optimizer names it registered.
  std::vector<std::string> load_file(const std::string& path);
  /// Like load_file(), but reports a failure in the result (and in refused()) instead of throwing.
  LoadResult try_load_file(const std::string& path);
  /// Loads every "*.so" file of a folder in sorted order; returns the refusals among them.
  /// Throws PluginError only when the folder itself cannot be read.
  std::vector<Refusal> load_directory(const std::string& dir);
  /// The files load_directory() tries, in its order: the "*.so" files of `dir`, sorted.
  /// Throws PluginError when the folder cannot be read.
  static std::vector<std::string> plugin_files(const std::string& dir);
  /// Loads every folder of default_search_path() that exists; returns the refusals.
  std::vector<Refusal> load_default();

  /// The folders searched by load_default(): each entry of OPTREG_PLUGIN_PATH (colon-separated)
  /// in order, then the installed plugin folder (optreg/plugins beside the optreg core library).
  static std::vector<std::string> default_search_path();
  /// The plugin folder beside the optreg core library.
  static std::string installed_plugin_dir();

  /// Every registered optimizer, sorted by name.
  std::vector<OptimizerDescriptor> list() const;
  /// One optimizer by name, or nothing.
  std::optional<OptimizerDescriptor> find(const std::string& name) const;
  /// Every registered scheduler, sorted by name, the core's "sequential" included.
  std::vector<SchedulerDescriptor> list_schedulers() const;
  /// One scheduler by name, or nothing.
  std::optional<SchedulerDescriptor> find_scheduler(const std::string& name) const;
  /// Every plugin file that was refused, in the order they were tried.
  std::vector<Refusal> refused() const;

  /// A new optimizer `name` over one group of parameters. Throws PluginError for an unknown name
  /// (with the closest registered names) or a factory that fails, OptionError for a bad option,
  /// UsageError for a bad parameter list.
  OptimizerPtr create(const std::string& name, std::vector<Parameter> params, const Options& options = {}) const;
  /// A new optimizer `name` over several groups, `options` being the defaults of every group.
  /// A group whose options name another optimizer (`{"optimizer", std::string("muon")}`) is
  /// stepped by it, from its defaults: the result is then a composite (make_composite()) of
  /// `name` with `options` and each other optimizer named, in the order they first appear.
  /// A wrapper (abi::kOptimizerWrapper: `lookahead`) is made here only without groups, to be
  /// wrapped around an inner optimizer (make_wrapped(), create_wrapped()); with groups it is a
  /// UsageError.
  OptimizerPtr create(const std::string& name, std::vector<ParamGroupSpec> groups, const Options& options = {}) const;
  /// The wrapper `wrapper` with `wrapper_options` around the optimizer `inner` with
  /// `inner_options` (make_wrapped()), over `groups`, whose options may set either's options.
  OptimizerPtr create_wrapped(const std::string& wrapper, const Options& wrapper_options, const std::string& inner,
                              std::vector<ParamGroupSpec> groups, const Options& inner_options = {}) const;
  /// A new scheduler `name` bound to `optimizer`, which must outlive it. Throws PluginError for
  /// an unknown name (with the closest registered names), for "sequential" and "chained" (made
  /// by make_sequential(), make_chained() or a config), or a factory that fails; OptionError for a bad option;
  /// UsageError for an optimizer without a float `lr`.
  SchedulerPtr create_scheduler(const std::string& name, Optimizer& optimizer, const Options& options = {}) const;

  /// Checks options for optimizer `name` as create() would, without any parameter and without
  /// setting an optimizer up (Optimizer::check_options() on an unbound object): `options` are
  /// the defaults of every group, `group_overrides` each group's own. Returns every error found,
  /// each an OptionError naming its option, its value, the part at fault and its group (-1: the
  /// defaults); empty when create() would accept them. Throws PluginError as create() does for
  /// an unknown name or a failing factory.
  std::vector<OptionError> validate_options(const std::string& name, const Options& options,
                                            const std::vector<Options>& group_overrides = {}) const;
  /// Checks options for scheduler `name` as create_scheduler() would, without an optimizer
  /// (Scheduler::check_options()); its fit to an optimizer is checked when it is attached.
  std::vector<OptionError> validate_scheduler_options(const std::string& name, const Options& options) const;

 private:
  struct Plugin;
  struct Kinds;
  mutable std::shared_mutex mutex_;
  std::vector<std::shared_ptr<Plugin>> plugins_;
  std::unique_ptr<Kinds> kinds_;  // one catalogue per plugin kind
  std::vector<Refusal> refused_;
};

}  // namespace optreg
