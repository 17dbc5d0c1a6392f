// Element types: names and sizes, and the float16 conversions (bfloat16's are inline).
#include <optreg/dtype.hpp>

#include <cstring>

#include <optreg/error.hpp>

namespace optreg {

namespace {

constexpr DType kDTypes[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16};

/// A float magnitude cut toward zero to float16: the float16 magnitude bits kept, and the
/// part cut off, `rest` / 2^`width` of one float16 step (`width` 64: below 2^-40, less than
/// 2^-16 of the smallest step, so that neither rounding can go up).
struct Cut {
  std::uint32_t kept;
  std::uint64_t rest;
  std::uint32_t width;
};

/// `a`: float bits with the sign cleared, finite and below 65536.
Cut cut_to_f16(std::uint32_t a) noexcept {
  if (a >= 0x38800000u) {  // a float16 normal (2^-14 and above): rebias the exponent 127 -> 15
    const std::uint32_t v = a - 0x38000000u;
    return Cut{v >> 13, v & 0x1FFFu, 13};
  }
  // A float16 subnormal, in units of 2^-24: the float's significand m * 2^(e - 150) is
  // m >> (126 - e) units.
  const std::uint32_t e = a >> 23;
  if (e < 87) return Cut{0, 0, 64};
  const std::uint64_t m = (a & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t width = 126 - e;  // 14 to 39
  return Cut{static_cast<std::uint32_t>(m >> width), m & ((std::uint64_t{1} << width) - 1), width};
}

}  // namespace

const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::QInt8: return "qint8";
    case DType::QUInt8: return "quint8";
  }
  return "unknown dtype";
}

std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::BFloat16:
    case DType::Float16: return 2;
    case DType::QInt8:
    case DType::QUInt8: return 1;
  }
  return 0;
}

std::string dtype_names(DTypeSet set) {
  std::string out;
  for (DType d : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16, DType::QInt8, DType::QUInt8}) {
    if ((set & dtype_bit(d)) != 0) out += (out.empty() ? "" : ", ") + std::string(dtype_name(d));
  }
  return out;
}

DType dtype_from_name(const std::string& name) {
  std::string known;
  for (DType d : kDTypes) {
    if (name == dtype_name(d)) return d;
    known += (known.empty() ? "" : ", ") + std::string(dtype_name(d));
  }
  throw UsageError("unknown dtype " + quoted_name(name) + "; known dtypes: " + known);
}

float f16_to_float(std::uint16_t h) noexcept { return f16_bits_to_float(h); }

std::uint16_t float_to_f16(float f) noexcept { return float_to_f16_bits(f); }

std::uint16_t float_to_f16_stochastic(float f, std::uint16_t random) noexcept {
  const std::uint32_t u = float_bits(f);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return float_to_f16(f);                             // infinity or NaN
  if (a >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // 65536 and above
  const Cut c = cut_to_f16(a);
  // floor(2^16 * rest / 2^width): the part cut off in 2^-16 steps.
  const std::uint64_t part = c.width == 64 ? 0 : (c.rest << 16) >> c.width;
  return static_cast<std::uint16_t>(sign | (c.kept + (random < part ? 1u : 0u)));
}

}  // namespace optreg
