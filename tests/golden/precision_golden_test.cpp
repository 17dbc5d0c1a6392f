// Replays precision.txt (written by generate_precision.py) bit for bit: rounding to bfloat16 and
// float16 against PyTorch 1.13's own conversions, and stochastic rounding, rounding_bits and
// blockwise 8-bit quantization against numpy references written from docs/precision.md.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/dtype.hpp>
#include <optreg/quantize.hpp>

#include "test_support.hpp"

namespace {

std::uint32_t hex(const std::string& s) { return static_cast<std::uint32_t>(std::stoul(s, nullptr, 16)); }

float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::vector<std::string> lines() {
  std::ifstream in(std::string(OPTREG_TEST_SOURCE_DIR) + "/golden/precision.txt");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

/// The map a block record names: 1 signed, 0 unsigned, 2 squared (quint8's).
const optreg::DynamicMap& map_of(int kind) {
  return kind == 2 ? optreg::squared_map() : optreg::dynamic_map(kind == 1);
}

}  // namespace

TEST(PrecisionGolden, EveryRecordMatchesBitForBit) {
  const std::vector<std::string> all = lines();
  ASSERT_FALSE(all.empty());
  ASSERT_EQ(all.front(), "optreg-precision 1");
  std::size_t counts[7] = {};
  std::vector<float> block;
  int block_map = 1;
  for (std::size_t n = 1; n < all.size(); ++n) {
    std::istringstream s(all[n]);
    std::string key, a, b, c;
    s >> key;
    if (key == "bf16" || key == "f16") {
      s >> a >> b;
      const float x = float_of(hex(a));
      const std::uint16_t got = key == "bf16" ? optreg::float_to_bf16(x) : optreg::float_to_f16(x);
      ASSERT_EQ(got, hex(b)) << all[n];
      ++counts[key == "bf16" ? 0 : 1];
    } else if (key == "srbf16" || key == "srf16") {
      s >> a >> b >> c;
      const float x = float_of(hex(a));
      const auto r = static_cast<std::uint16_t>(hex(b));
      const std::uint16_t got =
          key == "srbf16" ? optreg::float_to_bf16_stochastic(x, r) : optreg::float_to_f16_stochastic(x, r);
      ASSERT_EQ(got, hex(c)) << all[n];
      ++counts[key == "srbf16" ? 2 : 3];
    } else if (key == "bits") {
      std::uint64_t seed = 0, step = 0, param = 0, element = 0;
      s >> seed >> step >> param >> element >> a;
      ASSERT_EQ(optreg::rounding_bits(seed, step, param, element), std::stoull(a, nullptr, 16)) << all[n];
      ++counts[4];
    } else if (key == "block") {
      s >> block_map;
      block.clear();
      while (s >> a) block.push_back(float_of(hex(a)));
    } else if (key == "codes") {
      s >> a;
      std::vector<int> expected;
      int code = 0;
      while (s >> code) expected.push_back(code);
      ASSERT_EQ(expected.size(), block.size()) << all[n];
      std::vector<std::uint8_t> codes(block.size());
      const float absmax = optreg::quantize_block(block.data(), block.size(), map_of(block_map), codes.data());
      ASSERT_EQ(absmax, float_of(hex(a))) << all[n];
      for (std::size_t i = 0; i < codes.size(); ++i) ASSERT_EQ(codes[i], expected[i]) << "element " << i << ": " << all[n];
      ++counts[5];
    } else {
      FAIL() << "unknown record: " << all[n];
    }
  }
  // Every kind of record is there, in the numbers the generator writes.
  EXPECT_GE(counts[0], 4000U);
  EXPECT_EQ(counts[0], counts[1]);
  EXPECT_GE(counts[2], 2400U);
  EXPECT_GE(counts[3], 1000U);
  EXPECT_EQ(counts[4], 4U);
  EXPECT_EQ(counts[5], 12U);
}
