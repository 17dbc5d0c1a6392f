// Blockwise 8-bit dynamic quantization: the maps, and coding a block.
#include <optreg/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace optreg {

namespace {

/// The midpoints of `count` + 1 evenly spaced points from 0.1 to 1, times `scale`.
void add_midpoints(std::vector<double>& out, int count, double scale, double sign) {
  for (int j = 0; j < count; ++j) {
    const double lo = 0.1 + 0.9 * j / count;
    const double hi = 0.1 + 0.9 * (j + 1) / count;
    out.push_back(sign * scale * (lo + hi) / 2);
  }
}

/// The map's values in double, ascending.
std::vector<double> map_values(bool is_signed) {
  std::vector<double> v;
  for (int k = 0; k < 7; ++k) {
    const double scale = std::pow(10.0, k - 6);
    const int count = is_signed ? 1 << k : 1 << (k + 1);
    add_midpoints(v, count, scale, 1.0);
    if (is_signed) add_midpoints(v, count, scale, -1.0);
  }
  v.push_back(0.0);
  v.push_back(1.0);
  std::sort(v.begin(), v.end());
  return v;
}

/// A key that orders floats as their values do (-0 just below +0): the bits with the sign bit
/// set for a positive float, all bits flipped for a negative one.
std::uint32_t order_key(float x) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

DynamicMap make_map(bool is_signed, bool squared) {
  std::vector<double> v = map_values(is_signed);
  if (squared) {
    for (double& x : v) x *= x;
  }
  DynamicMap m{};
  m.is_signed = is_signed;
  for (std::size_t i = 0; i < m.values.size(); ++i) m.values[i] = static_cast<float>(v[i]);
  std::size_t last = 0;
  for (std::uint32_t t = 0; t < m.start.size(); ++t) {
    const std::uint32_t lowest = t << 16;
    while (last + 1 < m.values.size() && order_key(m.values[last + 1]) <= lowest) ++last;
    m.start[t] = static_cast<std::uint8_t>(last);
  }
  return m;
}

}  // namespace

std::uint8_t DynamicMap::nearest(float x) const noexcept {
  // The last value not above x (start's entry is one, or the first value), then the nearer of
  // it and the next (the lower on a tie).
  std::size_t i = start[order_key(x) >> 16];
  while (i < 255 && values[i + 1] <= x) ++i;
  if (i == 255 || x < values[i]) return static_cast<std::uint8_t>(i);
  return static_cast<std::uint8_t>(values[i + 1] - x < x - values[i] ? i + 1 : i);
}

const DynamicMap& dynamic_map(bool is_signed) noexcept {
  static const DynamicMap kSigned = make_map(true, false);
  static const DynamicMap kUnsigned = make_map(false, false);
  return is_signed ? kSigned : kUnsigned;
}

const DynamicMap& squared_map() noexcept {
  static const DynamicMap kSquared = make_map(false, true);
  return kSquared;
}

float quantize_block(const float* x, std::size_t n, const DynamicMap& map, std::uint8_t* codes) noexcept {
  float absmax = 0;
  bool finite = true;
  for (std::size_t i = 0; i < n; ++i) {
    finite = finite && std::isfinite(x[i]);
    absmax = std::max(absmax, std::fabs(x[i]));
  }
  const std::uint8_t zero = map.nearest(0.0f);
  if (!finite || absmax == 0) {
    std::fill(codes, codes + n, zero);
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  for (std::size_t i = 0; i < n; ++i) {
    // x / absmax lies in [-1, 1]; a division, not a multiplication by 1 / absmax, so that
    // absmax itself is exactly 1.
    codes[i] = map.nearest(x[i] / absmax);
  }
  return absmax;
}

void dequantize_block(const std::uint8_t* codes, std::size_t n, float absmax, const DynamicMap& map,
                      float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = map.values[codes[i]] * absmax;
}

}  // namespace optreg
