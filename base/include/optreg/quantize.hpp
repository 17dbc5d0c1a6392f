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

/// The 256 values of a dynamic map, ascending.
struct OPTREG_API DynamicMap {
  std::array<float, 256> values;
  bool is_signed;
  /// For each bucket of floats sharing the top 16 bits of their order key (sign, exponent and
  /// 7 fraction bits): the index of the last value not above the bucket's lowest float (0 when
  /// none is), where nearest() starts its search.
  std::array<std::uint8_t, 65536> start;
  /// The index of the value nearest `x` (which lies in [-1, 1]), the lower on a tie: the
  /// index std::lower_bound over `values` gives, or the one before it when that is nearer or
  /// as near. It starts from its bucket's entry of `start` and steps over at most the few
  /// values that share the bucket.
  std::uint8_t nearest(float x) const noexcept;
};

/// The signed (`is_signed`) or unsigned dynamic map.
OPTREG_API const DynamicMap& dynamic_map(bool is_signed) noexcept;
/// The squared map: the unsigned map's values squared.
OPTREG_API const DynamicMap& squared_map() noexcept;
/// The map of a quantized dtype: the signed map for qint8, the squared map for quint8.
inline const DynamicMap& dynamic_map(DType dtype) noexcept {
  return dtype == DType::QInt8 ? dynamic_map(true) : squared_map();
}

/// Quantizes the `n` values of `x` as one block into `codes`; returns the block's absmax.
OPTREG_API float quantize_block(const float* x, std::size_t n, const DynamicMap& map, std::uint8_t* codes) noexcept;

/// Reads back `n` values of a block quantized with `map` and scale `absmax` into `out`.
OPTREG_API void dequantize_block(const std::uint8_t* codes, std::size_t n, float absmax, const DynamicMap& map,
                                 float* out) noexcept;

}  // namespace optreg
