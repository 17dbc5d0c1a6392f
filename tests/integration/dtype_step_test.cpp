// Every in-tree optimizer that declares half-precision parameters steps them as it steps float32
// ones, rounded to nearest: a bfloat16 or float16 run gives, at every step, the float32 run's
// result from the same (widened) values, rounded to the parameter's dtype, with the same state
// bits; float64 parameters keep float64 state; the bits do not depend on the thread count.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

using optreg::DType;
using optreg::Parameter;
using optreg::Tensor;
using optreg_test::in_tree_registry;

namespace {

/// The in-tree optimizers that declare `dtype`.
std::vector<std::string> stepping(DType dtype) {
  std::vector<std::string> out;
  for (const auto& d : in_tree_registry().list()) {
    if ((d.param_dtypes & optreg::dtype_bit(dtype)) != 0) out.push_back(d.name);
  }
  return out;
}

/// Options that exercise each optimizer's state: momentum where it has one.
optreg::Options options_for(const std::string& name) {
  optreg::Options o{{"lr", 0.01}};
  if (name == "sgd" || name == "rmsprop") o["momentum"] = 0.9;
  if (name == "adam" || name == "adamw") o["amsgrad"] = true;
  if (name == "asgd") o["t0"] = 2.0;
  return o;
}

/// Sizes that merge (one flat buffer) and do not (separate allocations), small and large.
std::vector<Parameter> params_of(DType dtype, Tensor& flat) {
  flat = Tensor({2000}, dtype);
  std::vector<Parameter> out;
  out.emplace_back("a", Tensor::part_of(flat, 0, {10, 70}));
  out.emplace_back("b", Tensor::part_of(flat, 700, {1300}));
  out.emplace_back("c", Tensor({40000}, dtype));
  out.emplace_back("d", Tensor({3}, dtype));
  for (std::size_t k = 0; k < out.size(); ++k) {
    Tensor v = Tensor({static_cast<std::int64_t>(out[k].value().numel())});
    for (std::size_t i = 0; i < v.numel(); ++i) v[i] = std::sin(0.37F * static_cast<float>(i) + static_cast<float>(k));
    Tensor c = v.to(dtype);
    std::memcpy(out[k].value().raw(), c.raw(), c.nbytes());
  }
  return out;
}

/// The gradient of step `step` for parameter value `v`, in v's dtype.
Tensor grad_of(const Tensor& v, int step) {
  Tensor g({static_cast<std::int64_t>(v.numel())});
  for (std::size_t i = 0; i < v.numel(); ++i) {
    const double x = v.element(i);
    g[i] = static_cast<float>(x * x - 0.3 * step + 1e-3 * static_cast<double>(i % 7));
  }
  Tensor out = g.to(v.dtype());
  return Tensor::part_of(out, 0, v.shape());
}

class HalfPrecisionStep : public ::testing::TestWithParam<DType> {};

}  // namespace

TEST_P(HalfPrecisionStep, EqualsTheFloat32StepRoundedToNearestWithTheSameState) {
  const DType dtype = GetParam();
  const std::vector<std::string> names = stepping(dtype);
  ASSERT_GE(names.size(), 10U) << "the elementwise optimizers declare " << optreg::dtype_name(dtype);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    Tensor flat, mirror_flat;
    std::vector<Parameter> half = params_of(dtype, flat);
    std::vector<Parameter> single = params_of(DType::Float32, mirror_flat);
    auto opt = in_tree_registry().create(name, half, options_for(name));
    auto ref = in_tree_registry().create(name, single, options_for(name));
    for (int step = 1; step <= 4; ++step) {
      for (std::size_t k = 0; k < half.size(); ++k) {
        // The float32 run starts each step from the half-precision values, widened.
        Tensor wide = half[k].value().to(DType::Float32);
        std::memcpy(single[k].value().raw(), wide.raw(), wide.nbytes());
        half[k].set_grad(grad_of(half[k].value(), step));
        single[k].set_grad(half[k].grad().to(DType::Float32));
      }
      opt->step().clear_grad();
      ref->step().clear_grad();
      for (std::size_t k = 0; k < half.size(); ++k) {
        ASSERT_TRUE(optreg_test::same_bits(half[k].value(), single[k].value().to(dtype)))
            << "parameter " << half[k].name() << ", step " << step;
        for (const auto& [entry, t] : opt->state(half[k]).tensors()) {
          EXPECT_EQ(t.dtype(), DType::Float32) << entry;
          ASSERT_TRUE(optreg_test::same_bits(t, ref->state(single[k]).tensor(entry)))
              << "state " << entry << " of " << half[k].name() << ", step " << step;
        }
      }
    }
  }
}

TEST_P(HalfPrecisionStep, GivesTheSameBitsWithOneAndTwoThreads) {
  const DType dtype = GetParam();
  for (const std::string& name : stepping(dtype)) {
    SCOPED_TRACE(name);
    std::vector<std::vector<double>> runs[2];
    for (const std::size_t threads : {1U, 2U}) {
      optreg_test::ThreadCount t(threads);
      Tensor flat;
      std::vector<Parameter> params = params_of(dtype, flat);
      auto opt = in_tree_registry().create(name, params, options_for(name));
      for (int step = 1; step <= 3; ++step) {
        for (auto& p : params) p.set_grad(grad_of(p.value(), step));
        opt->step().clear_grad();
      }
      for (const auto& p : params) {
        runs[threads - 1].push_back(p.value().to_double_vector());
        for (const auto& [entry, s] : opt->state(p).tensors()) runs[threads - 1].push_back(s.to_double_vector());
      }
    }
    EXPECT_EQ(runs[0], runs[1]);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HalfPrecisionStep, ::testing::Values(DType::BFloat16, DType::Float16),
                         [](const auto& info) { return std::string(optreg::dtype_name(info.param)); });

TEST(Float64Step, KeepsFloat64StateAndAFloat64StepIsNotTheFloat32One) {
  for (const std::string& name : stepping(DType::Float64)) {
    SCOPED_TRACE(name);
    Tensor flat, mirror_flat;
    std::vector<Parameter> wide = params_of(DType::Float64, flat);
    std::vector<Parameter> single = params_of(DType::Float32, mirror_flat);
    auto opt = in_tree_registry().create(name, wide, options_for(name));
    auto ref = in_tree_registry().create(name, single, options_for(name));
    for (int step = 1; step <= 3; ++step) {
      for (std::size_t k = 0; k < wide.size(); ++k) {
        wide[k].set_grad(grad_of(wide[k].value(), step));
        single[k].set_grad(grad_of(single[k].value(), step));
      }
      opt->step().clear_grad();
      ref->step().clear_grad();
    }
    std::size_t differ = 0, close = 0, total = 0;
    for (std::size_t k = 0; k < wide.size(); ++k) {
      for (const auto& [entry, t] : opt->state(wide[k]).tensors()) EXPECT_EQ(t.dtype(), DType::Float64) << entry;
      const std::vector<double> a = wide[k].value().to_double_vector();
      const std::vector<float> b = single[k].value().to_vector();
      for (std::size_t i = 0; i < a.size(); ++i, ++total) {
        differ += a[i] != static_cast<double>(b[i]) ? 1 : 0;
        close += std::fabs(a[i] - static_cast<double>(b[i])) <= 1e-3 * (1.0 + std::fabs(a[i])) ? 1 : 0;
      }
    }
    EXPECT_GT(differ, total / 2) << "a float64 step rounded to float32 like a float32 one";
    EXPECT_GT(close, total * 99 / 100) << "a float64 step strayed from the float32 one";
  }
}
