#pragma once
// Parameters of one dtype laid out the ways frameworks hand them over, shared by the tests of
// stepping each dtype and each state dtype.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <optreg/parameter.hpp>
#include <optreg/tensor.hpp>

namespace optreg_test {

/// Four parameters of `dtype`: "a" and "b" in one flat buffer `flat` (so that they merge into
/// one range), "c" of `large` elements and "d" of `small` (each allocated on its own), holding
/// sin(0.37 i + k), rounded to the dtype.
inline std::vector<optreg::Parameter> mixed_params(optreg::DType dtype, optreg::Tensor& flat, std::int64_t large = 40000,
                                                   std::int64_t small = 3) {
  flat = optreg::Tensor({2000}, dtype);
  std::vector<optreg::Parameter> out;
  out.emplace_back("a", optreg::Tensor::part_of(flat, 0, {10, 70}));
  out.emplace_back("b", optreg::Tensor::part_of(flat, 700, {1300}));
  out.emplace_back("c", optreg::Tensor({large}, dtype));
  out.emplace_back("d", optreg::Tensor({small}, dtype));
  for (std::size_t k = 0; k < out.size(); ++k) {
    optreg::Tensor v({static_cast<std::int64_t>(out[k].value().numel())});
    for (std::size_t i = 0; i < v.numel(); ++i) v[i] = std::sin(0.37F * static_cast<float>(i) + static_cast<float>(k));
    const optreg::Tensor c = v.to(dtype);
    std::memcpy(out[k].value().raw(), c.raw(), c.nbytes());
  }
  return out;
}

}  // namespace optreg_test
