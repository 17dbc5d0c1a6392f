#pragma once
/// \file
/// The plugin boundary: the plain, versioned descriptor that every plugin library exports.
///
/// Rules (see docs/plugin-abi.md):
/// - The exported alias `optreg_plugin_descriptor` points to a PluginDescriptor whose first two
///   fields, `abi_major` and `size`, keep their place in every ABI version. The host reads them,
///   and refuses the library, before it reads anything else of the descriptor or calls any
///   function of the plugin. The library's static constructors have run by then: the dynamic
///   loader runs them when it opens the file, and no check can come before that (see "What a
///   host cannot check" in docs/plugin-abi.md).
/// - Fields may be appended within one ABI major: `size` (and `optimizer_entry_size`,
///   `scheduler_entry_size`) tell the host how much the plugin provides; a host reads only the
///   fields it knows, and treats fields the plugin does not provide as absent (zero). The
///   scheduler fields and the optimizers' state domains were appended in ABI 1; ABI 2 keeps
///   ABI 1's layout and appends the dtypes an optimizer steps (`param_dtypes`, `state_dtypes`).
/// - ABI 2 is a new major because optreg::Tensor, which crosses the boundary inside every
///   optimizer call, carries a dtype: code built against ABI 1's float32-only Tensor would read
///   its fields wrongly, so an ABI 1 plugin is refused and must be rebuilt.
/// - ABI 3 appends `flags` to OptimizerEntry and adds virtual functions to optreg::Optimizer
///   (closure_update(), eval_weights()), which moves its layout: an ABI 2 plugin is refused
///   and must be rebuilt.
/// - `build_tag` names the C++ standard library ABI and the Boost version the plugin was built
///   with; the host refuses a plugin whose tag differs from its own, since optimizer objects are
///   C++ objects that cross the boundary.

#include <cstddef>
#include <cstdint>

#include <boost/version.hpp>

namespace optreg {
class Optimizer;
class Scheduler;
}

/// The ABI major version of this optreg.
#define OPTREG_ABI_MAJOR 3

#define OPTREG_DETAIL_STR2(x) #x
#define OPTREG_DETAIL_STR(x) OPTREG_DETAIL_STR2(x)
#if defined(_GLIBCXX_RELEASE)
#define OPTREG_DETAIL_STDLIB "libstdc++" OPTREG_DETAIL_STR(_GLIBCXX_RELEASE) "/cxx11abi=" OPTREG_DETAIL_STR(_GLIBCXX_USE_CXX11_ABI)
#elif defined(_LIBCPP_VERSION)
#define OPTREG_DETAIL_STDLIB "libc++" OPTREG_DETAIL_STR(_LIBCPP_ABI_VERSION)
#else
#define OPTREG_DETAIL_STDLIB "unknown-stdlib"
#endif

/// The build tag of the translation unit that expands it: standard library ABI and Boost
/// version (the compiler itself is not part of it: GCC and Clang share the Itanium C++ ABI).
#define OPTREG_BUILD_TAG OPTREG_DETAIL_STDLIB ";boost=" OPTREG_DETAIL_STR(BOOST_VERSION)

namespace optreg::abi {

/// The name of the exported alias (a Boost.DLL alias) that points to the descriptor.
inline constexpr char kEntryName[] = "optreg_plugin_descriptor";

/// The type of a hyperparameter (same numbering as optreg::ValueType).
enum class HyperparamType : std::uint32_t { Bool = 1, Int = 2, Float = 3, String = 4, FloatList = 5 };

/// The declaration of one hyperparameter, as plain data.
struct HyperparamSpec {
  const char* name;
  HyperparamType type;
  /// FloatList: the required length (0: any).
  std::uint32_t list_size;
  /// Allowed range of an Int, a Float, or each FloatList element; infinite ends are unbounded.
  double lo;
  double hi;
  std::uint32_t lo_open;
  std::uint32_t hi_open;
  /// Default of a Bool (0 or 1) or an Int.
  std::int64_t default_int;
  /// Default of a Float.
  double default_float;
  /// Default of a String.
  const char* default_string;
  /// Default of a FloatList.
  const double* default_list;
  std::uint32_t default_list_size;
  /// String: the allowed values, terminated by nullptr; nullptr itself allows any string.
  const char* const* choices;
  /// One line of meaning.
  const char* meaning;
};

/// The kind of a per-parameter state entry.
enum class StateKind : std::uint32_t { Tensor = 1, Int = 2, Float = 3 };

/// Flags of a state entry.
inline constexpr std::uint32_t kStateOptional = 1;     ///< present only for some options
inline constexpr std::uint32_t kStateCustomShape = 2;  ///< a tensor not shaped like its parameter

/// The declaration of one per-parameter state entry, as plain data. Entries are declared in
/// the order the optimizer creates them.
struct StateSpec {
  const char* name;
  StateKind kind;
  std::uint32_t flags;
  /// One line of meaning.
  const char* meaning;
};

/// Flags of a state domain.
inline constexpr std::uint32_t kDomainRange = 1;  ///< the values lie in [lo, hi]; without it, any value

/// The values one state entry may hold, as plain data: of an int or float scalar, or of every
/// element of a tensor. Appended within ABI 1 as an array parallel to the StateSpec array (see
/// OptimizerEntry::state_domains), so that StateSpec, which has no size of its own, keeps its
/// layout. Zero-initialised, it allows any value.
struct StateDomainSpec {
  /// kDomainRange or 0.
  std::uint32_t flags;
  /// Whether each end is excluded; an infinite end is included (+inf is a value) unless open.
  std::uint32_t lo_open;
  std::uint32_t hi_open;
  /// The range, as HyperparamSpec's; NaN never lies in it.
  double lo;
  double hi;
};

/// One optimizer that a plugin provides.
struct OptimizerEntry {
  const char* name;
  const char* description;
  const HyperparamSpec* hyperparams;
  std::uint32_t hyperparam_count;
  /// Makes a new, unbound optimizer object (the host then calls Optimizer::setup()).
  optreg::Optimizer* (*create)();
  /// The per-parameter state it keeps (may be empty).
  const StateSpec* state;
  std::uint32_t state_count;
  // Appended within ABI 1: absent from plugins whose `optimizer_entry_size` ends before them,
  // whose state then allows any value.
  /// The domain of each state entry: `state_count` of them in the order of `state`, each
  /// `state_domain_size` bytes apart; null when the plugin declares none.
  const StateDomainSpec* state_domains;
  std::uint32_t state_domain_size;  // sizeof(StateDomainSpec) as the plugin was built
  // ABI 2: absent (zero) from an entry whose `optimizer_entry_size` ends before them.
  /// The parameter dtypes it steps: bits 1 << optreg::DType (dtype_bit()); 0 means float32 alone.
  std::uint32_t param_dtypes;
  /// The dtypes its state may be kept in besides its step's arithmetic dtype: kStateBFloat16,
  /// kStateInt8 (the core's `state_dtype` option); 0 means none.
  std::uint32_t state_dtypes;
  // ABI 3: absent (zero) from an entry whose `optimizer_entry_size` ends before it.
  /// What the optimizer needs or offers beyond an update per step: kOptimizerNeedsClosure,
  /// kOptimizerEvalWeights, kOptimizerMatricesOnly, kOptimizerWrapper, kOptimizerWholeTensors;
  /// 0 means none.
  std::uint32_t flags;
};

/// Flags of an optimizer entry (OptimizerEntry::flags).
/// Stepped with a closure that re-evaluates the loss (Optimizer::step(closure), L-BFGS); the
/// class implements Optimizer::closure_update().
inline constexpr std::uint32_t kOptimizerNeedsClosure = 1;
/// Evaluates the model at other weights than those it trains at (schedule-free averaging); the
/// class implements Optimizer::eval_weights().
inline constexpr std::uint32_t kOptimizerEvalWeights = 2;
/// Steps matrices only (2-dimensional parameters; Muon).
inline constexpr std::uint32_t kOptimizerMatricesOnly = 4;
/// A wrapper (Lookahead): it steps with an inner optimizer that make_wrapped() gives it. Its
/// update_group() runs after the inner's on the same slots, with its own options and state
/// entries (which follow the inner's in each parameter's state); Registry::create() makes it
/// only without param groups, to be wrapped around an inner optimizer.
inline constexpr std::uint32_t kOptimizerWrapper = 8;
/// Its update of a parameter reads the whole tensor (a norm, a factored moment, a matrix
/// product: LAMB, LARS, Adafactor), so a sharded optimizer (optreg::mpi) gives each rank whole
/// tensors; without it, an update is elementwise and a tensor may be split between ranks.
/// kOptimizerMatricesOnly implies it.
inline constexpr std::uint32_t kOptimizerWholeTensors = 16;
/// Every optimizer flag this ABI knows.
inline constexpr std::uint32_t kOptimizerFlags = kOptimizerNeedsClosure | kOptimizerEvalWeights |
                                                 kOptimizerMatricesOnly | kOptimizerWrapper | kOptimizerWholeTensors;

/// State dtypes an optimizer may declare (OptimizerEntry::state_dtypes).
inline constexpr std::uint32_t kStateBFloat16 = 1;  ///< moments stored as bfloat16
inline constexpr std::uint32_t kStateInt8 = 2;      ///< moments stored as blockwise-quantized int8

/// Flags of a scheduler entry.
inline constexpr std::uint32_t kSchedulerNeedsMetric = 1;  ///< stepped with a metric (plateau)

/// One learning-rate scheduler that a plugin provides.
struct SchedulerEntry {
  const char* name;
  const char* description;
  const HyperparamSpec* hyperparams;
  std::uint32_t hyperparam_count;
  /// kSchedulerNeedsMetric or 0.
  std::uint32_t flags;
  /// Makes a new, unbound scheduler object (the host then calls Scheduler::setup()).
  optreg::Scheduler* (*create)();
};

/// What a plugin library exports: ABI 1's layout, whose OptimizerEntry gained the dtype fields
/// (ABI 2) and `flags` (ABI 3).
struct PluginDescriptor {
  std::uint32_t abi_major;  // never moves
  std::uint32_t size;       // never moves: sizeof(PluginDescriptor) as the plugin was built
  const char* build_tag;
  const char* plugin_name;
  const char* version;
  const OptimizerEntry* optimizers;
  std::uint32_t optimizer_count;
  std::uint32_t optimizer_entry_size;  // sizeof(OptimizerEntry) as the plugin was built
  // Appended within ABI 1: absent from plugins whose `size` ends before them.
  const SchedulerEntry* schedulers;
  std::uint32_t scheduler_count;
  std::uint32_t scheduler_entry_size;  // sizeof(SchedulerEntry) as the plugin was built
};

/// The size of the first ABI 1 descriptor (optimizers only): the smallest a host accepts.
inline constexpr std::uint32_t kMinDescriptorSize = static_cast<std::uint32_t>(offsetof(PluginDescriptor, schedulers));
/// The smallest descriptor that holds the scheduler fields.
inline constexpr std::uint32_t kSchedulerDescriptorSize = static_cast<std::uint32_t>(sizeof(PluginDescriptor));
/// The size of the first ABI 1 optimizer entry (without state domains): the smallest a host accepts.
inline constexpr std::uint32_t kMinOptimizerEntrySize = static_cast<std::uint32_t>(offsetof(OptimizerEntry, state_domains));
/// The smallest state domain a host accepts.
inline constexpr std::uint32_t kMinStateDomainSize = sizeof(StateDomainSpec);
inline constexpr std::uint32_t kMinSchedulerEntrySize = sizeof(SchedulerEntry);

}  // namespace optreg::abi
