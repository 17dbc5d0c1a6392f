// The elementwise driver's bfloat16 rounding on CPUs with AVX512_BF16: the hardware conversion
// gives float_to_bf16()'s bits for every kind of float (it reads subnormals as zero, which the
// driver must mend), and a step over bfloat16 parameters and state gives the bits of the rule
// applied element by element with the software rounding.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/elementwise.hpp>

#include "test_support.hpp"

namespace {

namespace sdk = optreg::sdk;
using optreg::DType;

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct Hyper {
  float lr;
};

/// An Adam-like rule with a square root and divisions, so that its results span every exponent.
template <typename A>
struct Rule {
  A lr;
  explicit Rule(const Hyper& h) : lr(static_cast<A>(h.lr)) {}
  void operator()(const sdk::Factors<A, 0>& /*f*/, A& p, A g, A& m, A& v) const {
    m = m * A(0.9) + A(0.1) * g;
    v = v * A(0.999) + A(0.001) * g * g;
    p = p - lr * m / (std::sqrt(v) + A(1e-30));
  }
};

}  // namespace

TEST(ElementwiseBf16, HardwareRoundingGivesTheSoftwareBitsForEveryKindOfFloat) {
  if (!sdk::detail::has_bf16_conversion()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  // Every sign, exponent and top fraction, with low halves below, at and above the tie, so that
  // zeros, subnormals, normals, infinities and NaNs each round up, down and to even.
  std::vector<float> in;
  for (std::uint32_t high = 0; high < 0x10000u; ++high) {
    for (std::uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, 0x4321u}) {
      in.push_back(from_bits(high << 16 | low));
    }
  }
  std::vector<std::uint16_t> out(in.size());
  // Runs of every length from 1 to 67, so that the groups of 32, the masked tail and the groups
  // that hold a subnormal (rounded in software) all occur.
  for (std::size_t at = 0, length = 1; at < in.size(); at += length, length = length % 67 + 1) {
    const std::size_t n = std::min(length, in.size() - at);
    sdk::detail::narrow_bf16_hardware(in.data() + at, out.data() + at, n);
  }
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (out[i] != optreg::float_to_bf16(in[i]) && ++wrong <= 5) {
      ADD_FAILURE() << "float bits " << std::hex << optreg::float_bits(in[i]) << ": " << out[i] << " instead of "
                    << optreg::float_to_bf16(in[i]);
    }
  }
  EXPECT_EQ(wrong, 0U);
}

TEST(ElementwiseBf16, StepOverBfloat16ParametersAndStateGivesTheRuleRoundedElementByElement) {
  // Sizes around the blocks and groups of the loop; values whose results include subnormals.
  for (const std::size_t n : {1U, 31U, 32U, 33U, 255U, 256U, 257U, 1000U, 40001U}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    for (const std::size_t threads : {1U, 2U}) {
      optreg_test::ThreadCount count(threads);
      const auto value = [](std::size_t i) {
        return static_cast<float>(std::ldexp(std::sin(0.37 * i), -(int(i % 140))));
      };
      optreg::Tensor p({static_cast<std::int64_t>(n)}, DType::Float32);
      optreg::Tensor g({static_cast<std::int64_t>(n)}, DType::Float32);
      optreg::Tensor m({static_cast<std::int64_t>(n)}, DType::Float32);
      optreg::Tensor v({static_cast<std::int64_t>(n)}, DType::Float32);
      for (std::size_t i = 0; i < n; ++i) {
        p.data()[i] = value(i);
        g.data()[i] = value(i + 7) * 1e-3F;
        m.data()[i] = value(i + 3) * 1e-2F;
        v.data()[i] = std::fabs(value(i + 5)) * 1e-4F;
      }
      optreg::Parameter param("w", p.to(DType::BFloat16));
      param.set_grad(g.to(DType::BFloat16));
      optreg::Tensor ms = m.to(DType::BFloat16);
      optreg::Tensor vs = v.to(DType::BFloat16);
      // The expected bits: widen, the rule in float, round each result with float_to_bf16().
      std::vector<std::uint16_t> want_p(n), want_m(n), want_v(n);
      const Rule<float> rule(Hyper{1e-3F});
      for (std::size_t i = 0; i < n; ++i) {
        const auto widen = [](const optreg::Tensor& t, std::size_t j) {
          return optreg::bf16_to_float(t.data_as<optreg::bfloat16>()[j].bits);
        };
        float pi = widen(param.value(), i), mi = widen(ms, i), vi = widen(vs, i);
        rule({}, pi, widen(param.grad(), i), mi, vi);
        want_p[i] = optreg::float_to_bf16(pi);
        want_m[i] = optreg::float_to_bf16(mi);
        want_v[i] = optreg::float_to_bf16(vi);
      }
      sdk::Elementwise<2> driver;
      driver.add(param, {&ms, &vs});
      driver.run<Rule>(Hyper{1e-3F});
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(param.value().data_as<optreg::bfloat16>()[i].bits, want_p[i]) << "value " << i;
        ASSERT_EQ(ms.data_as<optreg::bfloat16>()[i].bits, want_m[i]) << "exp_avg " << i;
        ASSERT_EQ(vs.data_as<optreg::bfloat16>()[i].bits, want_v[i]) << "exp_avg_sq " << i;
      }
    }
  }
}
