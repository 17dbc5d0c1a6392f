// Blockwise 8-bit dynamic quantization: the maps, and coding a block.
#include <optreg/quantize.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
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
    m.start[t] = static_cast<std::int32_t>(last);
  }
  // nearest() steps at most once from its bucket's start: no bucket may hold two values.
  for (std::size_t i = 1; i < m.values.size(); ++i) {
    if ((order_key(m.values[i - 1]) >> 16) == (order_key(m.values[i]) >> 16)) std::abort();
  }
  return m;
}

}  // namespace


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
  return quantize_values(x, n, map, codes);
}

void dequantize_block(const std::uint8_t* codes, std::size_t n, float absmax, const DynamicMap& map,
                      float* out) noexcept {
  dequantize_values(codes, n, absmax, map, out);
}

}  // namespace optreg
