#pragma once
/// \file
/// optreg::Optimizer: the abstract optimizer every plugin implements.
///
/// Contract:
/// - step() updates every parameter that has a gradient, group by group, and returns the
///   optimizer, so `opt.step().clear_grad()` chains. Parameters without a gradient are skipped
///   and their state is left untouched.
/// - Each parameter group holds its own hyperparameters; a value not given for a group is the
///   optimizer's default at the time the group was added. set_option() changes a group's value
///   and takes effect at the next step() (learning-rate schedules, freezing by lr = 0).
/// - add_param_group() creates the state of the new parameters at once (eagerly), so the state
///   is complete before the first step. Each state tensor of a group lives in one buffer per
///   entry name, in parameter order, so that steps stream through memory.
/// - A parameter may appear only once across all groups.
/// - A parameter keeps its shape while an optimizer manages it: its state was made for that
///   shape. A value replaced through Parameter::value() by a tensor of another shape, or a
///   gradient whose shape is not its value's, makes step(), state_dict(), load_state_dict()
///   and the checkpoint functions throw UsageError naming the parameter, its group and its
///   position, before anything changes (check_parameters()). A value replaced by another tensor
///   of the same shape (a view of new memory) is fine. Hosts read the state (state()); only the
///   optimizer changes it, so its tensors keep their shapes too.
/// - Plugin code is called through call_plugin() (<optreg/plugin_call.hpp>): no exception of a
///   plugin's own class leaves a call of the base.
/// - An Optimizer is not thread-safe; distinct optimizers may be used from distinct threads.
/// - Errors: OptionError for hyperparameters, UsageError for misuse; a throwing call leaves the
///   optimizer as it was (everything is checked before anything changes). The one thing the
///   base cannot undo is a plugin's update_group() that throws after it changed something: the
///   groups stepped before it stay stepped (docs/plugin-abi.md, "Exceptions").

#include <optreg/export.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <optreg/error.hpp>
#include <optreg/parameter.hpp>
#include <optreg/tensor.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// An exact scalar of per-parameter state (an integer such as `step`, or a float).
using StateScalar = std::variant<std::int64_t, double>;

/// The state an optimizer keeps for one parameter: named tensors and named exact scalars,
/// in the order the optimizer declared them. Access by position is the fast path for step().
class OPTREG_API ParamState {
 public:
  /// Declares a state tensor; throws UsageError if the name is taken.
  Tensor& add_tensor(const std::string& name, Tensor value);
  /// Declares a state scalar; throws UsageError if the name is taken.
  StateScalar& add_scalar(const std::string& name, StateScalar value);

  std::size_t num_tensors() const noexcept { return tensors_.size(); }
  std::size_t num_scalars() const noexcept { return scalars_.size(); }
  Tensor& tensor(std::size_t i) noexcept { return tensors_[i].second; }
  const Tensor& tensor(std::size_t i) const noexcept { return tensors_[i].second; }
  StateScalar& scalar(std::size_t i) noexcept { return scalars_[i].second; }
  const StateScalar& scalar(std::size_t i) const noexcept { return scalars_[i].second; }

  /// Removes the state tensor `name` if present (no allocation); returns whether it was.
  bool remove_tensor(const std::string& name) noexcept;

  /// Lookup by name; throws UsageError naming the missing entry.
  Tensor& tensor(const std::string& name);
  const Tensor& tensor(const std::string& name) const;
  StateScalar& scalar(const std::string& name);
  const StateScalar& scalar(const std::string& name) const;

  const std::vector<std::pair<std::string, Tensor>>& tensors() const noexcept { return tensors_; }
  const std::vector<std::pair<std::string, StateScalar>>& scalars() const noexcept { return scalars_; }

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;
  std::vector<std::pair<std::string, StateScalar>> scalars_;
};

/// Parameters and hyperparameters given for one new group.
struct OPTREG_API ParamGroupSpec {
  std::vector<Parameter> params;
  /// Overrides of the optimizer's defaults for this group.
  Options options;
};

/// One parameter group of an optimizer: its parameters, its resolved hyperparameters
/// (every option of the schema) and the state of each parameter.
class OPTREG_API ParamGroup {
 public:
  const std::vector<Parameter>& params() const noexcept { return params_; }
  const Options& options() const noexcept { return options_; }
  /// One option by name; throws OptionError for a name the schema does not declare.
  const Value& option(const std::string& name) const;
  const std::vector<ParamState>& states() const noexcept { return states_; }

 private:
  friend class Optimizer;
  std::vector<Parameter> params_;
  Options options_;
  std::vector<ParamState> states_;
  /// Each parameter's shape when the group was added: its state is shaped after it.
  std::vector<Shape> shapes_;
  /// The element count of each of those shapes.
  std::vector<std::size_t> numels_;
  /// Each parameter's dtype when the group was added.
  std::vector<DType> dtypes_;
};

/// The kind of a per-parameter state entry.
enum class StateKind : std::uint32_t { Tensor = 1, Int = 2, Float = 3 };

/// "tensor", "int" or "float".
OPTREG_API const char* to_string(StateKind kind) noexcept;

/// The largest value a count of state (a step count) may hold: 2^53. Every integer up to it is
/// exact as a double (update rules compute pow(beta, double(step))), and arithmetic near it
/// (step + 1, 2 * step) stays far from the int64 overflow at 2^63; at one step per nanosecond it
/// is reached after 285 years.
inline constexpr std::int64_t kMaxCount = std::int64_t{1} << 53;

/// The domain of a count: [0, 2^53].
inline constexpr Range kCountDomain{0.0, static_cast<double>(kMaxCount), false, false};

/// The declaration of one per-parameter state entry of an optimizer.
struct OPTREG_API StateEntry {
  std::string name;
  StateKind kind = StateKind::Tensor;
  /// Present only for some options (Adam's max_exp_avg_sq with amsgrad).
  bool optional = false;
  /// A tensor whose shape is not its parameter's.
  bool custom_shape = false;
  std::string meaning;
  /// The values it may hold (of an int or float scalar, or of every element of a tensor):
  /// check_state_dict() refuses a value outside it. Empty: any value, NaN included (an entry of
  /// a plugin that declares no domain).
  std::optional<Range> domain;
};

/// `count` + 1, or a UsageError when `count` is at kMaxCount (or beyond): "WHO cannot take
/// another step: its state count 'ENTRY' = N is at the top of its domain [0, 2^53]". A count
/// advanced by it can never overflow.
OPTREG_API std::int64_t next_count(std::int64_t count, const std::string& who, const std::string& entry);

/// The dtype of the state tensors an optimizer keeps by default for a parameter of `param`:
/// float64 for float64 parameters, float32 for every other dtype (the arithmetic of the step).
constexpr DType state_dtype_of(DType param) noexcept {
  return param == DType::Float64 ? DType::Float64 : DType::Float32;
}

/// Every state entry an optimizer may keep per parameter, in the order it creates them.
using StateSchema = std::vector<StateEntry>;

/// The precision options the core gives every optimizer, after the plugin's own
/// (docs/precision.md): `master_weights` (bool), `rounding` ("nearest" or "stochastic") and
/// `rounding_seed` (int), which act on bfloat16 and float16 parameters only, and `state_dtype`
/// ("float32", "bfloat16" or "int8"), which an optimizer takes where its plugin declares it.
OPTREG_API std::vector<Hyperparameter> precision_options();
/// The state entries the core keeps for them, after the plugin's own: `master_weight` (the
/// float32 master copy of a half-precision parameter) and `rounding_step` (the steps a
/// stochastically rounded parameter has taken, which seeds its rounding).
OPTREG_API StateSchema precision_state();
/// Whether `name` is one of precision_state()'s entries.
OPTREG_API bool is_precision_entry(const std::string& name) noexcept;

/// The dtype in which state tensor `entry` of a parameter of dtype `param` is kept under a
/// group's options `options`: for `state_dtype: bfloat16`, bfloat16; for `state_dtype: int8`,
/// quint8 when the entry's domain holds no negative value (a second moment), qint8 otherwise;
/// else state_dtype_of(param). A tensor of a shape of its own and the core's own entries keep
/// state_dtype_of(param).
OPTREG_API DType state_storage(const Options& options, const StateEntry& entry, DType param);

/// A tensor that a converting load changed the dtype of (Optimizer::convert_state_dict(),
/// load_optimizer() with LoadOptions::convert_dtypes).
struct OPTREG_API DTypeConversion {
  /// "parameter 'w' (id 0)", "state tensor 'exp_avg' of parameter 'w' (id 0)".
  std::string what;
  DType from;
  DType to;
  /// Whether every value came across unchanged (widening always does; narrowing when no value
  /// needed rounding).
  bool exact;
};

/// `t` converted to `dtype` with the record of what that did to `what`.
OPTREG_API Tensor convert_dtype(const Tensor& t, DType dtype, const std::string& what,
                                std::vector<DTypeConversion>& record);

/// Who an optimizer object is: its registered name, its plugin's version, and its schemas.
struct OPTREG_API OptimizerInfo {
  std::string name;
  std::string plugin_version;
  std::shared_ptr<const Schema> schema;
  std::shared_ptr<const StateSchema> state = std::make_shared<const StateSchema>();
  /// The plugin file it came from, for messages; empty for a class built into the host.
  std::string source{};
  /// The parameter dtypes it steps (a set of dtype_bit()s): float32 alone unless it declares more.
  DTypeSet param_dtypes = dtype_bit(DType::Float32);
  /// The state dtypes it may keep besides its arithmetic dtype (abi::kStateBFloat16,
  /// abi::kStateInt8): what its `state_dtype` option may name.
  std::uint32_t state_dtypes = 0;
  /// What it needs or offers beyond an update per step (abi::kOptimizerNeedsClosure,
  /// abi::kOptimizerEvalWeights, abi::kOptimizerMatricesOnly, abi::kOptimizerWrapper).
  std::uint32_t flags = 0;
};

/// The loss function that a closure-driven step re-evaluates: it computes the loss at the
/// parameters' current values, sets every parameter's gradient of it (replacing the previous
/// one), and returns the loss.
using Closure = std::function<double()>;

struct StateDict;
class Optimizer;

/// Where a hook (Optimizer::add_hook()) runs.
enum class HookPoint : std::uint32_t {
  /// At the start of step() and step(closure), before anything is checked or changed (after the
  /// first evaluation of a closure, so that the gradients are set): a hook may read or change
  /// the gradients (clipping, logging); one that throws leaves the optimizer unchanged.
  PreStep = 0,
  /// After every group was stepped, before step() returns.
  PostStep = 1,
  /// At the start of state_dict() (and so of every checkpoint save).
  PreStateDict = 2,
  /// After load_state_dict() (and every checkpoint load) succeeded.
  PostLoad = 3,
};

/// "pre_step", "post_step", "pre_state_dict", "post_load".
OPTREG_API const char* to_string(HookPoint point) noexcept;

/// A hook: called with the optimizer it was added to.
using Hook = std::function<void(Optimizer&)>;

/// The registration of a hook: the hook is removed when its handle is destroyed or remove()d
/// (whichever comes first; after the optimizer is gone it does nothing). Move-only.
class OPTREG_API HookHandle {
 public:
  HookHandle() = default;
  HookHandle(const Optimizer* optimizer, std::uint64_t id) noexcept : optimizer_(optimizer), id_(id) {}
  HookHandle(HookHandle&& other) noexcept;
  HookHandle& operator=(HookHandle&& other) noexcept;
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  ~HookHandle();
  /// Removes the hook now (also during a run of the hooks: it is not called again).
  void remove() noexcept;
  /// Whether it still holds a hook it has not removed.
  bool active() const noexcept { return id_ != 0; }

 private:
  const Optimizer* optimizer_ = nullptr;
  std::uint64_t id_ = 0;
};

/// Whether a state dict copies the optimizer's tensors or shares their memory.
enum class TensorCopy { Deep, Shared };

/// The abstract optimizer. Plugins derive from it and implement init_state() and
/// update_group(); the base does the grouping, defaults, validation and bookkeeping.
class OPTREG_API Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Applies one update to every parameter that has a gradient; returns *this. A step count at
  /// the top of its domain (kMaxCount) refuses the step with a UsageError naming the parameter.
  /// An optimizer that needs a closure (needs_closure()) refuses it with a UsageError: call
  /// step(closure).
  Optimizer& step();
  /// A step that may re-evaluate the loss, as torch.optim's step(closure): calls `closure` once;
  /// then an optimizer that needs a closure (L-BFGS) updates its parameters calling `closure`
  /// as often as its algorithm does, and any other optimizer takes one step(). Returns the loss
  /// of the first evaluation. An exception from `closure` propagates; from the first evaluation
  /// it leaves the optimizer unchanged.
  double step(const Closure& closure);
  /// Whether it must be stepped with step(closure) (its plugin declares abi::kOptimizerNeedsClosure).
  bool needs_closure() const noexcept;
  /// Whether it evaluates the model at other weights than those it trains (its plugin declares
  /// abi::kOptimizerEvalWeights: schedule-free averaging). EvalWeights puts them in place.
  bool has_eval_weights() const noexcept;
  /// Writes the weights to evaluate the model at into every parameter's value (a bfloat16 or
  /// float16 parameter rounded to nearest from the float32 weights), computed from the training
  /// weights and the state, which stay as they are; nothing for an optimizer without eval
  /// weights. The training weights are lost unless saved: EvalWeights saves and restores them.
  void write_eval_weights();
  /// Makes every gradient absent; returns *this.
  Optimizer& clear_grad() noexcept;

  /// Adds `hook` at `point`; the hooks of a point run in the order they were added, each
  /// exactly once per event, and an exception of one propagates (the later ones do not run).
  /// The hook lives until the handle is destroyed or removed, or the optimizer is destroyed.
  /// A hook may add or remove hooks; one added while its point runs first runs at its next event.
  [[nodiscard]] HookHandle add_hook(HookPoint point, Hook hook);

  /// Adds a group of parameters with per-group overrides of the defaults, and creates their
  /// state at once. Throws OptionError for a bad option and UsageError for an empty group or a
  /// parameter that is already managed; the optimizer is then unchanged. Of a composite
  /// (make_composite()), option `optimizer` names the part that steps the group (the first part
  /// when it is not given), and the other options override that part's defaults.
  void add_param_group(std::vector<Parameter> params, const Options& options = {});

  const std::vector<ParamGroup>& param_groups() const noexcept { return groups_; }
  /// Sets one option of group `group` (checked against the schema and the optimizer's own
  /// rules); takes effect at the next step(). A composite's `optimizer` is fixed: setting it is
  /// an OptionError.
  void set_option(std::size_t group, const std::string& name, const Value& value);
  /// Sets one option in every group; of a composite, in every group whose optimizer declares it
  /// (an OptionError when none does).
  void set_option(const std::string& name, const Value& value);

  /// Every parameter in id order: ids are positions by first appearance across the groups.
  std::vector<Parameter> parameters() const;
  /// The state of a managed parameter (read-only: load_state_dict() changes it); throws
  /// UsageError for a parameter this optimizer does not manage.
  const ParamState& state(const Parameter& p) const;
  /// Throws UsageError, naming the parameter, its group and its position, when a managed
  /// parameter's value no longer has the shape it had when its group was added, or its
  /// gradient (when present) has another shape than its value. Allocates nothing unless it
  /// throws; step(), state_dict(), check_state_dict() and the checkpoint functions call it first.
  void check_parameters() const;

  const std::string& name() const noexcept { return info_.name; }
  const std::string& plugin_version() const noexcept { return info_.plugin_version; }
  const Schema& schema() const noexcept { return *info_.schema; }
  /// The schema of group `group`'s options: schema(), or of a composite the schema of the
  /// group's optimizer (without the composite's `optimizer`). Throws UsageError for no such group.
  const Schema& group_schema(std::size_t group) const;
  /// The optimizer-wide hyperparameters that new groups start from.
  const Options& defaults() const noexcept { return defaults_; }
  /// The state entries it may keep per parameter.
  const StateSchema& state_schema() const noexcept { return *info_.state; }

  /// The complete state: name and plugin version, every group's options and parameter ids,
  /// and every parameter's state. With TensorCopy::Shared the tensors share the optimizer's
  /// memory (no copy; valid until the next step), which is what checkpoint writers want.
  StateDict state_dict(TensorCopy copy = TensorCopy::Deep) const;
  /// Checks a state dict against this optimizer without changing anything: the optimizer name,
  /// the number of groups, each group's size, the parameter ids, each option's name, type and
  /// value, and for every parameter the presence, kind and shape of each state entry and that
  /// every value lies in the entry's declared domain. Throws StateDictError naming what differs
  /// and where (for a value: the parameter, the entry, the first element outside, the domain).
  void check_state_dict(const StateDict& state) const;
  /// check_state_dict(), then takes the options and copies the state into the existing state
  /// tensors (views and pointers to them stay valid). On an error the optimizer is unchanged.
  void load_state_dict(const StateDict& state);
  /// Converts, in `state`, each state tensor of a declared entry, shaped as this optimizer
  /// expects, whose dtype differs from the one this optimizer would keep it in (state_storage()
  /// under the state dict's options and the dtypes of this optimizer's parameters): float64
  /// state for float32 parameters, say. Returns what it converted (exactly or rounding to
  /// nearest); load_state_dict() then checks the rest as always. Changes nothing else.
  std::vector<DTypeConversion> convert_state_dict(StateDict& state) const;

  /// One parameter to update in update_group(): it has a gradient.
  struct Slot {
    Parameter* param;
    ParamState* state;
  };

  /// Binds a newly made object to its identity and schema, resolves `options` into the
  /// defaults and adds `groups`. Registry::create() calls it; a host that links an optimizer
  /// class statically may call it once itself. Throws UsageError when called twice.
  void setup(OptimizerInfo info, const Options& options, std::vector<ParamGroupSpec> groups);

  /// Checks options for the optimizer class `info` describes without binding this object or
  /// touching any parameter (call it on a new, unbound object, as Registry::validate_options()
  /// does): every option of `options` (the defaults of every group) and of each of
  /// `group_overrides` against the schema, then the rules between options (validate()) of the
  /// defaults and of each group. Returns every error found, in that order, each an OptionError
  /// whose group() is the index in `group_overrides` (-1 for the defaults); empty when setup()
  /// would accept them. Rules are checked only over options that passed: not at all when a
  /// value of the defaults is bad (an unknown name changes nothing), and not for a group whose
  /// own options are bad or when the defaults break a rule, so that one mistake is not reported
  /// again for every group.
  std::vector<OptionError> check_options(const OptimizerInfo& info, const Options& options,
                                         const std::vector<Options>& group_overrides) const;

 protected:
  Optimizer() = default;

  /// Rules between options that the schema cannot express (nesterov needs momentum).
  /// Throws OptionError; `where` names the group or the defaults for the message.
  virtual void validate(const Options& options, const std::string& where) const;
  /// Creates the state of one parameter of a group whose resolved options are `options`; every
  /// entry must be declared in the plugin's state schema, in its order. The default creates
  /// every entry that is not optional: tensors of zeros shaped like the parameter, and scalars
  /// of 0 (an optimizer with a tensor of its own shape, or with optional entries, overrides it).
  virtual void init_state(const Options& options, const Parameter& param, ParamState& state) const;
  /// Updates the parameters of one group that have a gradient (never called with none).
  virtual void update_group(const Options& options, const std::vector<Slot>& slots) = 0;
  /// The step of an optimizer that declares abi::kOptimizerNeedsClosure (it has one group):
  /// updates the parameters of `slots` (those with a gradient after the first evaluation,
  /// whose loss is `loss`), calling `closure` for every further evaluation, which replaces the
  /// gradients. The default throws PluginError: the flag promises an override.
  virtual void closure_update(const Options& options, const std::vector<Slot>& slots, double loss, const Closure& closure);
  /// Of an optimizer that declares abi::kOptimizerEvalWeights: writes into each slot's parameter
  /// value the weights to evaluate at, from that value (the training weights) and the state,
  /// which it must not change. `slots` holds every parameter of the group, with or without a
  /// gradient. The default throws PluginError: the flag promises an override.
  virtual void eval_weights(const Options& options, const std::vector<Slot>& slots);

  /// A new state tensor for the declared entry `entry` of `param`, shaped like it, in the
  /// dtype state_storage() gives under the group's options `options`, every element `value`
  /// (rounded to that dtype). Throws PluginError when the plugin declares no such entry.
  Tensor new_state(const Options& options, const Parameter& param, const std::string& entry, double value = 0.0) const;

 private:
  /// The optimizer that steps a group of options `options`: this one, or of a composite the
  /// part that its option `optimizer` names.
  const Optimizer& engine(const Options& options) const;
  Optimizer& engine(const Options& options);
  /// Of a composite: the part that `options` (a new group's overrides) name, or the first;
  /// OptionError naming `where` for a name that is none of its parts. Else this one.
  const Optimizer& engine_for_new(const Options& options, const std::string& where) const;
  /// Runs the hooks at `point`, if any (one relaxed atomic load when no optimizer has hooks).
  void run_hooks(HookPoint point);
  const ParamState* find_state(const Parameter& p) const noexcept;
  /// The slots of group `g` that have a gradient; a half-precision parameter stepped through a
  /// float32 copy (master weights, stochastic rounding) gets a float32 stand-in.
  void gather_slots(std::size_t g);
  /// Writes the stand-ins of the last gather_slots() back into their parameters.
  void write_back(std::size_t g);
  /// validate() through the plugin boundary; an OptionError gets `group` as its group.
  void validate_group(const OptimizerInfo& info, const Options& options, const std::string& where,
                      std::int64_t group) const;
  void check_declared(const StateSchema& schema, const ParamState& state, const std::string& where) const;
  void pack_state(const StateSchema& schema, std::vector<ParamState>& states);
  /// Refuses a `state_dtype` in `options` that the plugin does not declare, or that is not
  /// float32 for a float64 parameter of `params`: OptionError naming `where`.
  void check_state_dtype(const Options& options, const std::vector<Parameter>& params, const std::string& where) const;
  /// Group g's state tensors that `options` keep in another dtype, each with its conversion
  /// (nothing is changed: the caller assigns them once nothing else can fail).
  std::vector<std::pair<Tensor*, Tensor>> converted_state(std::size_t g, const Options& options);

  friend class CompositeBuilder;  // make_composite(): reads its parts' identities

  OptimizerInfo info_;
  Options defaults_;
  std::vector<ParamGroup> groups_;
  std::vector<Slot> slots_;  // reused by step() so that it does not allocate
  /// A float32 stand-in for a half-precision parameter, kept from step to step.
  struct StandIn {
    std::size_t index;    // the parameter's position in its group
    Parameter param;      // value: the master, or a widened copy; grad: the widened gradient
    Tensor value, grad;   // the float32 buffers (value unused with a master)
    bool used = false;    // part of the current step
  };
  std::vector<std::vector<StandIn>> stand_ins_;  // per group
};

/// Puts an optimizer's evaluation weights (Optimizer::write_eval_weights()) in its parameters
/// for the scope's life, and the training weights back, bit for bit, when it ends:
///
///     {
///       optreg::EvalWeights eval(optimizer);
///       evaluate(model);
///     }  // training continues from the same weights
///
/// For an optimizer without eval weights it changes nothing (active() is false). The optimizer
/// must not step, nor its parameters be replaced, while the scope lives.
class OPTREG_API EvalWeights {
 public:
  explicit EvalWeights(Optimizer& optimizer);
  ~EvalWeights();
  EvalWeights(const EvalWeights&) = delete;
  EvalWeights& operator=(const EvalWeights&) = delete;
  /// Whether the parameters hold evaluation weights (the optimizer has them).
  bool active() const noexcept { return !saved_.empty(); }
  /// Puts the training weights back now; the destructor then does nothing.
  void restore() noexcept;

 private:
  std::vector<Parameter> params_;
  std::vector<Tensor> saved_;
};

/// Deleter of objects made by a plugin (optimizers, schedulers): keeps the plugin library
/// loaded while the object lives, and releases it only after the object is destroyed.
/// The reference is dropped right after the delete, so that unique_ptr::reset() (which keeps
/// its deleter) releases the library too.
template <typename T>
struct LibraryDeleter {
  mutable std::shared_ptr<const void> keep_alive;
  void operator()(T* p) const noexcept {
    delete p;
    keep_alive.reset();
  }
};

/// Deleter of optimizers made by a plugin.
using OptimizerDeleter = LibraryDeleter<Optimizer>;
/// An optimizer that owns its plugin library's lifetime.
using OptimizerPtr = std::unique_ptr<Optimizer, OptimizerDeleter>;

/// The name of the optimizers make_composite() makes, in their state dicts and messages.
inline constexpr char kCompositeOptimizer[] = "composite";

/// An optimizer that steps each param group with an optimizer of its own: `parts` are set-up
/// optimizers without param groups (Registry::create() with no groups), of distinct names,
/// whose options are the defaults their groups start from. Every group of the composite holds,
/// besides its part's options, the string option `optimizer` naming that part; a group added
/// without it goes to the first part. One step() steps every group with its part's update,
/// in group order; state dicts, schedulers, clipping, evaluation weights and checkpoints see
/// one optimizer named kCompositeOptimizer whose groups each carry their part's name, which a
/// load checks. Throws UsageError for no part, a part with param groups, two parts of one
/// name, or a part that steps with a closure (it takes all its parameters as one vector).
OPTREG_API OptimizerPtr make_composite(std::vector<OptimizerPtr> parts);

/// Whether `optimizer` is one make_composite() made.
OPTREG_API bool is_composite(const Optimizer& optimizer) noexcept;

/// The option of a wrapped optimizer's groups (make_wrapped()) that names its inner optimizer.
inline constexpr char kInnerOption[] = "inner";

/// A wrapper (an optimizer whose plugin declares abi::kOptimizerWrapper, such as `lookahead`)
/// around `inner`: both set up without param groups (Registry::create() with no groups). The
/// result is named after the wrapper; its groups hold the inner optimizer's options, the
/// wrapper's own (`k`, `alpha`) and the string option `inner` naming the inner optimizer (fixed),
/// and each parameter's state holds the inner's entries, then the wrapper's. step() runs the
/// inner optimizer's update of each group, then the wrapper's on the same parameters; state
/// dicts, checkpoints, schedulers (the inner's `lr`), clipping and hooks see one optimizer.
/// Throws UsageError for a wrapper that does not declare the flag or was made with a precision
/// option (`master_weights`, ...: those are the groups', from the inner optimizer), an inner
/// optimizer that is a wrapper, wrapped already, a composite, steps with a closure or has param
/// groups, and an option or state entry that both declare. A bare wrapper takes no param group
/// (add_param_group() refuses it) and is no part of a composite.
OPTREG_API OptimizerPtr make_wrapped(OptimizerPtr wrapper, OptimizerPtr inner);

/// Whether `optimizer` is one make_wrapped() made.
OPTREG_API bool is_wrapped(const Optimizer& optimizer) noexcept;
/// The inner optimizer of one make_wrapped() made; nullptr for any other.
OPTREG_API const Optimizer* wrapped_inner(const Optimizer& optimizer) noexcept;

}  // namespace optreg
