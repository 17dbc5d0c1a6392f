#pragma once
/// \file
/// What a plugin includes: the Optimizer and Scheduler bases, constexpr helpers to declare a
/// hyperparameter schema, and the macros that export the descriptor: OPTREG_REGISTER_OPTIMIZER
/// for an optimizer, OPTREG_REGISTER_SCHEDULERS (with OPTREG_SCHEDULER_ENTRY) for one or more
/// learning-rate schedulers. A library uses one of the two macros, once.
///
/// A plugin is one shared library built with optreg_add_plugin() (hidden visibility,
/// -z defs); it exports nothing but the descriptor alias.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/parallel.hpp>
#include <optreg/scheduler.hpp>

/// Marks a kernel function to be compiled for the baseline instruction set, for x86-64-v3
/// (AVX2, FMA) and for x86-64-v4 (AVX-512), chosen at load time by the CPU: portable builds
/// that use wide instructions where the machine has them. With -ffp-contract=off every clone
/// rounds every operation alike, so all three give the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define OPTREG_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define OPTREG_KERNEL
#endif

namespace optreg::sdk {

/// An allowed numeric range: of a hyperparameter, or of a state entry (its domain). Each end is
/// open (excluded) or closed (included), an infinite end too: the helpers below leave infinite
/// ends open, so `at_least(0.0)` is [0, inf) and refuses inf; `including_inf()` or a closed
/// infinite end (`closed(0.0, kInf)`) lets inf itself in. NaN lies in no range.
struct Bounds {
  double lo;
  double hi;
  bool lo_open;
  bool hi_open;
};

inline constexpr double kInf = std::numeric_limits<double>::infinity();

/// Any finite number: (-inf, inf).
constexpr Bounds any() { return {-kInf, kInf, true, true}; }
/// Any finite number: (-inf, inf), the domain of a state value that must stay finite.
constexpr Bounds finite() { return any(); }
/// [lo, inf): finite numbers from lo on.
constexpr Bounds at_least(double lo) { return {lo, kInf, false, true}; }
/// (lo, inf): finite numbers above lo.
constexpr Bounds greater_than(double lo) { return {lo, kInf, true, true}; }
/// [lo, hi]; closed(lo, kInf) is [lo, inf] and holds +inf.
constexpr Bounds closed(double lo, double hi) { return {lo, hi, false, false}; }
/// [lo, hi)
constexpr Bounds closed_open(double lo, double hi) { return {lo, hi, false, true}; }
/// (lo, hi)
constexpr Bounds open(double lo, double hi) { return {lo, hi, true, true}; }
/// `b` with its infinite ends included: including_inf(at_least(0.0)) is [0, inf], for a value
/// whose infinity means something (a norm type, a step size that may overflow float32).
constexpr Bounds including_inf(Bounds b) {
  if (b.lo == -kInf) b.lo_open = false;
  if (b.hi == kInf) b.hi_open = false;
  return b;
}

/// The domain of a count of state (a step count): [0, 2^53]. Advance it with advance_counts()
/// of <optreg/elementwise.hpp>, which refuses to pass the top, so that it never overflows.
constexpr Bounds count() { return {0.0, static_cast<double>(kMaxCount), false, false}; }
/// Non-negative numbers, +inf included: [0, inf]. The domain of a second moment or a sum of
/// squares, which overflows to inf in float32 long before a gradient does.
constexpr Bounds non_negative() { return {0.0, kInf, false, false}; }
/// Every number but NaN, infinities included: [-inf, inf]. The domain of a running average of
/// gradients.
constexpr Bounds not_nan() { return {-kInf, kInf, false, false}; }

/// The domain of a state entry: a range (NaN lies in none), or any value at all.
struct Domain {
  constexpr Domain(Bounds b) noexcept : bounds(b), ranged(true) {}  // NOLINT(google-explicit-constructor): a range is a domain
  Bounds bounds;
  bool ranged;
};
/// Any value, NaN included: for an entry no value of which is wrong (a remembered gradient that
/// may hold NaN). Loads check nothing for it.
constexpr Domain any_value() {
  Domain d(any());
  d.ranged = false;
  return d;
}

/// A state entry with its domain, as OPTREG_REGISTER_OPTIMIZER takes them. A bare
/// abi::StateSpec (the two-argument helpers below) converts to one that allows any value.
struct State {
  constexpr State(abi::StateSpec s) noexcept : spec(s), domain{} {}  // NOLINT(google-explicit-constructor)
  constexpr State(abi::StateSpec s, Domain d) noexcept
      : spec(s),
        domain{d.ranged ? abi::kDomainRange : 0u, d.bounds.lo_open ? 1u : 0u, d.bounds.hi_open ? 1u : 0u, d.bounds.lo,
               d.bounds.hi} {}
  abi::StateSpec spec;
  abi::StateDomainSpec domain;
};

namespace detail {
constexpr abi::HyperparamSpec spec(const char* name, abi::HyperparamType type, Bounds b, const char* meaning) {
  return abi::HyperparamSpec{name,    type,   0,       b.lo,    b.hi,    b.lo_open ? 1u : 0u, b.hi_open ? 1u : 0u,
                             0,       0.0,    nullptr, nullptr, 0,       nullptr,             meaning};
}
constexpr bool in_bounds(double x, const abi::HyperparamSpec& s) {
  const bool above = s.lo_open ? x > s.lo : x >= s.lo;
  const bool below = s.hi_open ? x < s.hi : x <= s.hi;
  return above && below;
}
constexpr bool same_text(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}
constexpr bool is_identifier(const char* s) {
  if (s == nullptr || *s == '\0' || !((*s >= 'a' && *s <= 'z') || *s == '_')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}
/// A hyperparameter name: an identifier, upper-case letters allowed (PyTorch's `T_max`).
constexpr bool is_option_name(const char* s) {
  if (s == nullptr || *s == '\0' || (*s >= '0' && *s <= '9')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}
}  // namespace detail

/// A bool hyperparameter.
constexpr abi::HyperparamSpec bool_option(const char* name, bool def, const char* meaning) {
  auto s = detail::spec(name, abi::HyperparamType::Bool, any(), meaning);
  s.default_int = def ? 1 : 0;
  return s;
}
/// An integer hyperparameter with its allowed range.
constexpr abi::HyperparamSpec int_option(const char* name, std::int64_t def, Bounds b, const char* meaning) {
  auto s = detail::spec(name, abi::HyperparamType::Int, b, meaning);
  s.default_int = def;
  return s;
}
/// A float hyperparameter with its allowed range.
constexpr abi::HyperparamSpec float_option(const char* name, double def, Bounds b, const char* meaning) {
  auto s = detail::spec(name, abi::HyperparamType::Float, b, meaning);
  s.default_float = def;
  return s;
}
/// A list of exactly N floats (such as `betas`), each within `b`. `def` must have static storage.
template <std::size_t N>
constexpr abi::HyperparamSpec float_list_option(const char* name, const double (&def)[N], Bounds b,
                                                const char* meaning) {
  auto s = detail::spec(name, abi::HyperparamType::FloatList, b, meaning);
  s.list_size = static_cast<std::uint32_t>(N);
  s.default_list = def;
  s.default_list_size = static_cast<std::uint32_t>(N);
  return s;
}
/// A string hyperparameter; `choices` (nullptr-terminated, static storage) lists the allowed
/// values, or is nullptr to allow any string.
constexpr abi::HyperparamSpec string_option(const char* name, const char* def, const char* const* choices,
                                            const char* meaning) {
  auto s = detail::spec(name, abi::HyperparamType::String, any(), meaning);
  s.default_string = def;
  s.choices = choices;
  return s;
}

/// A per-parameter state tensor shaped like its parameter.
constexpr abi::StateSpec state_tensor(const char* name, const char* meaning) {
  return abi::StateSpec{name, abi::StateKind::Tensor, 0, meaning};
}
/// A state tensor that exists only for some options (created for them, or on first use).
constexpr abi::StateSpec optional_state_tensor(const char* name, const char* meaning) {
  return abi::StateSpec{name, abi::StateKind::Tensor, abi::kStateOptional, meaning};
}
/// A state tensor whose shape is not its parameter's (a factored second moment, say).
constexpr abi::StateSpec shaped_state_tensor(const char* name, const char* meaning) {
  return abi::StateSpec{name, abi::StateKind::Tensor, abi::kStateCustomShape, meaning};
}
/// An exact integer of per-parameter state (such as `step`).
constexpr abi::StateSpec state_int(const char* name, const char* meaning) {
  return abi::StateSpec{name, abi::StateKind::Int, 0, meaning};
}
/// An exact float of per-parameter state.
constexpr abi::StateSpec state_float(const char* name, const char* meaning) {
  return abi::StateSpec{name, abi::StateKind::Float, 0, meaning};
}

/// The helpers above with the entry's domain: every value of the entry (every element of a
/// tensor) must lie in it, or a load refuses the state dict; `optreg list` shows it.
constexpr State state_tensor(const char* name, Domain domain, const char* meaning) {
  return {state_tensor(name, meaning), domain};
}
constexpr State optional_state_tensor(const char* name, Domain domain, const char* meaning) {
  return {optional_state_tensor(name, meaning), domain};
}
constexpr State shaped_state_tensor(const char* name, Domain domain, const char* meaning) {
  return {shaped_state_tensor(name, meaning), domain};
}
/// A count such as `step` is declared with the domain count().
constexpr State state_int(const char* name, Domain domain, const char* meaning) {
  return {state_int(name, meaning), domain};
}
constexpr State state_float(const char* name, Domain domain, const char* meaning) {
  return {state_float(name, meaning), domain};
}

namespace detail {
/// Throws the UsageError of next_count() when `count`, the state count `entry` of `param`, is at
/// the top of its domain; builds no message otherwise (it runs every step).
inline void refuse_full_count(const Parameter& param, const std::string& entry, std::int64_t count) {
  if (count >= kMaxCount) (void)next_count(count, "parameter '" + param.name() + "'", entry);
}
}  // namespace detail

/// Runs kernels over every element of a group's parameters, in parallel: the elements of all
/// the tensors are split evenly across the threads (a tensor may be split, and many small
/// tensors share one thread), so one large tensor and ten thousand small ones both use every
/// thread. An elementwise kernel gives the same bits with any thread count. Keep one as a
/// member of the optimizer: its index is allocated once, at the first step.
class ElementRanges {
 public:
  /// Calls `kernel(piece, begin, end)` for ranges covering every element of `count` pieces,
  /// piece i holding `size_of(i)` elements.
  template <typename Size, typename F>
  void run(std::size_t count, Size&& size_of, F&& kernel, std::size_t grain = std::size_t{1} << 14) {
    offsets_.resize(count + 1);
    offsets_[0] = 0;
    for (std::size_t i = 0; i < count; ++i) offsets_[i + 1] = offsets_[i] + size_of(i);
    const std::vector<std::size_t>& index = offsets_;
    parallel_for(index.back(), grain, [&](std::size_t begin, std::size_t end) {
      std::size_t i = static_cast<std::size_t>(std::upper_bound(index.begin(), index.end(), begin) - index.begin()) - 1;
      for (; begin < end; ++i) {
        const std::size_t stop = std::min(end, index[i + 1]);
        if (stop > begin) kernel(i, begin - index[i], stop - index[i]);
        begin = stop;
      }
    });
  }

  /// Calls `kernel(slot, begin, end)` for ranges covering every element of every slot.
  template <typename F>
  void run(const std::vector<Optimizer::Slot>& slots, F&& kernel, std::size_t grain = std::size_t{1} << 14) {
    run(
        slots.size(), [&](std::size_t i) { return slots[i].param->value().numel(); }, std::forward<F>(kernel), grain);
  }

 private:
  std::vector<std::size_t> offsets_;  // offsets_[i]: the first element of piece i
};

/// Appends the range `t` to `ranges`, or lengthens the last range by `t.n` elements when
/// `ranges.back().continued_by(t)`: one range then covers tensors that lie back to back.
template <typename Range>
void append_range(std::vector<Range>& ranges, const Range& t) {
  if (!ranges.empty() && ranges.back().continued_by(t)) {
    ranges.back().n += t.n;
  } else {
    ranges.push_back(t);
  }
}

/// Whether every default of a schema lies within its own declared range.
template <std::size_t N>
constexpr bool defaults_in_range(const abi::HyperparamSpec (&schema)[N]) {
  for (const auto& s : schema) {
    if (s.type == abi::HyperparamType::Int && !detail::in_bounds(static_cast<double>(s.default_int), s)) return false;
    if (s.type == abi::HyperparamType::Float && !detail::in_bounds(s.default_float, s)) return false;
    if (s.type == abi::HyperparamType::FloatList) {
      for (std::uint32_t i = 0; i < s.default_list_size; ++i) {
        if (!detail::in_bounds(s.default_list[i], s)) return false;
      }
    }
  }
  return true;
}
/// Whether every name of a schema is an identifier and has a meaning.
template <std::size_t N>
constexpr bool names_valid(const abi::HyperparamSpec (&schema)[N]) {
  for (const auto& s : schema) {
    if (!detail::is_option_name(s.name) || s.meaning == nullptr || *s.meaning == '\0') return false;
  }
  return true;
}
/// Whether no two hyperparameters of a schema share a name.
template <std::size_t N>
constexpr bool names_unique(const abi::HyperparamSpec (&schema)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    for (std::size_t j = i + 1; j < N; ++j) {
      if (detail::same_text(schema[i].name, schema[j].name)) return false;
    }
  }
  return true;
}

namespace detail {
constexpr const abi::StateSpec& spec_of(const abi::StateSpec& s) { return s; }
constexpr const abi::StateSpec& spec_of(const State& s) { return s.spec; }
constexpr abi::StateDomainSpec domain_of(const abi::StateSpec&) { return {}; }
constexpr abi::StateDomainSpec domain_of(const State& s) { return s.domain; }
/// Whether a declared domain holds at least one value.
constexpr bool domain_valid(const abi::StateDomainSpec& d) {
  if ((d.flags & abi::kDomainRange) == 0) return true;
  if (d.lo != d.lo || d.hi != d.hi || d.lo > d.hi) return false;
  return d.lo < d.hi || (d.lo_open == 0 && d.hi_open == 0);
}
}  // namespace detail

/// Whether every state entry has a lower-case identifier as its name, a meaning, and a name of
/// its own. `nullptr` stands for an optimizer without state.
template <typename S, std::size_t N>
constexpr bool state_valid(const S (&state)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    const abi::StateSpec& s = detail::spec_of(state[i]);
    if (!detail::is_identifier(s.name) || s.meaning == nullptr || *s.meaning == '\0') return false;
    for (std::size_t j = i + 1; j < N; ++j) {
      if (detail::same_text(s.name, detail::spec_of(state[j]).name)) return false;
    }
  }
  return true;
}
constexpr bool state_valid(std::nullptr_t) { return true; }

/// Whether every declared domain of a state holds at least one value.
template <typename S, std::size_t N>
constexpr bool domains_valid(const S (&state)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    if (!detail::domain_valid(detail::domain_of(state[i]))) return false;
  }
  return true;
}
constexpr bool domains_valid(std::nullptr_t) { return true; }

namespace detail {
/// The StateSpec array and the parallel StateDomainSpec array that the descriptor points to.
template <std::size_t N>
struct StateTables {
  std::array<abi::StateSpec, N> specs;
  std::array<abi::StateDomainSpec, N> domains;
};
template <typename S, std::size_t N>
constexpr StateTables<N> state_tables(const S (&state)[N]) {
  StateTables<N> out{};
  for (std::size_t i = 0; i < N; ++i) {
    out.specs[i] = spec_of(state[i]);
    out.domains[i] = domain_of(state[i]);
  }
  return out;
}
constexpr StateTables<0> state_tables(std::nullptr_t) { return {}; }

template <typename S>
::optreg::Scheduler* create_scheduler() {
  return new S();
}

template <std::size_t N>
constexpr bool scheduler_names_valid(const abi::SchedulerEntry (&entries)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    if (!is_identifier(entries[i].name)) return false;
    for (std::size_t j = i + 1; j < N; ++j) {
      if (same_text(entries[i].name, entries[j].name)) return false;
    }
  }
  return true;
}
}  // namespace detail

namespace detail {
/// Defines NAME<T>(): the optional member `static constexpr std::uint32_t MEMBER` of the
/// optimizer class T, or 0 when T declares none (or declares it private).
#define OPTREG_DETAIL_DECLARED(NAME, MEMBER)                                                  \
  template <typename T, typename = void>                                                     \
  struct NAME##_declared : std::false_type {};                                               \
  template <typename T>                                                                      \
  struct NAME##_declared<T, std::void_t<decltype(T::MEMBER)>> : std::true_type {};            \
  template <typename T>                                                                      \
  constexpr std::uint32_t NAME() {                                                           \
    if constexpr (NAME##_declared<T>::value) {                                               \
      return T::MEMBER;                                                                      \
    } else {                                                                                 \
      return 0;                                                                              \
    }                                                                                        \
  }
/// The parameter dtypes declared as `kParamDTypes` (0: float32 alone).
OPTREG_DETAIL_DECLARED(param_dtypes_of, kParamDTypes)
/// The state dtypes declared as `kStateDTypes` (abi::kStateBFloat16, abi::kStateInt8).
OPTREG_DETAIL_DECLARED(state_dtypes_of, kStateDTypes)
/// The flags declared as `kFlags` (abi::kOptimizerNeedsClosure, abi::kOptimizerEvalWeights,
/// abi::kOptimizerMatricesOnly).
OPTREG_DETAIL_DECLARED(flags_of, kFlags)
#undef OPTREG_DETAIL_DECLARED

/// The descriptor a plugin exports: this build's ABI, sizes and build tag, and the tables of
/// each kind the plugin provides (null with a count of 0 for a kind it does not).
constexpr abi::PluginDescriptor plugin_descriptor(const char* plugin_name, const char* version,
                                                  const abi::OptimizerEntry* optimizers, std::uint32_t optimizer_count,
                                                  const abi::SchedulerEntry* schedulers, std::uint32_t scheduler_count) {
  return abi::PluginDescriptor{OPTREG_ABI_MAJOR,
                               static_cast<std::uint32_t>(sizeof(abi::PluginDescriptor)),
                               OPTREG_BUILD_TAG,
                               plugin_name,
                               version,
                               optimizers,
                               optimizer_count,
                               static_cast<std::uint32_t>(sizeof(abi::OptimizerEntry)),
                               schedulers,
                               scheduler_count,
                               static_cast<std::uint32_t>(sizeof(abi::SchedulerEntry))};
}
}  // namespace detail

/// The kind of a scheduler: stepped once per optimizer step, or with a metric (plateau).
enum class SchedulerKind : std::uint32_t { StepDriven = 0, MetricDriven = abi::kSchedulerNeedsMetric };

}  // namespace optreg::sdk

/// The body shared by the registration macros: exports plugin_descriptor(ARGS...) as the
/// plugin's one entry, the alias optreg_plugin_descriptor.
#define OPTREG_DETAIL_EXPORT_DESCRIPTOR(...)                 \
  namespace optreg_plugin_detail {                           \
  constexpr ::optreg::abi::PluginDescriptor kDescriptor =    \
      ::optreg::sdk::detail::plugin_descriptor(__VA_ARGS__); \
  }                                                          \
  BOOST_DLL_ALIAS(optreg_plugin_detail::kDescriptor, optreg_plugin_descriptor)

/// Registers the optimizer class CLASS (derived from optreg::Optimizer, default-constructible)
/// under the name NAME (a lower-case identifier), with plugin version VERSION, a one-line
/// DESCRIPTION, the hyperparameter schema SCHEMA (a constexpr array of
/// optreg::abi::HyperparamSpec) and the per-parameter state STATE (a constexpr array of
/// optreg::sdk::State, entries with their domains, or of optreg::abi::StateSpec, entries that
/// allow any value; in the order init_state() creates the entries; or nullptr).
/// Use it once per plugin library, at namespace scope.
#define OPTREG_REGISTER_OPTIMIZER(CLASS, NAME, VERSION, DESCRIPTION, SCHEMA, STATE)                           \
  static_assert(std::is_base_of_v<::optreg::Optimizer, CLASS>,                                              \
                "OPTREG_REGISTER_OPTIMIZER: " #CLASS " must derive from optreg::Optimizer");                \
  static_assert(std::is_default_constructible_v<CLASS>,                                                     \
                "OPTREG_REGISTER_OPTIMIZER: " #CLASS " must be default-constructible");                     \
  static_assert(::optreg::sdk::detail::is_identifier(NAME),                                                 \
                "OPTREG_REGISTER_OPTIMIZER: the name must be a lower-case identifier such as \"my_adam\""); \
  static_assert(::optreg::sdk::names_valid(SCHEMA),                                                         \
                "OPTREG_REGISTER_OPTIMIZER: every hyperparameter in " #SCHEMA                               \
                " needs an identifier as its name and a one-line meaning");                                 \
  static_assert(::optreg::sdk::names_unique(SCHEMA),                                                        \
                "OPTREG_REGISTER_OPTIMIZER: two hyperparameters in " #SCHEMA " share a name");              \
  static_assert(::optreg::sdk::defaults_in_range(SCHEMA),                                                   \
                "OPTREG_REGISTER_OPTIMIZER: a default in " #SCHEMA                                          \
                " lies outside its own allowed range; fix the default or the range");                       \
  static_assert(::optreg::sdk::state_valid(STATE),                                                          \
                "OPTREG_REGISTER_OPTIMIZER: every state entry in " #STATE                                   \
                " needs a lower-case identifier as its name, a one-line meaning, and a name of its own");   \
  static_assert(::optreg::sdk::domains_valid(STATE),                                                        \
                "OPTREG_REGISTER_OPTIMIZER: a state entry in " #STATE                                       \
                " declares an empty domain (NaN, lo > hi, or one point with an open end)");                 \
  static_assert((::optreg::sdk::detail::flags_of<CLASS>() & ~::optreg::abi::kOptimizerFlags) == 0,           \
                "OPTREG_REGISTER_OPTIMIZER: " #CLASS "::kFlags holds a bit that is no optreg::abi optimizer flag");  \
  namespace optreg_plugin_detail {                                                                          \
  ::optreg::Optimizer* create_optimizer() { return new CLASS(); }                                           \
  constexpr auto kStateTables = ::optreg::sdk::detail::state_tables(STATE);                                 \
  constexpr ::optreg::abi::OptimizerEntry kOptimizers[] = {                                                 \
      {NAME, DESCRIPTION, SCHEMA, static_cast<std::uint32_t>(sizeof(SCHEMA) / sizeof(SCHEMA[0])),           \
       &create_optimizer, kStateTables.specs.data(), static_cast<std::uint32_t>(kStateTables.specs.size()), \
       kStateTables.domains.data(), static_cast<std::uint32_t>(sizeof(::optreg::abi::StateDomainSpec)),     \
       ::optreg::sdk::detail::param_dtypes_of<CLASS>(), ::optreg::sdk::detail::state_dtypes_of<CLASS>(),     \
       ::optreg::sdk::detail::flags_of<CLASS>()}};                                                           \
  }                                                                                                         \
  OPTREG_DETAIL_EXPORT_DESCRIPTOR(NAME, VERSION, optreg_plugin_detail::kOptimizers, 1, nullptr, 0)

/// One entry of a scheduler plugin's table: the class CLASS (derived from optreg::Scheduler,
/// default-constructible) under the name NAME (a lower-case identifier), a one-line
/// DESCRIPTION, its hyperparameter schema SCHEMA (a constexpr array of
/// optreg::abi::HyperparamSpec, checked as for optimizers) and its KIND
/// (optreg::sdk::SchedulerKind::StepDriven or MetricDriven). Use it inside a constexpr array of
/// optreg::abi::SchedulerEntry that OPTREG_REGISTER_SCHEDULERS exports.
#define OPTREG_SCHEDULER_ENTRY(CLASS, NAME, DESCRIPTION, SCHEMA, KIND)                                               \
  ([] {                                                                                                            \
    static_assert(std::is_base_of_v<::optreg::Scheduler, CLASS>,                                                   \
                  "OPTREG_SCHEDULER_ENTRY: " #CLASS " must derive from optreg::Scheduler");                        \
    static_assert(std::is_default_constructible_v<CLASS>,                                                          \
                  "OPTREG_SCHEDULER_ENTRY: " #CLASS " must be default-constructible");                             \
    static_assert(::optreg::sdk::detail::is_identifier(NAME),                                                      \
                  "OPTREG_SCHEDULER_ENTRY: the name must be a lower-case identifier such as \"my_warmup\"");       \
    static_assert(::optreg::sdk::names_valid(SCHEMA), "OPTREG_SCHEDULER_ENTRY: every hyperparameter in " #SCHEMA \
                                                      " needs a lower-case identifier as its name and a meaning"); \
    static_assert(::optreg::sdk::names_unique(SCHEMA),                                                             \
                  "OPTREG_SCHEDULER_ENTRY: two hyperparameters in " #SCHEMA " share a name");                      \
    static_assert(::optreg::sdk::defaults_in_range(SCHEMA),                                                        \
                  "OPTREG_SCHEDULER_ENTRY: a default in " #SCHEMA " lies outside its own allowed range");          \
    return ::optreg::abi::SchedulerEntry{NAME,                                                                     \
                                         DESCRIPTION,                                                              \
                                         SCHEMA,                                                                   \
                                         static_cast<std::uint32_t>(sizeof(SCHEMA) / sizeof(SCHEMA[0])),           \
                                         static_cast<std::uint32_t>(KIND),                                         \
                                         &::optreg::sdk::detail::create_scheduler<CLASS>};                         \
  }())

/// Exports a plugin that provides the schedulers of ENTRIES (a constexpr array of
/// optreg::abi::SchedulerEntry written with OPTREG_SCHEDULER_ENTRY), as plugin PLUGIN_NAME (a
/// lower-case identifier) of version VERSION. Use it once per plugin library, at namespace scope.
#define OPTREG_REGISTER_SCHEDULERS(PLUGIN_NAME, VERSION, ENTRIES)                                       \
  static_assert(::optreg::sdk::detail::is_identifier(PLUGIN_NAME),                                      \
                "OPTREG_REGISTER_SCHEDULERS: the plugin name must be a lower-case identifier");         \
  static_assert(::optreg::sdk::detail::scheduler_names_valid(ENTRIES),                                  \
                "OPTREG_REGISTER_SCHEDULERS: every scheduler needs a lower-case identifier as its name, " \
                "and a name of its own");                                                               \
  OPTREG_DETAIL_EXPORT_DESCRIPTOR(PLUGIN_NAME, VERSION, nullptr, 0, ENTRIES,                              \
                                  static_cast<std::uint32_t>(sizeof(ENTRIES) / sizeof(ENTRIES[0])))
