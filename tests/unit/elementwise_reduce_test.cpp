// sdk::Elementwise::reduce(): each tensor's terms summed in double in the documented order (eight
// running sums per segment of Segments::kLength elements, element i in sum (i - begin) % 8,
// a fixed tree, then the segments in order), whatever the tensor's size, dtype and the thread
// count, and the state updates the rule makes along the way.
#include <array>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/elementwise.hpp>

#include "test_support.hpp"

namespace {

namespace sdk = optreg::sdk;
using optreg::DType;

struct NoHyper {};

/// Terms p^2 and g * s, and the state advanced by g.
template <typename A>
struct Terms {
  explicit Terms(const NoHyper& /*h*/) {}
  std::array<double, 2> terms(const sdk::Factors<A, 1>& f, A p, A g, A& s) const {
    const double gs = static_cast<double>(g) * static_cast<double>(s);
    s = s + f[0] * g;
    return {static_cast<double>(p) * static_cast<double>(p), gs};
  }
};

/// The documented sum of term(i) over [0, n).
template <typename Term>
double documented_sum(std::size_t n, Term&& term) {
  double total = 0.0;
  for (std::size_t begin = 0; begin < n; begin += sdk::Segments::kLength) {
    const std::size_t end = std::min(n, begin + sdk::Segments::kLength);
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (std::size_t i = begin; i < end; ++i) lane[(i - begin) % 8] += term(i);
    total += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
  return total;
}

/// A tensor of `n` elements of `dtype`, element i = f(i) rounded to it.
template <typename F>
optreg::Tensor filled(DType dtype, std::size_t n, F&& f) {
  optreg::Tensor t({static_cast<std::int64_t>(n)}, DType::Float64);
  for (std::size_t i = 0; i < n; ++i) t.data_as<double>()[i] = f(i);
  return t.to(dtype);
}

}  // namespace

TEST(ElementwiseReduce, SumsEveryTensorInTheDocumentedOrderForAnySizeDTypeAndThreadCount) {
  // Sizes that end inside the sixteen-element blocks, the eight-element ones and the tail, and
  // tensors of several segments.
  const std::vector<std::size_t> sizes = {0, 1, 7, 8, 15, 16, 17, 23, 24, 31, 100, 16384, 16385, 40000, 70001};
  for (const DType dtype : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(optreg::dtype_name(dtype));
    std::vector<std::vector<double>> per_threads;
    for (const std::size_t threads : {1U, 2U}) {
      optreg_test::ThreadCount count(threads);
      std::vector<optreg::Parameter> params;
      std::vector<optreg::Tensor> state;
      for (std::size_t k = 0; k < sizes.size(); ++k) {
        const std::size_t n = sizes[k];
        params.emplace_back("t" + std::to_string(k), filled(dtype, n, [&](std::size_t i) { return std::sin(0.1 * i + k); }));
        params.back().set_grad(filled(dtype, n, [&](std::size_t i) { return std::cos(0.3 * i) * 1e-2; }));
        state.push_back(filled(optreg::state_dtype_of(dtype), n, [&](std::size_t i) { return 0.5 + 1e-3 * (i % 11); }));
      }
      const std::vector<optreg::Tensor> before = [&] {
        std::vector<optreg::Tensor> out;
        for (const auto& s : state) out.push_back(s.to(s.dtype()));
        return out;
      }();
      sdk::Elementwise<1, 1> driver;
      for (std::size_t k = 0; k < sizes.size(); ++k) driver.add(params[k], {&state[k]}, {0.25});
      std::vector<std::array<double, 2>> sums;
      driver.reduce<2, Terms>(NoHyper{}, sums);
      ASSERT_EQ(sums.size(), sizes.size());
      std::vector<double> all;
      for (std::size_t k = 0; k < sizes.size(); ++k) {
        SCOPED_TRACE("tensor of " + std::to_string(sizes[k]) + " elements");
        const optreg::Tensor& p = params[k].value();
        const optreg::Tensor& g = params[k].grad();
        EXPECT_EQ(sums[k][0], documented_sum(sizes[k], [&](std::size_t i) { return p.element(i) * p.element(i); }));
        EXPECT_EQ(sums[k][1],
                  documented_sum(sizes[k], [&](std::size_t i) { return g.element(i) * before[k].element(i); }));
        // The rule's state updates are kept: s + 0.25 * g, in the arithmetic type.
        for (std::size_t i = 0; i < sizes[k]; i += 97) {
          const double want = dtype == DType::Float64
                                  ? before[k].element(i) + 0.25 * g.element(i)
                                  : static_cast<double>(static_cast<float>(before[k].element(i)) +
                                                        0.25F * static_cast<float>(g.element(i)));
          ASSERT_EQ(state[k].element(i), want) << "element " << i;
        }
        all.push_back(sums[k][0]);
        all.push_back(sums[k][1]);
      }
      per_threads.push_back(all);
    }
    EXPECT_EQ(per_threads[0], per_threads[1]);
  }
}
