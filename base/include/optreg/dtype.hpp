#pragma once
/// \file
/// Element types and the conversions between them: float32, float64, bfloat16 and float16
/// (IEEE 754 binary16), rounding to nearest (ties to even) or stochastically; and the two
/// blockwise-quantized 8-bit dtypes of optimizer state, qint8 and quint8 (<optreg/quantize.hpp>).
///
/// Contract:
/// - Every conversion is exact where the value fits, and the same bits on every CPU and every
///   code path: they are written over the bit patterns, with no floating-point rounding mode,
///   FMA or vector instruction in between.
/// - Rounding to nearest breaks ties to the even neighbour, overflows to infinity past the
///   midpoint between the largest finite value and the next power of two, keeps the sign of
///   zero, and keeps subnormals of the target type. A NaN stays a NaN (made quiet) with its
///   sign; infinities stay infinities.
/// - Stochastic rounding of x whose magnitude lies between two neighbours lo < hi of the target
///   type rounds the magnitude up to hi exactly when the 16 random bits r, read as an integer,
///   are below floor(2^16 (|x| - lo) / (hi - lo)); so it gives hi with that probability, and a
///   value the target holds exactly is never changed. Past the largest finite value, hi is
///   infinity. Its randomness is
///   a pure function of (seed, step, parameter id, element index), rounding_bits(), so a
///   resumed run and any thread count give the same bits.

#include <optreg/export.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

namespace optreg {

/// The element type of a tensor.
enum class DType : std::uint32_t {
  Float32 = 1,
  Float64 = 2,
  BFloat16 = 3,
  Float16 = 4,
  /// Optimizer state only: 8-bit blockwise dynamic quantization with the signed map (first
  /// moments). A tensor holds one code byte per element, then (from the next multiple of four
  /// bytes) one float absmax per block of kQuantBlock elements.
  QInt8 = 5,
  /// The same with the unsigned map (second moments, which are never negative).
  QUInt8 = 6,
};

/// Elements per block of a quantized tensor: one float absmax per 512 values (0.0078 bytes of
/// scale per value).
inline constexpr std::size_t kQuantBlock = 512;

/// Whether `dtype` is a quantized dtype (qint8, quint8), whose elements are read through its
/// map and block scales, not as numbers in memory.
constexpr bool is_quantized(DType dtype) noexcept { return dtype == DType::QInt8 || dtype == DType::QUInt8; }

/// The blocks of `numel` elements of a quantized tensor.
constexpr std::size_t quant_blocks(std::size_t numel) noexcept { return (numel + kQuantBlock - 1) / kQuantBlock; }
/// Where the scales of a quantized tensor of `numel` elements start, in bytes: after its codes,
/// at the next multiple of four.
constexpr std::size_t quant_scales_offset(std::size_t numel) noexcept { return (numel + 3) / 4 * 4; }

/// A bfloat16 element as it lies in memory: the upper 16 bits of a float32.
struct bfloat16 {
  std::uint16_t bits;
};
/// A float16 (IEEE 754 binary16) element as it lies in memory.
struct float16 {
  std::uint16_t bits;
};
static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2, "half-precision elements are two bytes");

/// The DType of the C++ element type T (float, double, bfloat16, float16).
template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::Float32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::Float64;
};
template <>
struct dtype_of<bfloat16> {
  static constexpr DType value = DType::BFloat16;
};
template <>
struct dtype_of<float16> {
  static constexpr DType value = DType::Float16;
};
template <typename T>
inline constexpr DType dtype_v = dtype_of<T>::value;

/// Calls `f(T{})` with T the C++ element type of `dtype` (float, double, bfloat16, float16):
/// code written once over the element type, dispatched at run time. A quantized dtype has no
/// element type: callers handle it first (it would be visited as float).
template <typename F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float64: return f(double{});
    case DType::BFloat16: return f(bfloat16{});
    case DType::Float16: return f(float16{});
    case DType::Float32:
    case DType::QInt8:
    case DType::QUInt8: break;
  }
  return f(float{});
}

/// A set of dtypes, one bit per DType (bit 1 << DType): what a plugin supports.
using DTypeSet = std::uint32_t;
/// The set holding `dtype` alone.
constexpr DTypeSet dtype_bit(DType dtype) noexcept { return DTypeSet{1} << static_cast<std::uint32_t>(dtype); }
/// Every dtype a parameter may have (every dtype but the quantized ones).
inline constexpr DTypeSet kAllDTypes =
    dtype_bit(DType::Float32) | dtype_bit(DType::Float64) | dtype_bit(DType::BFloat16) | dtype_bit(DType::Float16);

/// "float32", "float64", "bfloat16", "float16", "qint8", "quint8".
OPTREG_API const char* dtype_name(DType dtype) noexcept;
/// The names of a set's dtypes, in the order of DType, joined by ", " ("float32, bfloat16").
OPTREG_API std::string dtype_names(DTypeSet set);
/// Bytes of one element (of a quantized dtype: its code byte); 0 for an unknown code.
OPTREG_API std::size_t dtype_size(DType dtype) noexcept;
/// Bytes that `numel` elements of `dtype` take in memory: numel * dtype_size(dtype), and for a
/// quantized dtype its codes, padding to a multiple of four bytes and one float per block.
constexpr std::size_t storage_bytes(DType dtype, std::size_t numel) noexcept {
  if (is_quantized(dtype)) return quant_scales_offset(numel) + quant_blocks(numel) * sizeof(float);
  switch (dtype) {
    case DType::Float64: return numel * 8;
    case DType::BFloat16:
    case DType::Float16: return numel * 2;
    default: return numel * 4;
  }
}
/// The element dtype named `name` (as dtype_name() writes it; not a quantized one); throws
/// UsageError naming the known ones.
OPTREG_API DType dtype_from_name(const std::string& name);

/// The bits of a float.
inline std::uint32_t float_bits(float f) noexcept {
  std::uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return u;
}
/// The float of some bits.
inline float bits_float(std::uint32_t u) noexcept {
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

/// bfloat16 bits to float (exact).
inline float bf16_to_float(std::uint16_t bits) noexcept { return bits_float(static_cast<std::uint32_t>(bits) << 16); }

/// float to bfloat16 bits, rounding to nearest, ties to even.
inline std::uint16_t float_to_bf16(float f) noexcept {
  const std::uint32_t u = float_bits(f);
  // Both results, then a select rather than an early return, so that loops over it vectorise.
  const std::uint32_t quiet_nan = (u >> 16) | 0x0040u;
  const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  // carries up to infinity, as it should
  return static_cast<std::uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
}

/// float to bfloat16 bits, rounding stochastically with the 16 random bits `random`: the
/// magnitude is rounded up when `random` is below the 16 bits that are cut off.
inline std::uint16_t float_to_bf16_stochastic(float f, std::uint16_t random) noexcept {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7F800000u) == 0x7F800000u) return float_to_bf16(f);  // infinity or NaN
  // Rounding up carries into the exponent where it must (up to infinity past the largest
  // finite value), never into the sign.
  return static_cast<std::uint16_t>((u >> 16) + (random < (u & 0xFFFFu) ? 1u : 0u));
}

/// float16 bits to float (exact), written without branches so that loops over it vectorise:
/// a normal or infinite or NaN value moves its bits and rebiases its exponent, a subnormal one
/// (or zero) is its significand times 2^-24, exactly.
inline float f16_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t a = h & 0x7FFFu;
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t normal = (a << 13) + 0x38000000u;  // exponent 15 -> 127
  const std::uint32_t special = (a << 13) | 0x7F800000u;  // infinity, or NaN with its payload
  const std::uint32_t sub = float_bits(static_cast<float>(static_cast<std::int32_t>(a)) * 0x1p-24F);
  return bits_float(sign | (a >= 0x7C00u ? special : a >= 0x0400u ? normal : sub));
}

/// float to float16 bits, rounding to nearest, ties to even, without branches: a normal result
/// rounds its rebiased bits with the bias 0xFFF plus the lowest kept bit; a subnormal one is
/// rounded by the float addition of 0.5, whose last place is 2^-24, the float16 subnormals'
/// step; a NaN stays a quiet NaN with the top of its payload.
inline std::uint16_t float_to_f16_bits(float f) noexcept {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7FFFFFFFu;
  const std::uint32_t nan = 0x7E00u | ((a >> 13) & 0x3FFu);
  const std::uint32_t normal = (a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13;  // a - (112 << 23) + 0xFFF + odd, to 65520 = infinity
  const std::uint32_t sub = float_bits(bits_float(a) + 0.5F) - 0x3F000000u;
  const std::uint32_t magnitude = a > 0x7F800000u ? nan : a >= 0x47800000u ? 0x7C00u : a < 0x38800000u ? sub : normal;
  return static_cast<std::uint16_t>(sign | magnitude);
}

/// float16 bits to float (exact); f16_bits_to_float() out of line.
OPTREG_API float f16_to_float(std::uint16_t bits) noexcept;
/// float to float16 bits, rounding to nearest, ties to even; float_to_f16_bits() out of line.
OPTREG_API std::uint16_t float_to_f16(float f) noexcept;
/// float to float16 bits, rounding stochastically with the 16 random bits `random`.
OPTREG_API std::uint16_t float_to_f16_stochastic(float f, std::uint16_t random) noexcept;

/// An element widened to float (exact for float32, bfloat16 and float16).
inline float to_float(float x) noexcept { return x; }
inline float to_float(bfloat16 x) noexcept { return bf16_to_float(x.bits); }
inline float to_float(float16 x) noexcept { return f16_bits_to_float(x.bits); }

/// An element of any dtype widened to double (exact).
inline double to_double(float x) noexcept { return x; }
inline double to_double(double x) noexcept { return x; }
inline double to_double(bfloat16 x) noexcept { return to_float(x); }
inline double to_double(float16 x) noexcept { return to_float(x); }

/// A float stored as element type T, rounding to nearest (ties to even).
template <typename T>
T from_float(float x) noexcept;
template <>
inline float from_float<float>(float x) noexcept {
  return x;
}
template <>
inline bfloat16 from_float<bfloat16>(float x) noexcept {
  return bfloat16{float_to_bf16(x)};
}
template <>
inline float16 from_float<float16>(float x) noexcept {
  return float16{float_to_f16_bits(x)};
}

/// The random bits stochastic rounding uses for element `element` of the parameter whose id is
/// `param_id`, at optimizer step `step` of a run seeded with `seed`. A pure function: SplitMix64's
/// finaliser applied along the chain seed, step, param_id, element (docs/precision.md gives it
/// in full, for references in other languages).
inline std::uint64_t rounding_bits(std::uint64_t seed, std::uint64_t step, std::uint64_t param_id,
                                   std::uint64_t element) noexcept {
  const auto mix = [](std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(mix(seed) ^ step) ^ param_id) ^ element);
}

}  // namespace optreg
