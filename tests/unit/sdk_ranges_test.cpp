// The SDK's range helpers: what each accepts, infinity included only where asked for, as the
// registry reads them (a Range from the same four fields).
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The Range a host makes of a hyperparameter declared with `b`.
optreg::Range range_of(sdk::Bounds b) { return optreg::Range{b.lo, b.hi, b.lo_open, b.hi_open}; }

}  // namespace

TEST(SdkBounds, UnboundedHelpersLeaveInfinityOut) {
  EXPECT_EQ(range_of(sdk::at_least(0.0)).to_string(), "[0.0, inf)");
  EXPECT_FALSE(range_of(sdk::at_least(0.0)).contains(kInf));
  EXPECT_EQ(range_of(sdk::greater_than(0.0)).to_string(), "(0.0, inf)");
  EXPECT_FALSE(range_of(sdk::greater_than(0.0)).contains(kInf));
  EXPECT_EQ(range_of(sdk::any()).to_string(), "(-inf, inf)");
  EXPECT_FALSE(range_of(sdk::any()).contains(kInf));
  EXPECT_FALSE(range_of(sdk::any()).contains(-kInf));
  EXPECT_TRUE(range_of(sdk::any()).contains(-1e308));
}

TEST(SdkBounds, IncludingInfLetsInfinityInAndSaysSo) {
  const optreg::Range r = range_of(sdk::including_inf(sdk::at_least(0.0)));
  EXPECT_EQ(r.to_string(), "[0.0, inf]");
  EXPECT_TRUE(r.contains(kInf));
  EXPECT_FALSE(r.contains(-1.0));
  EXPECT_EQ(range_of(sdk::including_inf(sdk::any())).to_string(), "[-inf, inf]");
  EXPECT_EQ(range_of(sdk::closed(0.0, kInf)).to_string(), "[0.0, inf]");
  // A finite end is left as it is.
  EXPECT_EQ(range_of(sdk::including_inf(sdk::open(0.0, 1.0))).to_string(), "(0.0, 1.0)");
}

TEST(SdkBounds, TheCompileTimeCheckOfADefaultAgreesWithRange) {
  constexpr optreg::abi::HyperparamSpec unbounded = sdk::float_option("x", 1.0, sdk::at_least(0.0), "x");
  static_assert(!optreg::sdk::detail::in_bounds(kInf, unbounded), "at_least(0.0) leaves inf out");
  constexpr optreg::abi::HyperparamSpec with_inf =
      sdk::float_option("x", 1.0, sdk::including_inf(sdk::at_least(0.0)), "x");
  static_assert(optreg::sdk::detail::in_bounds(kInf, with_inf), "including_inf lets inf in");
  SUCCEED();
}
