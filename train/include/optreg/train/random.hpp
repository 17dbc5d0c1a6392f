#pragma once
/// \file
/// Seeded random streams that give the same numbers on every platform and standard library:
/// std::mt19937_64 (whose sequence the C++ standard fixes) with our own conversions to
/// uniform and normal variates and our own shuffle (the standard distributions are not
/// specified bit for bit).

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace optreg::train {

/// Mixes a seed and a stream number into a well-spread 64-bit seed (SplitMix64 finaliser).
inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Random {
 public:
  Random(std::uint64_t seed, std::uint64_t stream) : engine_(mix_seed(seed, stream)) {}

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal (Box-Muller, one variate per call).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Uniform integer in [0, n), n > 0 (the modulo bias is below n / 2^64).
  std::uint64_t below(std::uint64_t n) { return engine_() % n; }

 private:
  std::mt19937_64 engine_;
};

/// A random permutation of 0..n-1 (Fisher-Yates).
inline std::vector<std::uint32_t> permutation(std::uint32_t n, Random& rng) {
  std::vector<std::uint32_t> p(n);
  for (std::uint32_t i = 0; i < n; ++i) p[i] = i;
  for (std::uint32_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
  return p;
}

}  // namespace optreg::train
