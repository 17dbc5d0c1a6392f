#pragma once
/// \file
/// Blockwise 8-bit dynamic quantization, the storage of 8-bit optimizer state (Dettmers et al.,
/// "8-bit Optimizers via Block-wise Quantization", 2022): each block of values is scaled by its
/// largest magnitude (absmax) into [-1, 1] and every value is stored as the index of the
/// nearest of 256 values of a dynamic map.
///
/// Contract:
/// - The maps are the paper's dynamic tree maps with 7 exponent bits: the signed one (first
///   moments) holds 0, 1 and, for k = 0..6, the 2^k midpoints of linspace(0.1, 1, 2^k + 1)
///   times 10^(k - 6), with both signs; the unsigned one (second moments) holds 0, 1 and the
///   2^(k+1) midpoints of linspace(0.1, 1, 2^(k+1) + 1) times 10^(k - 6). Each value is computed
///   in double and rounded once to float, so a value may differ in its last bit from
///   bitsandbytes', whose map is computed in float.
/// - A value is stored as the index of the map value nearest to x / absmax, the lower index on
///   a tie; 0 and +absmax are stored exactly (the signed map holds 1 but not -1, as the
///   paper's does). A block holding a NaN or an infinity stores a NaN absmax, so that every
///   value of it reads back as NaN: divergence stays visible.
/// - Dequantization is map[code] * absmax, one float multiplication.
/// - The dtypes of optimizer state: qint8 uses the signed map; quint8 (second moments, never
///   negative) the *squared* map, whose values are the squares of the unsigned map's (computed
///   in double, rounded once to float). A second moment is on the scale of a squared gradient:
///   the squared map spans 14 decades below the absmax where the others span 7, so a second
///   moment keeps a nonzero value wherever the gradients that fed it are within the 7 decades a
///   first moment keeps. On the unsigned map it would read back as 0 there while the first
///   moment does not, and Adam's m / (sqrt(v) + eps) would step by m / eps.

#include <optreg/dtype.hpp>
#include <optreg/export.hpp>
#include <array>
#include <cstddef>
#include <cstdint>

namespace optreg {

/// A key that orders floats as their values do (-0 just below +0): the bits with the sign bit
/// set for a positive float, all bits flipped for a negative one.
inline std::uint32_t order_key(float x) noexcept {
  std::uint32_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

/// The 256 values of a dynamic map, ascending.
struct OPTREG_API DynamicMap {
  std::array<float, 256> values;
  bool is_signed;
  /// For each bucket of floats sharing the top 16 bits of their order key (sign, exponent and
  /// 7 fraction bits): the index of the last value not above the bucket's lowest float (0 when
  /// none is). No bucket holds more than one value of any map (checked when a map is made), so
  /// the value nearest a float is this entry, the next, or the one after.
  std::array<std::int32_t, 65536> start;
  /// The index of the value nearest `x` (which lies in [-1, 1]), the lower on a tie: the
  /// index std::lower_bound over `values` gives, or the one before it when that is nearer or
  /// as near. Written without branches, so that a loop over it vectorises (with gathers).
  std::uint8_t nearest(float x) const noexcept { return nearest_in(values.data(), start.data(), x); }

  /// nearest() over a map's `values` and `start` tables: from the bucket's start, one step up
  /// when the next value is not above x, then one more when the value above is nearer (on a
  /// tie, or past the last value, it stays).
  static std::uint8_t nearest_in(const float* values, const std::int32_t* start, float x) noexcept {
    std::int32_t k = start[order_key(x) >> 16];
    std::int32_t below_top = k < 255;
    k += below_top & static_cast<std::int32_t>(values[k + below_top] <= x);
    below_top = k < 255;
    k += static_cast<std::int32_t>(values[k + below_top] - x < x - values[k]);
    return static_cast<std::uint8_t>(k);
  }
};

/// The signed (`is_signed`) or unsigned dynamic map.
OPTREG_API const DynamicMap& dynamic_map(bool is_signed) noexcept;
/// The squared map: the unsigned map's values squared.
OPTREG_API const DynamicMap& squared_map() noexcept;
/// The map of a quantized dtype: the signed map for qint8, the squared map for quint8.
inline const DynamicMap& dynamic_map(DType dtype) noexcept {
  return dtype == DType::QInt8 ? dynamic_map(true) : squared_map();
}

/// Quantizes the `n` values of `x` as one block into `codes`; returns the block's absmax. The
/// same as quantize_block(), inline, so that a kernel compiled for a wider instruction set
/// vectorises it (the bits are the same: every operation is exact or correctly rounded).
inline float quantize_values(const float* __restrict x, std::size_t n, const DynamicMap& map,
                             std::uint8_t* __restrict codes) noexcept {
  // The largest magnitude as the largest bit pattern with the sign cleared (the patterns of
  // non-negative floats order as their values, infinity and NaN above every finite one), an
  // integer reduction that vectorises.
  std::uint32_t top = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    __builtin_memcpy(&u, &x[i], sizeof u);
    u &= 0x7FFFFFFFu;
    top = top < u ? u : top;
  }
  const std::uint8_t zero = map.nearest(0.0f);
  const bool bad = top >= 0x7F800000u;  // an infinity or a NaN
  float absmax;
  __builtin_memcpy(&absmax, &top, sizeof absmax);
  if (bad || absmax == 0) {
    for (std::size_t i = 0; i < n; ++i) codes[i] = zero;
    return bad ? __builtin_nanf("") : 0.0f;
  }
  const float* __restrict values = map.values.data();
  const std::int32_t* __restrict start = map.start.data();
  // nearest_in() in four simple loops over a chunk, each of which vectorises (with gathers).
  alignas(64) std::int32_t k[kQuantBlock];
  alignas(64) float q[kQuantBlock];
  for (std::size_t b = 0; b < n; b += kQuantBlock) {
    const std::size_t m = n - b < kQuantBlock ? n - b : kQuantBlock;
    for (std::size_t j = 0; j < m; ++j) {
      q[j] = x[b + j] / absmax;
      k[j] = start[static_cast<std::int32_t>(order_key(q[j]) >> 16)];  // a signed index: a hardware gather
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::int32_t below_top = k[j] < 255;
      k[j] += below_top & static_cast<std::int32_t>(values[k[j] + below_top] <= q[j]);
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::int32_t below_top = k[j] < 255;
      k[j] += static_cast<std::int32_t>(values[k[j] + below_top] - q[j] < q[j] - values[k[j]]);
    }
    for (std::size_t j = 0; j < m; ++j) codes[b + j] = static_cast<std::uint8_t>(k[j]);
  }
  return absmax;
}

/// The values of a block: map value times absmax (dequantize_block(), inline).
inline void dequantize_values(const std::uint8_t* __restrict codes, std::size_t n, float absmax, const DynamicMap& map,
                              float* __restrict out) noexcept {
  const float* __restrict values = map.values.data();
  for (std::size_t i = 0; i < n; ++i) out[i] = values[codes[i]] * absmax;
}

/// Quantizes the `n` values of `x` as one block into `codes`; returns the block's absmax.
OPTREG_API float quantize_block(const float* x, std::size_t n, const DynamicMap& map, std::uint8_t* codes) noexcept;

/// Reads back `n` values of a block quantized with `map` and scale `absmax` into `out`.
OPTREG_API void dequantize_block(const std::uint8_t* codes, std::size_t n, float absmax, const DynamicMap& map,
                                 float* out) noexcept;

}  // namespace optreg
