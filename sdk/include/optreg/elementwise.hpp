#pragma once
/// \file
/// Plugin SDK 2: typed hyperparameters, state entries reached by name, and the elementwise
/// driver that runs one update rule over every dtype a plugin declares.
///
/// A plugin written on it declares
/// - its hyperparameters once, as fields of a struct bound to schema entries
///   (`hyperparams(lr(&Hyper::lr, 1e-3), betas(&Hyper::betas, kBetas), ...)`): the same
///   declaration gives the descriptor its schema and decodes a group's options into the struct,
///   once per group and step;
/// - its state entries with the helpers of <optreg/plugin.hpp>, and handles to them by name
///   (`tensor_entry(kState, "exp_avg")`), checked at compile time and resolved without a
///   string search at run time;
/// - its update as a rule over one element, `Rule<A>`, written once for the arithmetic type A
///   (float for float32, bfloat16 and float16 parameters; double for float64 ones).
///
/// Elementwise<K, F> then does the rest: it gathers each parameter's value, gradient, K state
/// tensors and F per-tensor factors, merges tensors that lie back to back into one range, splits
/// the elements evenly across the threads, and runs the rule over each range in a loop compiled
/// for the parameter's dtype (and, by OPTREG_KERNEL, for each instruction set), widening every
/// element to A and rounding the results back to nearest. The loop is the same for every split,
/// so the bits do not depend on the thread count.
///
/// Elementwise::reduce() adds a reduction phase for rules that need a norm of a whole tensor
/// (LAMB, LARS): it sums per-element terms in double over fixed segments, eight running sums per
/// segment in an order fixed by the element index, so the sums too have the same bits with any
/// thread count and on every instruction set.

#include <array>
#include <cmath>  // for the rules: std::sqrt, std::fabs, std::fma
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define OPTREG_SDK_BF16_CONVERSION 1  // AVX512_BF16's rounding, chosen at run time
#endif

#include <optreg/dtype.hpp>
#include <optreg/plugin.hpp>
#include <optreg/quantize.hpp>
#include <optreg/segments.hpp>

namespace optreg::sdk {

// ------------------------------------------------------------------ typed hyperparameters

/// One hyperparameter: its schema entry and the member of the plugin's struct it decodes into.
/// The member is a double, a bool, a std::int64_t, a std::array<double, N> (a list of N
/// floats), a std::vector<double> (a list of any length) or a std::string.
template <typename H, typename M>
struct Field {
  abi::HyperparamSpec spec;
  M H::*member;
};

/// A hyperparameter declared with any helper of <optreg/plugin.hpp> (float_option(), ...),
/// decoded into `member`.
template <typename H, typename M>
constexpr Field<H, M> option(M H::*member, abi::HyperparamSpec spec) {
  return {spec, member};
}

/// The shared pieces: the entries most optimizers declare, with one wording everywhere.
template <typename H>
constexpr Field<H, double> lr(double H::*member, double def) {
  return {float_option("lr", def, at_least(0.0), "learning rate"), member};
}
template <typename H>
constexpr Field<H, double> eps(double H::*member, double def = 1e-8) {
  return {float_option("eps", def, greater_than(0.0), "term added to the denominator for numerical stability"), member};
}
template <typename H>
constexpr Field<H, double> weight_decay(double H::*member, double def = 0.0,
                                        const char* meaning = "L2 penalty added to the gradient") {
  return {float_option("weight_decay", def, at_least(0.0), meaning), member};
}
template <typename H>
constexpr Field<H, bool> maximize(bool H::*member) {
  return {bool_option("maximize", false, "maximize the objective instead of minimizing it"), member};
}
/// `betas`: two decay rates in [0, 1); `def` must have static storage.
template <typename H>
constexpr Field<H, std::array<double, 2>> betas(std::array<double, 2> H::*member, const double (&def)[2],
                                                const char* meaning = "decay rates of the first and second moment estimates") {
  return {float_list_option("betas", def, closed_open(0.0, 1.0), meaning), member};
}

namespace detail {
inline void decode_into(double& out, const Value& v) { out = v.as_float(); }
inline void decode_into(bool& out, const Value& v) { out = v.as_bool(); }
inline void decode_into(std::int64_t& out, const Value& v) { out = v.as_int(); }
inline void decode_into(std::string& out, const Value& v) { out = v.as_string(); }
inline void decode_into(std::vector<double>& out, const Value& v) { out = v.as_float_list(); }
template <std::size_t N>
void decode_into(std::array<double, N>& out, const Value& v) {
  const std::vector<double>& l = v.as_float_list();
  for (std::size_t i = 0; i < N && i < l.size(); ++i) out[i] = l[i];
}
}  // namespace detail

/// The hyperparameters of a plugin: `schema` is what OPTREG_REGISTER_OPTIMIZER takes, and
/// decode() turns a group's resolved options (every one present and checked by the host
/// against this schema) into the struct H.
template <typename H, typename... M>
struct Hyperparams {
  abi::HyperparamSpec schema[sizeof...(M)];
  std::tuple<M H::*...> members;

  /// The struct of a group's options. It walks the options once and matches each to its field
  /// by name, so that it builds no std::string (a long name would allocate) at every step.
  H decode(const Options& options) const {
    H h{};
    for (const auto& [name, value] : options) {
      for (std::size_t k = 0; k < sizeof...(M); ++k) {
        if (name.compare(schema[k].name) == 0) {
          set(h, k, value, std::index_sequence_for<M...>{});
          break;
        }
      }
    }
    return h;
  }

 private:
  template <std::size_t... I>
  void set(H& h, std::size_t k, const Value& v, std::index_sequence<I...>) const {
    ((k == I ? detail::decode_into(h.*std::get<I>(members), v) : void()), ...);
  }
};

/// Declares the hyperparameters of H, in the order `optreg show` lists them.
template <typename H, typename... M>
constexpr Hyperparams<H, M...> hyperparams(Field<H, M>... fields) {
  return {{fields.spec...}, {fields.member...}};
}

// ------------------------------------------------------------------ state by name

/// A handle to a state tensor, made at compile time from the plugin's state declaration by
/// tensor_entry(): its name, and where it lies among a parameter's state tensors when every
/// optional entry before it is present.
struct TensorEntry {
  const char* name;
  std::size_t hint;
  std::size_t length;  // of the name
};
/// A handle to a state scalar (a count, a float), made by scalar_entry().
struct ScalarEntry {
  const char* name;
  std::size_t hint;
  std::size_t length;  // of the name
};

namespace detail {
template <typename S, std::size_t N>
constexpr std::size_t entry_position(const S (&state)[N], const char* name, bool tensor) {
  std::size_t at = 0;
  for (std::size_t i = 0; i < N; ++i) {
    const abi::StateSpec& s = spec_of(state[i]);
    if ((s.kind == abi::StateKind::Tensor) != tensor) continue;
    if (same_text(s.name, name)) return at;
    ++at;
  }
  // Not a constant expression: a handle to an undeclared entry does not compile.
  throw "the state declaration has no entry of this name and kind";
}

/// Whether `have` is the name `want` of `length` characters (sizes first, then an inline loop
/// over names a few characters long rather than a call: this runs for every state entry of
/// every tensor at every step).
inline bool named(const std::string& have, const char* want, std::size_t length) noexcept {
  if (have.size() != length) return false;
  const char* h = have.data();
  for (std::size_t i = 0; i < length; ++i) {
    if (h[i] != want[i]) return false;
  }
  return true;
}

constexpr std::size_t name_length(const char* name) {
  std::size_t n = 0;
  while (name[n] != '\0') ++n;
  return n;
}

template <typename Entries>
auto* find_entry(Entries& entries, const char* name, std::size_t hint, std::size_t length) noexcept {
  if (hint < entries.size() && named(entries[hint].first, name, length)) return &entries[hint].second;
  for (auto& e : entries) {
    if (named(e.first, name, length)) return &e.second;
  }
  return static_cast<decltype(&entries[0].second)>(nullptr);
}
}  // namespace detail

/// The handle of state tensor `name` of the declaration `state` (a compile error when it
/// declares no tensor of that name).
template <typename S, std::size_t N>
constexpr TensorEntry tensor_entry(const S (&state)[N], const char* name) {
  return {name, detail::entry_position(state, name, true), detail::name_length(name)};
}
/// The handle of state scalar `name` of the declaration `state`.
template <typename S, std::size_t N>
constexpr ScalarEntry scalar_entry(const S (&state)[N], const char* name) {
  return {name, detail::entry_position(state, name, false), detail::name_length(name)};
}

/// The tensor `e` of a parameter's state, or null when it is absent (an optional entry).
inline Tensor* find(ParamState& state, TensorEntry e) noexcept {
  // ParamState exposes its entries read-only; the optimizer owns the state and may change it.
  auto& entries = const_cast<std::vector<std::pair<std::string, Tensor>>&>(state.tensors());
  return detail::find_entry(entries, e.name, e.hint, e.length);
}
/// The tensor `e` of a parameter's state; throws UsageError naming it when absent.
inline Tensor& get(ParamState& state, TensorEntry e) {
  Tensor* t = find(state, e);
  if (t == nullptr) throw UsageError(std::string("the state has no tensor '") + e.name + "'");
  return *t;
}
/// The scalar `e` of a parameter's state; throws UsageError naming it when absent.
inline StateScalar& get(ParamState& state, ScalarEntry e) {
  auto& entries = const_cast<std::vector<std::pair<std::string, StateScalar>>&>(state.scalars());
  StateScalar* v = detail::find_entry(entries, e.name, e.hint, e.length);
  if (v == nullptr) throw UsageError(std::string("the state has no scalar '") + e.name + "'");
  return *v;
}
/// The integer scalar `e` (a count).
inline std::int64_t& count(ParamState& state, ScalarEntry e) { return std::get<std::int64_t>(get(state, e)); }
/// The float scalar `e`.
inline double& real(ParamState& state, ScalarEntry e) { return std::get<double>(get(state, e)); }

/// Adds one to the count `e` of every slot's state, or to none: a count already at kMaxCount
/// throws UsageError naming its parameter, and a state without the count (or with a float under
/// its name) throws too, each after the counts advanced before it are set back. One look-up per
/// slot.
inline void advance_counts(const std::vector<Optimizer::Slot>& slots, ScalarEntry e) {
  constexpr std::size_t kAhead = 8;  // each state's scalars are an allocation of their own: fetched ahead
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (i + kAhead < slots.size()) __builtin_prefetch(slots[i + kAhead].state->scalars().data());
    try {
      std::int64_t& n = count(*slots[i].state, e);
      if (n >= kMaxCount) detail::refuse_full_count(*slots[i].param, e.name, n);  // builds the name only to throw
      ++n;
    } catch (...) {
      for (std::size_t j = 0; j < i; ++j) --count(*slots[j].state, e);
      throw;
    }
  }
}

/// A state tensor for `param` shaped like it, of its arithmetic dtype (float64 for a float64
/// parameter, float32 for every other), filled with `value` rounded to that dtype.
inline Tensor state_like(const Parameter& param, double value = 0.0) {
  Tensor t(param.value().shape(), state_dtype_of(param.value().dtype()));
  if (value != 0.0) t.fill(value);
  return t;
}

// ------------------------------------------------------------------ elements

/// torch's lerp: start + weight (end - start), computed from the nearer end (end - (end -
/// start) (1 - weight) when |weight| >= 0.5), so that rules written with it round as torch does.
template <typename A>
A lerp(A start, A end, A weight) {
  return std::abs(weight) < A(0.5) ? start + weight * (end - start) : end - (end - start) * (A(1) - weight);
}

/// The arithmetic type of parameters of element type P: double for float64, float otherwise.
template <typename P>
using arith_t = std::conditional_t<std::is_same_v<P, double>, double, float>;

/// How an element of type P lies in memory for the loops: float and double as themselves, a
/// half-precision element as its 16 bits (a plain integer vectorises; a struct does not).
template <typename P>
using storage_t = std::conditional_t<std::is_same_v<P, float> || std::is_same_v<P, double>, P, std::uint16_t>;

/// An element of type P, as stored, widened to its arithmetic type (exact).
template <typename A, typename P>
A widen(storage_t<P> x) noexcept {
  if constexpr (std::is_same_v<P, bfloat16>) {
    return bf16_to_float(x);
  } else if constexpr (std::is_same_v<P, float16>) {
    return f16_bits_to_float(x);
  } else {
    return x;
  }
}

/// A result rounded to element type P, to nearest (ties to even), as stored.
template <typename P, typename A>
storage_t<P> narrow(A x) noexcept {
  if constexpr (std::is_same_v<P, bfloat16>) {
    return float_to_bf16(x);
  } else if constexpr (std::is_same_v<P, float16>) {
    return float_to_f16_bits(x);
  } else {
    return x;
  }
}

namespace detail {

#ifdef OPTREG_SDK_BF16_CONVERSION
/// Whether this CPU converts floats to bfloat16 in hardware (AVX512_BF16, with AVX512BW and VL
/// for the masked stores).
inline bool has_bf16_conversion() noexcept {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return yes;
}

/// The lanes of `x` that hold a subnormal float: no exponent bit set, some magnitude bit set.
__attribute__((target("avx512f"))) inline __mmask16 subnormal_lanes(__m512i x) noexcept {
  return _mm512_mask_test_epi32_mask(_mm512_testn_epi32_mask(x, _mm512_set1_epi32(0x7F800000)), x,
                                     _mm512_set1_epi32(0x7FFFFFFF));
}

/// float_to_bf16() over n floats with VCVTNE2PS2BF16. The instruction rounds to nearest, ties to
/// even, and quiets a NaN exactly as float_to_bf16() does (a one-off check covered all 2^32
/// floats), but it reads a subnormal float as zero: a group of 32 (of 16 in the last 31) that
/// holds one is rounded by float_to_bf16().
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void narrow_bf16_hardware(
    const float* __restrict in, std::uint16_t* __restrict out, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i lo = _mm512_loadu_si512(in + i);
    const __m512i hi = _mm512_loadu_si512(in + i + 16);
    if ((subnormal_lanes(lo) | subnormal_lanes(hi)) != 0) {
      for (std::size_t j = i; j < i + 32; ++j) out[j] = float_to_bf16(in[j]);
      continue;
    }
    const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_castsi512_ps(hi), _mm512_castsi512_ps(lo));
    _mm512_storeu_si512(out + i, reinterpret_cast<const __m512i&>(r));
  }
  for (; i < n; i += 16) {  // the last 1 to 31, 16 at a time, masked
    const auto mask = static_cast<__mmask16>(n - i >= 16 ? 0xFFFFu : (1u << (n - i)) - 1u);
    const __m512i x = _mm512_maskz_loadu_epi32(mask, in + i);
    if (subnormal_lanes(x) != 0) {
      for (std::size_t j = i; j < n && j < i + 16; ++j) out[j] = float_to_bf16(in[j]);
      continue;
    }
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_castsi512_ps(x));
    _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<const __m256i&>(r));
  }
}
#else
inline bool has_bf16_conversion() noexcept { return false; }
inline void narrow_bf16_hardware(const float*, std::uint16_t*, std::size_t) noexcept {}
#endif

}  // namespace detail

/// The dtypes a plugin on this SDK may declare it steps: every one.
inline constexpr DTypeSet kElementwiseDTypes = kAllDTypes;
/// The state dtypes a plugin whose update runs through Elementwise::run() may declare
/// (`static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;`): the core's
/// `state_dtype` then keeps its state tensors in bfloat16 or int8, which the driver reads and
/// writes around the rule. Create optional state tensors with Optimizer::new_state() so that
/// they take that dtype too.
inline constexpr std::uint32_t kElementwiseStateDTypes = abi::kStateBFloat16 | abi::kStateInt8;

// ------------------------------------------------------------------ the driver

/// The factors of one tensor, in the arithmetic type of its step.
template <typename A, std::size_t F>
using Factors = std::array<A, F>;

namespace detail {

/// How a piece's state arrays lie in memory: in the step's arithmetic type, as bfloat16, or
/// blockwise quantized (codes and block scales).
enum class Storage : std::uint8_t { Arith, BFloat16, Quantized };

/// One range of an Elementwise step: a tensor, or tensors back to back.
template <std::size_t K, std::size_t F>
struct Piece {
  void* p;
  const void* g;
  std::array<void*, K> s;
  std::array<double, F> f;
  std::size_t n;
  DType dtype;
  Storage storage;
  std::array<float*, K> scales;               // Quantized: each state tensor's block scales
  std::array<const DynamicMap*, K> maps;      // Quantized: each state tensor's map

  bool continued_by(const Piece& t) const noexcept {
    if (storage == Storage::Quantized) return false;  // each tensor's blocks start at its first element
    const std::size_t size = dtype_size(dtype);
    const std::size_t state_size = storage == Storage::BFloat16 ? 2 : dtype_size(state_dtype_of(dtype));
    const auto at = [](const void* base, std::size_t bytes) { return static_cast<const char*>(base) + bytes; };
    if (t.dtype != dtype || t.storage != storage || t.f != f || at(p, n * size) != t.p || at(g, n * size) != t.g) {
      return false;
    }
    for (std::size_t k = 0; k < K; ++k) {
      if (at(s[k], n * state_size) != t.s[k]) return false;
    }
    return true;
  }

  /// Starts loading the elements of a piece of at most kFetchBytes per array into the CPU's
  /// cache, without waiting (larger pieces are streamed by the hardware's own prefetcher): the
  /// driver asks for a small piece a few places ahead of the one it steps, so that ten thousand
  /// small tensors, each an allocation of its own, do not each wait on memory when their loop
  /// starts. A hint only: it changes no bits.
  void fetch() const noexcept {
    const std::size_t bytes = n * dtype_size(dtype);
    if (bytes > kFetchBytes) return;
    const std::size_t state_bytes = storage == Storage::Quantized  ? n
                                    : storage == Storage::BFloat16 ? 2 * n
                                                                   : n * dtype_size(state_dtype_of(dtype));
    for (std::size_t at = 0; at < bytes; at += 64) {
      __builtin_prefetch(static_cast<const char*>(p) + at, 1);
      __builtin_prefetch(static_cast<const char*>(g) + at, 0);
    }
    for (std::size_t k = 0; k < K; ++k) {
      for (std::size_t at = 0; at < state_bytes; at += 64) __builtin_prefetch(static_cast<const char*>(s[k]) + at, 1);
    }
  }
  static constexpr std::size_t kFetchBytes = 2048;
};

/// State array k of a piece as storage_t<S>*, or null when the piece has no array k.
template <std::size_t k, typename S, std::size_t K, std::size_t F>
storage_t<S>* state_array(const Piece<K, F>& piece) noexcept {
  if constexpr (k < K) {
    return static_cast<storage_t<S>*>(piece.s[k]);
  } else {
    return nullptr;
  }
}

/// The loop of elementwise_kernel() on a CPU that rounds floats to bfloat16 in hardware, for
/// bfloat16 parameters or state: each block of elements is stepped as in that loop, its bfloat16
/// results kept as floats, then rounded by narrow_bf16_hardware(), which gives the same bits as
/// float_to_bf16() with fewer instructions than it takes in a vector loop.
template <typename P, typename S, typename R, std::size_t K, std::size_t F>
__attribute__((always_inline)) inline void bf16_blocks(const R& rule, const Factors<float, F>& f,
                                                       storage_t<P>* __restrict p, const storage_t<P>* __restrict g,
                                                       std::array<storage_t<S>*, 4> s, std::size_t begin,
                                                       std::size_t end) {
  constexpr bool kHalfValue = std::is_same_v<P, bfloat16>;
  constexpr bool kHalfState = std::is_same_v<S, bfloat16>;
  constexpr std::size_t kBlock = 256;
  [[maybe_unused]] alignas(64) float value[kBlock];
  [[maybe_unused]] alignas(64) float state[K > 0 ? K : 1][kBlock];
  storage_t<S>* __restrict s0 = s[0];
  storage_t<S>* __restrict s1 = s[1];
  storage_t<S>* __restrict s2 = s[2];
  storage_t<S>* __restrict s3 = s[3];
  for (std::size_t b = begin; b < end; b += kBlock) {
    const std::size_t n = std::min(kBlock, end - b);
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t i = b + j;
      float pi = widen<float, P>(p[i]);
      const float gi = widen<float, P>(g[i]);
      float a[4] = {};
      if constexpr (K > 0) a[0] = widen<float, S>(s0[i]);
      if constexpr (K > 1) a[1] = widen<float, S>(s1[i]);
      if constexpr (K > 2) a[2] = widen<float, S>(s2[i]);
      if constexpr (K > 3) a[3] = widen<float, S>(s3[i]);
      if constexpr (K == 0) {
        rule(f, pi, gi);
      } else if constexpr (K == 1) {
        rule(f, pi, gi, a[0]);
      } else if constexpr (K == 2) {
        rule(f, pi, gi, a[0], a[1]);
      } else if constexpr (K == 3) {
        rule(f, pi, gi, a[0], a[1], a[2]);
      } else {
        rule(f, pi, gi, a[0], a[1], a[2], a[3]);
      }
      if constexpr (kHalfValue) {
        value[j] = pi;
      } else {
        p[i] = narrow<P>(pi);
      }
      for (std::size_t k = 0; k < K; ++k) {
        if constexpr (kHalfState) {
          state[k][j] = a[k];
        } else {
          (k == 0 ? s0 : k == 1 ? s1 : k == 2 ? s2 : s3)[i] = narrow<S>(a[k]);
        }
      }
    }
    if constexpr (kHalfValue) narrow_bf16_hardware(value, p + b, n);
    if constexpr (kHalfState) {
      for (std::size_t k = 0; k < K; ++k) narrow_bf16_hardware(state[k], s[k] + b, n);
    }
  }
}

/// The loop over elements [begin, end) for parameters of element type P and state arrays of
/// element type S (the arithmetic type, or bfloat16 widened to it and rounded back to nearest).
/// The arrays come as restrict parameters (restrict locals leave GCC run-time alias checks it
/// gives up on with four or five arrays).
template <typename P, typename S, typename R, std::size_t K, std::size_t F>
OPTREG_KERNEL void elementwise_kernel(const R rule, const Factors<arith_t<P>, F> f, storage_t<P>* __restrict p,
                                      const storage_t<P>* __restrict g, storage_t<S>* __restrict s0,
                                      storage_t<S>* __restrict s1, storage_t<S>* __restrict s2,
                                      storage_t<S>* __restrict s3, std::size_t begin, std::size_t end) {
  static_assert(K <= 4, "Elementwise drives at most four state tensors");
  using A = arith_t<P>;
  if constexpr (std::is_same_v<P, bfloat16> || std::is_same_v<S, bfloat16>) {
    if (has_bf16_conversion()) {
      bf16_blocks<P, S, R, K, F>(rule, f, p, g, {s0, s1, s2, s3}, begin, end);
      return;
    }
  }
  for (std::size_t i = begin; i < end; ++i) {
    A pi = widen<A, P>(p[i]);
    const A gi = widen<A, P>(g[i]);
    if constexpr (K == 0) {
      rule(f, pi, gi);
    } else if constexpr (std::is_same_v<S, A>) {
      if constexpr (K == 1) {
        rule(f, pi, gi, s0[i]);
      } else if constexpr (K == 2) {
        rule(f, pi, gi, s0[i], s1[i]);
      } else if constexpr (K == 3) {
        rule(f, pi, gi, s0[i], s1[i], s2[i]);
      } else {
        rule(f, pi, gi, s0[i], s1[i], s2[i], s3[i]);
      }
    } else {
      // Each state element widened to A for the rule, and its result rounded back.
      A a0 = widen<A, S>(s0[i]);
      if constexpr (K == 1) {
        rule(f, pi, gi, a0);
      } else {
        A a1 = widen<A, S>(s1[i]);
        if constexpr (K == 2) {
          rule(f, pi, gi, a0, a1);
        } else {
          A a2 = widen<A, S>(s2[i]);
          if constexpr (K == 3) {
            rule(f, pi, gi, a0, a1, a2);
          } else {
            A a3 = widen<A, S>(s3[i]);
            rule(f, pi, gi, a0, a1, a2, a3);
            s3[i] = narrow<S>(a3);
          }
          s2[i] = narrow<S>(a2);
        }
        s1[i] = narrow<S>(a1);
      }
      s0[i] = narrow<S>(a0);
    }
    p[i] = narrow<P>(pi);
  }
  (void)s0, (void)s1, (void)s2, (void)s3;
}

/// The factors of a piece in the arithmetic type A (rounded to float for every dtype but float64).
template <typename A, std::size_t K, std::size_t F>
Factors<A, F> factors_of(const Piece<K, F>& piece) noexcept {
  Factors<A, F> f{};
  for (std::size_t k = 0; k < F; ++k) f[k] = static_cast<A>(piece.f[k]);
  return f;
}

/// elementwise_kernel() over elements [begin, end) of one piece, whose state arrays are of
/// element type S.
template <typename P, typename S, typename R, std::size_t K, std::size_t F>
void elementwise_loop(const R& rule, const Piece<K, F>& piece, std::size_t begin, std::size_t end) {
  elementwise_kernel<P, S, R, K, F>(rule, factors_of<arith_t<P>>(piece), static_cast<storage_t<P>*>(piece.p),
                                    static_cast<const storage_t<P>*>(piece.g), state_array<0, S>(piece),
                                    state_array<1, S>(piece), state_array<2, S>(piece), state_array<3, S>(piece), begin,
                                    end);
}

/// The same over a piece with quantized state, block by block ([begin, end) starts at a block
/// of the tensor): each state tensor's block is read back into floats, the rule runs over the
/// block as over float32 state, and each block is quantized again with its new absmax. The
/// blocks of one tensor are independent, so the bits do not depend on how the tensor is split
/// into ranges of whole blocks.
template <typename P, typename R, std::size_t K, std::size_t F>
OPTREG_KERNEL void quantized_loop(const R rule, const Piece<K, F>& piece, std::size_t begin, std::size_t end) {
  static_assert(!std::is_same_v<P, double>, "float64 parameters keep float64 state");
  static_assert(K >= 1, "quantized state needs a state tensor");
  alignas(64) float block[K][kQuantBlock];
  const Factors<float, F> f = factors_of<float>(piece);
  auto* p = static_cast<storage_t<P>*>(piece.p);
  const auto* g = static_cast<const storage_t<P>*>(piece.g);
  std::array<float*, 4> at{};
  for (std::size_t k = 0; k < K; ++k) at[k] = block[k];
  for (std::size_t b = begin; b < end; b += kQuantBlock) {
    const std::size_t n = std::min(kQuantBlock, end - b);
    const std::size_t index = b / kQuantBlock;
    for (std::size_t k = 0; k < K; ++k) {
      dequantize_values(static_cast<const std::uint8_t*>(piece.s[k]) + b, n, piece.scales[k][index], *piece.maps[k],
                        block[k]);
    }
    elementwise_kernel<P, float, R, K, F>(rule, f, p + b, g + b, at[0], at[1], at[2], at[3], 0, n);
    for (std::size_t k = 0; k < K; ++k) {
      piece.scales[k][index] = quantize_values(block[k], n, *piece.maps[k], static_cast<std::uint8_t*>(piece.s[k]) + b);
    }
  }
}

/// Sums, over elements [begin, end) of one piece, the R terms `rule.terms(f, p, g, s...)`
/// returns for each element, into `sums` (R doubles): eight running sums per term, element i
/// in sum (i - begin) % 8, added up in a fixed tree. The rule may update the state it is given.
template <typename P, typename Rule, std::size_t R, std::size_t K, std::size_t F>
OPTREG_KERNEL void reduce_loop(const Rule rule, const Piece<K, F>& piece, std::size_t begin, std::size_t end,
                               double* sums) {
  using A = arith_t<P>;
  const storage_t<P>* __restrict p = static_cast<const storage_t<P>*>(piece.p);
  const storage_t<P>* __restrict g = static_cast<const storage_t<P>*>(piece.g);
  A* __restrict s0 = state_array<0, A>(piece);
  A* __restrict s1 = state_array<1, A>(piece);
  A* __restrict s2 = state_array<2, A>(piece);
  const Factors<A, F> f = factors_of<A>(piece);
  std::array<std::array<double, 8>, R> lane{};
  // The terms of element i, with its state elements.
  const auto terms = [&](std::size_t i) {
    const A pi = widen<A, P>(p[i]);
    const A gi = widen<A, P>(g[i]);
    if constexpr (K == 0) {
      return rule.terms(f, pi, gi);
    } else if constexpr (K == 1) {
      return rule.terms(f, pi, gi, s0[i]);
    } else if constexpr (K == 2) {
      return rule.terms(f, pi, gi, s0[i], s1[i]);
    } else {
      static_assert(K == 3, "a reduction drives at most three state tensors");
      return rule.terms(f, pi, gi, s0[i], s1[i], s2[i]);
    }
  };
  std::size_t i = begin;
  // Sixteen elements at a time, their terms laid out term by term so that the loop vectorises;
  // element i still goes to running sum (i - begin) % 8, in index order.
  for (; i + 16 <= end; i += 16) {
    alignas(64) double block[R][16];
    for (std::size_t k = 0; k < 16; ++k) {
      const std::array<double, R> t = terms(i + k);
      for (std::size_t r = 0; r < R; ++r) block[r][k] = t[r];
    }
    for (std::size_t r = 0; r < R; ++r) {
      for (std::size_t k = 0; k < 8; ++k) lane[r][k] += block[r][k];
      for (std::size_t k = 0; k < 8; ++k) lane[r][k] += block[r][8 + k];
    }
  }
  for (; i + 8 <= end; i += 8) {
    std::array<std::array<double, R>, 8> block;
    for (std::size_t k = 0; k < 8; ++k) block[k] = terms(i + k);
    for (std::size_t k = 0; k < 8; ++k) {
      for (std::size_t r = 0; r < R; ++r) lane[r][k] += block[k][r];
    }
  }
  for (std::size_t k = 0; i < end; ++i, ++k) {
    const std::array<double, R> t = terms(i);
    for (std::size_t r = 0; r < R; ++r) lane[r][k] += t[r];
  }
  for (std::size_t r = 0; r < R; ++r) {
    const std::array<double, 8>& s = lane[r];
    sums[r] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  }
  (void)s0, (void)s1, (void)s2;
}

}  // namespace detail

/// The elementwise driver of SDK 2 for an update with K state tensors (at most four) and F
/// factors per tensor. Keep one as a member of the optimizer: its storage is allocated at the
/// first step and reused, so later steps do not allocate.
template <std::size_t K, std::size_t F = 0>
class Elementwise {
 public:
  /// Forgets the tensors of the last step (keeping the storage).
  void clear() noexcept {
    pieces_.clear();
    tensors_.clear();
    quantized_ = false;
  }

  /// Adds one parameter (which has a gradient of its dtype: the base checked it), its K state
  /// tensors, each shaped like it, and its F factors. The state tensors are all of its
  /// arithmetic dtype, or (for a parameter that is not float64, under the core's `state_dtype`)
  /// all bfloat16, or all quantized (qint8 or quint8, each with its own map).
  void add(Parameter& param, const std::array<Tensor*, K>& state, const std::array<double, F>& factors = {}) {
    Tensor& value = param.value();
    detail::Piece<K, F> piece{value.raw(), param.grad().raw(), {}, factors, value.numel(), value.dtype(),
                              detail::Storage::Arith, {}, {}};
    const DType arith = state_dtype_of(value.dtype());
    for (std::size_t k = 0; k < K; ++k) {
      const Tensor& t = *state[k];
      detail::Storage storage = detail::Storage::Arith;
      bool fits = t.dtype() == arith;
      if (arith != DType::Float64 && t.dtype() == DType::BFloat16) {
        storage = detail::Storage::BFloat16;
        fits = true;
      } else if (arith != DType::Float64 && is_quantized(t.dtype())) {
        storage = detail::Storage::Quantized;
        fits = true;
      }
      if (k == 0) piece.storage = storage;
      fits = fits && storage == piece.storage;
      if (!fits || t.numel() != value.numel()) {
        throw UsageError("parameter '" + param.name() + "': state tensor " + std::to_string(k) + " is " +
                         dtype_name(t.dtype()) + " of " + std::to_string(t.numel()) + " elements, but its step needs " +
                         std::to_string(value.numel()) + " elements of " + dtype_name(arith) +
                         (arith == DType::Float64 ? "" : ", bfloat16, or qint8/quint8, the same kind for every state tensor"));
      }
      if (storage == detail::Storage::Quantized) {
        piece.s[k] = state[k]->codes();
        piece.scales[k] = state[k]->scales();
        piece.maps[k] = &dynamic_map(t.dtype());
      } else {
        piece.s[k] = state[k]->raw();
      }
    }
    quantized_ = quantized_ || piece.storage == detail::Storage::Quantized;
    tensors_.push_back(piece);
    append_range(pieces_, piece);
  }

  /// Runs Rule<A> (made from `hyper`: `Rule<A>(hyper)`) over every element of every tensor
  /// added: `rule(factors, p, g, s...)` with the element's value p (read and written), its
  /// gradient g, and its K state elements s (read and written), all of type A.
  template <template <typename> class Rule, typename Hyper>
  void run(const Hyper& hyper, std::size_t grain = std::size_t{1} << 14) {
    if (quantized_) {  // whole blocks on one thread: each tensor in its fixed segments
      run_tensors<Rule>(hyper);
      return;
    }
    const Rule<float> single(hyper);
    const Rule<double> twice(hyper);
    ranges_.run(
        pieces_.size(), [&](std::size_t i) { return pieces_[i].n; },
        [&](std::size_t i, std::size_t begin, std::size_t end) {
          if (i + kFetchAhead < pieces_.size()) pieces_[i + kFetchAhead].fetch();
          loop(single, twice, pieces_[i], begin, end);
        },
        grain);
  }

  /// The reduction phase: runs `Rule<A>(hyper).terms(factors, p, g, s...)`, which returns R
  /// doubles per element (and may update the state it is given, not p), and returns, for each
  /// tensor added (in the order added), the R sums of its terms, each summed in the fixed order
  /// described above. The sums have the same bits with any thread count.
  template <std::size_t R, template <typename> class Rule, typename Hyper>
  const std::vector<std::array<double, R>>& reduce(const Hyper& hyper, std::vector<std::array<double, R>>& out) {
    for (const detail::Piece<K, F>& piece : tensors_) {
      if (piece.storage != detail::Storage::Arith) {
        throw UsageError("the reduction phase of the elementwise driver reads state in its arithmetic dtype only; "
                         "an optimizer that reduces does not declare bfloat16 or int8 state");
      }
    }
    const Rule<float> single(hyper);
    const Rule<double> twice(hyper);
    segments_.plan(tensors_.size(), [&](std::size_t i) { return tensors_[i].n; });
    partial_.resize(R * segments_.size());
    segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
      if (i + kFetchAhead < tensors_.size()) tensors_[i + kFetchAhead].fetch();
      const detail::Piece<K, F>& piece = tensors_[i];
      visit_dtype(piece.dtype, [&](auto tag) {
        using P = decltype(tag);
        if constexpr (std::is_same_v<P, double>) {
          detail::reduce_loop<P, Rule<double>, R>(twice, piece, begin, end, &partial_[R * s]);
        } else {
          detail::reduce_loop<P, Rule<float>, R>(single, piece, begin, end, &partial_[R * s]);
        }
      });
    });
    out.resize(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      for (std::size_t r = 0; r < R; ++r) out[i][r] = segments_.sum(partial_, i, R, r);
    }
    return out;
  }

  /// Sets factor `k` of tensor `i` (in the order added) for the next run_tensors(), after a
  /// reduce(); run() keeps the factors given to add().
  void set_factor(std::size_t i, std::size_t k, double value) noexcept { tensors_[i].f[k] = value; }

  /// Runs Rule<A> over every tensor added one by one (not merged), in the fixed segments of
  /// reduce(), with the factors set since: the apply phase that follows a reduction.
  template <template <typename> class Rule, typename Hyper>
  void run_tensors(const Hyper& hyper) {
    const Rule<float> single(hyper);
    const Rule<double> twice(hyper);
    segments_.plan(tensors_.size(), [&](std::size_t i) { return tensors_[i].n; });
    segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
      if (i + kFetchAhead < tensors_.size()) tensors_[i + kFetchAhead].fetch();
      loop(single, twice, tensors_[i], begin, end);
    });
  }

 private:
  /// The loop over elements [begin, end) of `piece`, compiled for its dtype.
  template <typename Single, typename Twice>
  static void loop(const Single& single, const Twice& twice, const detail::Piece<K, F>& piece, std::size_t begin,
                   std::size_t end) {
    visit_dtype(piece.dtype, [&](auto tag) {
      using P = decltype(tag);
      if constexpr (std::is_same_v<P, double>) {
        detail::elementwise_loop<P, double>(twice, piece, begin, end);
      } else if (piece.storage == detail::Storage::BFloat16) {
        detail::elementwise_loop<P, bfloat16>(single, piece, begin, end);
      } else if (piece.storage == detail::Storage::Quantized) {
        if constexpr (K > 0) detail::quantized_loop<P>(single, piece, begin, end);
      } else {
        detail::elementwise_loop<P, float>(single, piece, begin, end);
      }
    });
  }

  // A loop fetches the elements of the piece this many places ahead of the one it steps (Piece::fetch()).
  static constexpr std::size_t kFetchAhead = 3;
  std::vector<detail::Piece<K, F>> pieces_;   // merged ranges, for run()
  std::vector<detail::Piece<K, F>> tensors_;  // one per tensor, for reduce() and run_tensors()
  std::vector<double> partial_;               // per segment: the R sums
  ElementRanges ranges_;
  Segments segments_;
  bool quantized_ = false;  // some tensor added since clear() has quantized state
};

static_assert(Segments::kLength % kQuantBlock == 0, "a segment holds whole blocks of quantized state");

}  // namespace optreg::sdk
