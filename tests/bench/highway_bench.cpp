// Highway (Debian's libhwy-dev) against the plugin SDK's kernels, for the decision recorded in
// docs/performance.md: Adam's step written once with Highway's portable vectors and run-time
// dispatch, next to the SDK's elementwise kernel (plain C++ that GCC vectorises, cloned per
// instruction set by OPTREG_KERNEL), over float32 arrays and over bfloat16 parameters,
// gradients and state. Both use the same operations in the same order (no fused multiply-add),
// so they must give the same bits; the program checks that and prints elements per second,
// best of several repeats, on one thread, for an array in the caches and one in main memory.
//
//   highway_bench [--seconds S]
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "highway_bench.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstdint>

#ifndef OPTREG_HIGHWAY_BENCH_CONSTANTS  // this file is compiled once per target: define these once
#define OPTREG_HIGHWAY_BENCH_CONSTANTS
namespace bench {

/// Adam's per-element constants (no weight decay, no AMSGrad): f0 = -lr / (1 - beta1^t),
/// f1 = sqrt(1 - beta2^t).
struct AdamConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, f0, f1;
};

}  // namespace bench
#endif

HWY_BEFORE_NAMESPACE();
namespace bench {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

/// One vector of Adam's update, in the SDK rule's order of operations.
template <class D, class V>
HWY_INLINE void adam_vector(D d, const AdamConstants& c, V& p, V g, V& m, V& v) {
  m = hn::Add(hn::Mul(m, hn::Set(d, c.beta1)), hn::Mul(hn::Set(d, c.one_minus_beta1), g));
  v = hn::Add(hn::Mul(v, hn::Set(d, c.beta2)), hn::Mul(hn::Mul(hn::Set(d, c.one_minus_beta2), g), g));
  const V denom = hn::Add(hn::Div(hn::Sqrt(v), hn::Set(d, c.f1)), hn::Set(d, c.eps));
  p = hn::Add(p, hn::Div(hn::Mul(hn::Set(d, c.f0), m), denom));
}

/// The target this copy was compiled for.
std::int64_t Target() { return HWY_TARGET; }

void AdamF32(const AdamConstants& c, float* HWY_RESTRICT p, const float* HWY_RESTRICT g, float* HWY_RESTRICT m,
             float* HWY_RESTRICT v, std::size_t n) {
  const hn::ScalableTag<float> d;
  const std::size_t lanes = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto pi = hn::LoadU(d, p + i), mi = hn::LoadU(d, m + i), vi = hn::LoadU(d, v + i);
    adam_vector(d, c, pi, hn::LoadU(d, g + i), mi, vi);
    hn::StoreU(pi, d, p + i);
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
  }
  for (; i < n; ++i) {  // the tail, one lane at a time
    const hn::CappedTag<float, 1> d1;
    auto pi = hn::LoadU(d1, p + i), mi = hn::LoadU(d1, m + i), vi = hn::LoadU(d1, v + i);
    adam_vector(d1, c, pi, hn::LoadU(d1, g + i), mi, vi);
    hn::StoreU(pi, d1, p + i);
    hn::StoreU(mi, d1, m + i);
    hn::StoreU(vi, d1, v + i);
  }
}

/// bfloat16 bits widened to float (exact): the bits moved to the top half.
template <class DF, class DU16>
HWY_INLINE hn::Vec<DF> widen(DF df, DU16 du16, const std::uint16_t* HWY_RESTRICT at) {
  const hn::Rebind<std::uint32_t, DF> du32;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, at))));
}

/// float rounded to bfloat16 bits, to nearest with ties to even, NaN kept quiet. Highway 1.0's
/// DemoteTo to bfloat16 drops the low half instead of rounding, so this is spelt out.
template <class DF, class DU16>
HWY_INLINE void narrow(DF df, DU16 du16, hn::Vec<DF> x, std::uint16_t* HWY_RESTRICT at) {
  const hn::Rebind<std::uint32_t, DF> du32;
  const auto u = hn::BitCast(du32, x);
  const auto one = hn::Set(du32, 1u);
  const auto rounded = hn::ShiftRight<16>(hn::Add(hn::Add(u, hn::Set(du32, 0x7FFFu)), hn::And(hn::ShiftRight<16>(u), one)));
  const auto quiet_nan = hn::Or(hn::ShiftRight<16>(u), hn::Set(du32, 0x0040u));
  const auto is_nan = hn::Gt(hn::And(u, hn::Set(du32, 0x7FFFFFFFu)), hn::Set(du32, 0x7F800000u));
  (void)df;
  hn::StoreU(hn::DemoteTo(du16, hn::BitCast(hn::Rebind<std::int32_t, DF>(), hn::IfThenElse(is_nan, quiet_nan, rounded))), du16, at);
}

void AdamBF16(const AdamConstants& c, std::uint16_t* HWY_RESTRICT p, const std::uint16_t* HWY_RESTRICT g,
              std::uint16_t* HWY_RESTRICT m, std::uint16_t* HWY_RESTRICT v, std::size_t n) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<std::uint16_t, decltype(df)> du16;
  const std::size_t lanes = hn::Lanes(df);
  const auto block = [&](auto d, auto d16, std::size_t i) {
    auto pi = widen(d, d16, p + i), mi = widen(d, d16, m + i), vi = widen(d, d16, v + i);
    adam_vector(d, c, pi, widen(d, d16, g + i), mi, vi);
    narrow(d, d16, pi, p + i);
    narrow(d, d16, mi, m + i);
    narrow(d, d16, vi, v + i);
  };
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) block(df, du16, i);
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<std::uint16_t, decltype(d1)> d1u16;
  for (; i < n; ++i) block(d1, d1u16, i);
}

}  // namespace HWY_NAMESPACE
}  // namespace bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <optreg/elementwise.hpp>

namespace bench {

HWY_EXPORT(Target);
HWY_EXPORT(AdamF32);
HWY_EXPORT(AdamBF16);

/// The SDK's form of the same update: Adam's rule as the in-tree plugin writes it, without
/// weight decay, AMSGrad or maximize.
template <typename A>
struct Rule {
  A beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  explicit Rule(const AdamConstants& c)
      : beta1(c.beta1), beta2(c.beta2), one_minus_beta1(c.one_minus_beta1), one_minus_beta2(c.one_minus_beta2),
        eps(c.eps) {}
  void operator()(const optreg::sdk::Factors<A, 2>& f, A& p, A g, A& m, A& v) const {
    m = m * beta1 + one_minus_beta1 * g;
    v = v * beta2 + one_minus_beta2 * g * g;
    const A denom = std::sqrt(v) / f[1] + eps;
    p = p + f[0] * m / denom;
  }
};

template <typename P>
void sdk_step(const AdamConstants& c, optreg::sdk::storage_t<P>* p, const optreg::sdk::storage_t<P>* g,
              optreg::sdk::storage_t<P>* m, optreg::sdk::storage_t<P>* v, std::size_t n) {
  optreg::sdk::detail::elementwise_kernel<P, P, Rule<float>, 2, 2>(Rule<float>(c), {c.f0, c.f1}, p, g, m, v, nullptr,
                                                                   nullptr, 0, n);
}

template <typename F>
double best_seconds(double budget, F&& f) {
  double best = 1e30, spent = 0;
  for (int k = 0; k < 3 || spent < budget; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, t);
    spent += t;
  }
  return best;
}

template <typename T>
struct Arrays {
  std::vector<T> p, g, m, v;
  explicit Arrays(std::size_t n, T (*from)(float)) : p(n), g(n), m(n), v(n) {
    for (std::size_t i = 0; i < n; ++i) {
      p[i] = from(std::sin(0.001F * static_cast<float>(i)));
      g[i] = from(1e-3F * std::cos(0.37F * static_cast<float>(i)));
      m[i] = from(1e-4F * std::sin(0.11F * static_cast<float>(i)));
      v[i] = from(1e-6F * (1.0F + std::cos(0.05F * static_cast<float>(i))));
    }
  }
};

float same(float x) { return x; }
std::uint16_t to_bf16(float x) { return optreg::float_to_bf16(x); }

template <typename T, typename Sdk, typename Hwy>
void compare(const char* what, std::size_t n, T (*from)(float), const AdamConstants& c, double budget, Sdk&& sdk,
             Hwy&& hwy) {
  Arrays<T> a(n, from), b(n, from);
  for (int s = 0; s < 3; ++s) {
    sdk(c, a.p.data(), a.g.data(), a.m.data(), a.v.data(), n);
    hwy(c, b.p.data(), b.g.data(), b.m.data(), b.v.data(), n);
  }
  const bool equal = std::memcmp(a.p.data(), b.p.data(), n * sizeof(T)) == 0 &&
                     std::memcmp(a.m.data(), b.m.data(), n * sizeof(T)) == 0 &&
                     std::memcmp(a.v.data(), b.v.data(), n * sizeof(T)) == 0;
  const double t_sdk = best_seconds(budget, [&] { sdk(c, a.p.data(), a.g.data(), a.m.data(), a.v.data(), n); });
  const double t_hwy = best_seconds(budget, [&] { hwy(c, b.p.data(), b.g.data(), b.m.data(), b.v.data(), n); });
  std::printf("%-22s %10zu %12.1f %12.1f %9.2fx   %s\n", what, n, static_cast<double>(n) / t_sdk / 1e6,
              static_cast<double>(n) / t_hwy / 1e6, t_sdk / t_hwy, equal ? "same bits" : "BITS DIFFER");
}

}  // namespace bench

int main(int argc, char** argv) {
  double budget = 0.5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0) budget = std::atof(argv[i + 1]);
  }
  const bench::AdamConstants c{0.9F, 0.999F, 0.1F, 0.001F, 1e-8F, -1e-3F / 0.1F, std::sqrt(0.001F)};
  std::printf("Adam step on one thread, the SDK's kernel (OPTREG_KERNEL clones) against Highway %d.%d.%d "
              "(dispatched to %s)\n",
              HWY_MAJOR, HWY_MINOR, HWY_PATCH, hwy::TargetName(HWY_DYNAMIC_DISPATCH(bench::Target)()));
  std::printf("%-22s %10s %12s %12s %10s\n", "case", "elements", "SDK Melem/s", "hwy Melem/s", "hwy/SDK");
  for (const std::size_t n : {std::size_t{100'000}, std::size_t{10'000'000}}) {
    bench::compare<float>("float32", n, bench::same, c, budget, bench::sdk_step<float>,
                          [](auto&&... a) { HWY_DYNAMIC_DISPATCH(bench::AdamF32)(a...); });
    bench::compare<std::uint16_t>("bfloat16 params+state", n, bench::to_bf16, c, budget, bench::sdk_step<optreg::bfloat16>,
                                  [](auto&&... a) { HWY_DYNAMIC_DISPATCH(bench::AdamBF16)(a...); });
  }
  return 0;
}

#endif  // HWY_ONCE
