// Blockwise 8-bit dynamic quantization: the maps, nearest-value coding against a brute-force
// search, and what a block stores exactly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/quantize.hpp>

namespace {

/// The index of the value nearest x, the lower on a tie, by trying all 256.
std::uint8_t brute_nearest(const optreg::DynamicMap& m, float x) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < 256; ++i) {
    if (std::fabs(m.values[i] - x) < std::fabs(m.values[best] - x)) best = i;
  }
  return static_cast<std::uint8_t>(best);
}

}  // namespace

TEST(DynamicMaps, HoldTheirValuesAscendingWithZeroAndOne) {
  for (bool is_signed : {true, false}) {
    const optreg::DynamicMap& m = optreg::dynamic_map(is_signed);
    for (std::size_t i = 1; i < 256; ++i) ASSERT_LT(m.values[i - 1], m.values[i]) << i;
    EXPECT_EQ(m.values[255], 1.0f);
    EXPECT_EQ(m.values[m.nearest(0.0f)], 0.0f);
  }
  const optreg::DynamicMap& s = optreg::dynamic_map(true);
  EXPECT_NEAR(s.values[0], -0.99296875, 1e-7);  // the paper's map has no -1
  EXPECT_NEAR(s.values[128], 5.5e-7, 1e-12);   // the smallest positive: 1e-6 x the midpoint of [0.1, 1]
  EXPECT_EQ(optreg::dynamic_map(false).values[0], 0.0f);
}

TEST(DynamicMaps, NearestIsTheClosestValueTheLowerOnATie) {
  for (bool is_signed : {true, false}) {
    const optreg::DynamicMap& m = optreg::dynamic_map(is_signed);
    for (int k = -20000; k <= 20000; ++k) {
      const float x = std::copysign(std::pow(std::fabs(k) / 20000.0f, 3.0f), static_cast<float>(k));
      ASSERT_EQ(m.nearest(x), brute_nearest(m, x)) << x;
    }
    for (std::size_t i = 1; i < 256; ++i) {
      const float mid = (m.values[i - 1] + m.values[i]) / 2;
      ASSERT_EQ(m.nearest(mid), brute_nearest(m, mid)) << mid;
    }
  }
}

TEST(QuantizeBlock, StoresZeroAndTheAbsmaxExactlyAndBoundsEveryError) {
  std::vector<float> x(optreg::kQuantBlock);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i) * 0.37f) * 0.01f;
  x[7] = 0.0f;
  x[9] = 0.02f;  // the absmax
  const optreg::DynamicMap& m = optreg::dynamic_map(true);
  std::vector<std::uint8_t> codes(x.size());
  const float absmax = optreg::quantize_block(x.data(), x.size(), m, codes.data());
  EXPECT_EQ(absmax, 0.02f);
  std::vector<float> back(x.size());
  optreg::dequantize_block(codes.data(), codes.size(), absmax, m, back.data());
  EXPECT_EQ(back[7], 0.0f);
  EXPECT_EQ(back[9], 0.02f);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(codes[i], m.nearest(x[i] / absmax)) << i;
    // Never further than half the wider gap beside its map value, scaled (and a float's rounding).
    const std::size_t c = codes[i];
    const float below = c > 0 ? m.values[c] - m.values[c - 1] : 0.0f;
    const float above = c < 255 ? m.values[c + 1] - m.values[c] : 0.0f;
    EXPECT_LE(std::fabs(back[i] - x[i]), std::max(below, above) / 2 * absmax * 1.0001f) << i;
  }
}

TEST(QuantizeBlock, AZeroBlockIsZeroAndANonFiniteBlockReadsBackAsNaN) {
  const optreg::DynamicMap& m = optreg::dynamic_map(false);
  std::vector<float> zeros(10, 0.0f), out(10, 1.0f);
  std::vector<std::uint8_t> codes(10, 99);
  EXPECT_EQ(optreg::quantize_block(zeros.data(), 10, m, codes.data()), 0.0f);
  optreg::dequantize_block(codes.data(), 10, 0.0f, m, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
  std::vector<float> bad(10, 1.0f);
  bad[3] = std::numeric_limits<float>::infinity();
  const float absmax = optreg::quantize_block(bad.data(), 10, m, codes.data());
  EXPECT_TRUE(std::isnan(absmax));
  optreg::dequantize_block(codes.data(), 10, absmax, m, out.data());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}
