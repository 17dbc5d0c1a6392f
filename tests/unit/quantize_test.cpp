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
  for (const optreg::DynamicMap* map : {&optreg::dynamic_map(true), &optreg::dynamic_map(false), &optreg::squared_map()}) {
    const optreg::DynamicMap& m = *map;
    for (int k = -20000; k <= 20000; ++k) {
      const float x = std::copysign(std::pow(std::fabs(k) / 20000.0f, 3.0f), static_cast<float>(k));
      ASSERT_EQ(m.nearest(x), brute_nearest(m, x)) << x;
    }
    // Every value, its neighbouring floats, the midpoints and theirs: the ties and the edges of
    // the buckets nearest() starts from.
    for (std::size_t i = 0; i < 256; ++i) {
      std::vector<float> probes = {m.values[i], std::nextafter(m.values[i], -2.0f), std::nextafter(m.values[i], 2.0f)};
      if (i > 0) {
        const float mid = (m.values[i - 1] + m.values[i]) / 2;
        probes.insert(probes.end(), {mid, std::nextafter(mid, -2.0f), std::nextafter(mid, 2.0f)});
      }
      for (const float x : probes) {
        if (x < -1.0f || x > 1.0f) continue;
        ASSERT_EQ(m.nearest(x), brute_nearest(m, x)) << x;
      }
    }
    // Magnitudes spread evenly over 40 decades, both signs, and both zeros.
    std::uint64_t state = 12345;
    for (int k = 0; k < 200000; ++k) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      const double u = static_cast<double>(state >> 11) / 9007199254740992.0;
      const float x = static_cast<float>((k % 2 == 0 ? 1.0 : -1.0) * std::pow(10.0, -40.0 * u));
      ASSERT_EQ(m.nearest(x), brute_nearest(m, x)) << x;
    }
    EXPECT_EQ(m.nearest(-0.0f), brute_nearest(m, -0.0f));
  }
}

TEST(DynamicMaps, TheSquaredMapHoldsTheUnsignedValuesSquaredOverFourteenDecades) {
  const optreg::DynamicMap& u = optreg::dynamic_map(false);
  const optreg::DynamicMap& q = optreg::squared_map();
  EXPECT_EQ(&optreg::dynamic_map(optreg::DType::QUInt8), &q);
  EXPECT_EQ(&optreg::dynamic_map(optreg::DType::QInt8), &optreg::dynamic_map(true));
  for (std::size_t i = 0; i < 256; ++i) {
    EXPECT_NEAR(q.values[i], static_cast<double>(u.values[i]) * u.values[i], 3e-7 * q.values[i] + 1e-45) << i;
    if (i > 0) {
      ASSERT_LT(q.values[i - 1], q.values[i]) << i;
    }
  }
  EXPECT_EQ(q.values[255], 1.0f);
  EXPECT_LT(q.values[1], 1e-12F) << "the smallest positive value of the squared map";
  EXPECT_GT(u.values[1], 1e-7F) << "the smallest positive value of the unsigned map";
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
