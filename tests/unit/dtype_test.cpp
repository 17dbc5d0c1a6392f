// Element types and their conversions, checked against references written over distances in
// double (not over bit tricks): every bfloat16 and float16 value, and a sweep of floats.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/dtype.hpp>
#include <optreg/error.hpp>

namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// Finite floats across the whole range (every 65,537th bit pattern, a prime step), with the
/// ties of bfloat16 (low 16 bits 0x8000) and of float16's normals and their neighbours,
/// float16's range edges and both zeros.
std::vector<float> sweep() {
  std::vector<float> out;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 65537) {
    const float f = from_bits(static_cast<std::uint32_t>(u));
    if (std::isfinite(f)) out.push_back(f);
    const float tie = from_bits((static_cast<std::uint32_t>(u) & 0xFFFF0000u) | 0x8000u);
    if (std::isfinite(tie)) out.push_back(tie);
    // float16's ties: halfway between two normals (low 13 bits 0x1000), and around them.
    const float half_tie = from_bits((static_cast<std::uint32_t>(u) & 0xFFFFE000u) | 0x1000u);
    for (const float t : {half_tie, std::nextafter(half_tie, 0.0f), std::nextafter(half_tie, 1e30f)}) {
      if (std::isfinite(t)) out.push_back(t);
    }
  }
  for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 65536.0f, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f,
                  2.9802326e-08f, 1e-30f, -1e-30f}) {
    out.push_back(f);
  }
  return out;
}

/// The float16 bits nearest `x` by distance in double, ties to the even one: a search over
/// every finite float16 value (and 65536 standing for infinity, as the rounding rule says).
std::uint16_t f16_reference(float x) {
  static const std::vector<std::pair<double, std::uint16_t>> table = [] {
    std::vector<std::pair<double, std::uint16_t>> t;
    for (std::uint32_t h = 0; h < 0x7C00; ++h) t.emplace_back(optreg::f16_to_float(static_cast<std::uint16_t>(h)), h);
    t.emplace_back(65536.0, 0x7C00);
    return t;
  }();
  const double a = std::fabs(static_cast<double>(x));
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (a >= 65536.0) return sign | 0x7C00;
  const auto it = std::lower_bound(table.begin(), table.end(), std::make_pair(a, std::uint16_t{0}));
  if (it->first == a) return sign | it->second;
  const auto lo = it - 1;
  const double dl = a - lo->first, dh = it->first - a;
  const bool up = dh < dl || (dh == dl && (it->second & 1) == 0);
  return sign | (up ? it->second : lo->second);
}

/// The bfloat16 bits nearest `x` by distance in double, ties to even.
std::uint16_t bf16_reference(float x) {
  const std::uint32_t u = bits(x);
  const std::uint32_t lo = u & 0xFFFF0000u;
  const double a = std::fabs(static_cast<double>(x));
  const double l = std::fabs(static_cast<double>(from_bits(lo)));
  if (a == l) return static_cast<std::uint16_t>(lo >> 16);
  // The next magnitude; past the largest finite value it is 2^128, which stands for infinity.
  const double h = (lo & 0x7FFFFFFFu) == 0x7F7F0000u ? std::ldexp(1.0, 128) : std::fabs(static_cast<double>(from_bits(lo + 0x10000u)));
  const bool up = h - a < a - l || (h - a == a - l && ((lo >> 16) & 1u) == 1u);
  return static_cast<std::uint16_t>((lo >> 16) + (up ? 1u : 0u));
}

}  // namespace

TEST(DTypes, HaveNamesAndSizesAndUnknownNamesAreRefused) {
  EXPECT_STREQ(optreg::dtype_name(optreg::DType::BFloat16), "bfloat16");
  EXPECT_EQ(optreg::dtype_size(optreg::DType::Float64), 8U);
  EXPECT_EQ(optreg::dtype_size(optreg::DType::Float16), 2U);
  EXPECT_EQ(optreg::dtype_from_name("float16"), optreg::DType::Float16);
  try {
    optreg::dtype_from_name("half");
    ADD_FAILURE() << "no UsageError";
  } catch (const optreg::UsageError& e) {
    EXPECT_STREQ(e.what(), "unknown dtype 'half'; known dtypes: float32, float64, bfloat16, float16");
  }
}

TEST(BFloat16, EveryValueConvertsToFloatAndBackUnchanged) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const float f = optreg::bf16_to_float(static_cast<std::uint16_t>(b));
    EXPECT_EQ(bits(f), b << 16);
    const std::uint16_t back = optreg::float_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(optreg::bf16_to_float(back))) << b;
      EXPECT_EQ(back & 0x8000u, b & 0x8000u) << b;
    } else {
      ASSERT_EQ(back, b);
    }
  }
}

TEST(BFloat16, RoundsToTheNearestValueTiesToEven) {
  for (float x : sweep()) ASSERT_EQ(optreg::float_to_bf16(x), bf16_reference(x)) << x;
  EXPECT_EQ(optreg::float_to_bf16(3.4e38f), 0x7F80);  // past the midpoint above the largest: infinity
  EXPECT_EQ(optreg::float_to_bf16(-0.0f), 0x8000);
}

TEST(Float16, EveryValueConvertsToFloatAndBackUnchanged) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = optreg::f16_to_float(static_cast<std::uint16_t>(h));
    const std::uint16_t back = optreg::float_to_f16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(optreg::f16_to_float(back))) << h;
    } else {
      ASSERT_EQ(back, h) << f;
    }
  }
  EXPECT_EQ(optreg::f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(optreg::f16_to_float(0x7BFF), 65504.0f);
}

TEST(Float16, RoundsToTheNearestValueTiesToEven) {
  for (float x : sweep()) ASSERT_EQ(optreg::float_to_f16(x), f16_reference(x)) << x;
  EXPECT_EQ(optreg::float_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(optreg::float_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(optreg::float_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // a tie with 0 and the smallest: 0 is even
  EXPECT_EQ(optreg::float_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
}

TEST(StochasticRounding, RoundsUpForExactlyTheRandomValuesBelowThePartCutOff) {
  // For each x, all 65,536 random values: the number that round up is floor(2^16 * fraction),
  // and they are the smallest ones.
  for (float x : {1.0f + 0x1.0p-10f, 3.14159f, -2.5e-3f, 1e-6f, 3e-8f, 65504.5f, 0.1f, 1e30f, 7e-39f, 3.1e-12f, 1e-12f}) {
    const std::uint16_t lo16 = [&] {
      std::uint16_t t = optreg::float_to_f16(x);
      return std::fabs(optreg::f16_to_float(t)) > std::fabs(x) ? static_cast<std::uint16_t>(t - 1) : t;
    }();
    const std::uint32_t bf = bits(x);
    for (std::uint32_t r = 0; r < 0x10000; ++r) {
      const auto rr = static_cast<std::uint16_t>(r);
      const bool bf_up = optreg::float_to_bf16_stochastic(x, rr) != (bf >> 16);
      ASSERT_EQ(bf_up, r < (bf & 0xFFFFu)) << x << " r=" << r;
      if (std::fabs(x) >= 65536.0f) continue;
      const double lo = std::fabs(static_cast<double>(optreg::f16_to_float(lo16)));
      const double hi = (lo16 & 0x7FFF) == 0x7BFF ? 65536.0 : std::fabs(static_cast<double>(optreg::f16_to_float(lo16 + 1)));
      const double part = std::floor(65536.0 * (std::fabs(static_cast<double>(x)) - lo) / (hi - lo));
      const bool f16_up = optreg::float_to_f16_stochastic(x, rr) != lo16;
      ASSERT_EQ(f16_up, r < part) << x << " r=" << r;
    }
  }
}

TEST(StochasticRounding, NeverChangesAValueTheTargetHolds) {
  for (std::uint32_t r = 0; r < 0x10000; r += 7) {
    const auto rr = static_cast<std::uint16_t>(r);
    EXPECT_EQ(optreg::float_to_bf16_stochastic(1.5f, rr), optreg::float_to_bf16(1.5f));
    EXPECT_EQ(optreg::float_to_f16_stochastic(-65504.0f, rr), 0xFBFF);
    EXPECT_EQ(optreg::float_to_f16_stochastic(0x1.0p-24f, rr), 0x0001);
  }
}

TEST(RoundingBits, AreAPureFunctionOfSeedStepParameterAndElement) {
  // Pinned: references in other languages reproduce these bits (docs/precision.md).
  EXPECT_EQ(optreg::rounding_bits(0, 0, 0, 0), 0x2130748aaac80268ull);
  EXPECT_EQ(optreg::rounding_bits(1, 2, 3, 4), 0xd55ccd4aeb3ccafbull);
  EXPECT_NE(optreg::rounding_bits(1, 2, 3, 4), optreg::rounding_bits(1, 2, 3, 5));
  EXPECT_NE(optreg::rounding_bits(1, 2, 3, 4), optreg::rounding_bits(1, 3, 3, 4));
  EXPECT_NE(optreg::rounding_bits(1, 2, 3, 4), optreg::rounding_bits(2, 2, 3, 4));
}
