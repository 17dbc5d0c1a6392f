// Every in-tree optimizer that declares half-precision parameters steps them as it steps float32
// ones, rounded to nearest: a bfloat16 or float16 run gives, at every step, the float32 run's
// result from the same (widened) values, rounded to the parameter's dtype, with the same state
// bits; float64 parameters keep float64 state; the bits do not depend on the thread count.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/abi.hpp>

#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "dtype_support.hpp"
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
  // Those stepped with a closure (lbfgs) or over matrices only (muon) are left to their own
  // golden tests, which step them in float64 too; wrappers (lookahead, whose state starts from
  // the parameter's value) to theirs and to the conformance kit, which steps every dtype.
  constexpr std::uint32_t kOwnTests =
      optreg::abi::kOptimizerNeedsClosure | optreg::abi::kOptimizerMatricesOnly | optreg::abi::kOptimizerWrapper;
  for (const auto& d : in_tree_registry().list()) {
    if ((d.param_dtypes & optreg::dtype_bit(dtype)) != 0 && (d.flags & kOwnTests) == 0) out.push_back(d.name);
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
std::vector<Parameter> params_of(DType dtype, Tensor& flat) { return optreg_test::mixed_params(dtype, flat); }

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

// ---- the core's precision options ----

namespace {

/// Runs `steps` steps of `name` over bfloat16 parameters with `options`, from the same values
/// and gradients as params_of() and grad_of() give; returns the optimizer.
optreg::OptimizerPtr run_half(const std::string& name, std::vector<Parameter>& params, Tensor& flat,
                              const optreg::Options& options, int steps, DType dtype = DType::BFloat16) {
  params = params_of(dtype, flat);
  auto opt = in_tree_registry().create(name, params, options);
  for (int step = 1; step <= steps; ++step) {
    for (auto& p : params) p.set_grad(grad_of(p.value(), step));
    opt->step().clear_grad();
  }
  return opt;
}

}  // namespace

TEST(MasterWeights, TheMasterStepsAsFloat32AndTheParameterIsItsNearestHalf) {
  for (const std::string name : {"adam", "sgd", "lion", "lamb", "rmsprop"}) {
    SCOPED_TRACE(name);
    optreg::Options o = options_for(name);
    o["master_weights"] = true;
    Tensor flat, mirror_flat;
    std::vector<Parameter> half = params_of(DType::BFloat16, flat);
    std::vector<Parameter> single = params_of(DType::Float32, mirror_flat);
    for (std::size_t k = 0; k < half.size(); ++k) {
      Tensor wide = half[k].value().to(DType::Float32);  // the float32 run starts where the master does
      std::memcpy(single[k].value().raw(), wide.raw(), wide.nbytes());
    }
    auto opt = in_tree_registry().create(name, half, o);
    auto ref = in_tree_registry().create(name, single, options_for(name));
    for (int step = 1; step <= 5; ++step) {
      for (std::size_t k = 0; k < half.size(); ++k) {
        half[k].set_grad(grad_of(half[k].value(), step));
        single[k].set_grad(half[k].grad().to(DType::Float32));
      }
      opt->step().clear_grad();
      ref->step().clear_grad();
    }
    for (std::size_t k = 0; k < half.size(); ++k) {
      const Tensor& master = opt->state(half[k]).tensor("master_weight");
      EXPECT_EQ(master.dtype(), DType::Float32);
      EXPECT_TRUE(optreg_test::same_bits(master, single[k].value())) << half[k].name();
      EXPECT_TRUE(optreg_test::same_bits(half[k].value(), single[k].value().to(DType::BFloat16))) << half[k].name();
    }
  }
}

TEST(MasterWeights, ExistWhileTheOptionIsOnAndResumeBitExactly) {
  std::vector<Parameter> params;
  Tensor flat;
  auto opt = run_half("adam", params, flat, {{"lr", 0.01}, {"master_weights", true}}, 3);
  const optreg::StateDict saved = opt->state_dict();
  ASSERT_NO_THROW(saved.state.at(0).tensor("master_weight"));
  // A second optimizer loads the state dict and continues with the same bits.
  std::vector<Parameter> again;
  Tensor flat_again;
  auto resumed = run_half("adam", again, flat_again, {{"lr", 0.01}, {"master_weights", true}}, 0);
  for (std::size_t k = 0; k < params.size(); ++k) {
    std::memcpy(again[k].value().raw(), params[k].value().raw(), params[k].value().nbytes());
  }
  resumed->load_state_dict(saved);
  for (int step = 4; step <= 6; ++step) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      params[k].set_grad(grad_of(params[k].value(), step));
      again[k].set_grad(grad_of(again[k].value(), step));
    }
    opt->step().clear_grad();
    resumed->step().clear_grad();
  }
  for (std::size_t k = 0; k < params.size(); ++k) EXPECT_TRUE(optreg_test::same_bits(params[k].value(), again[k].value()));
  // Turned off, the master is dropped at the next step; turned on again, it starts from the parameter.
  opt->set_option("master_weights", optreg::Value(false));
  for (auto& p : params) p.set_grad(grad_of(p.value(), 7));
  opt->step().clear_grad();
  EXPECT_THROW(opt->state(params[0]).tensor("master_weight"), optreg::UsageError);
  opt->set_option("master_weights", optreg::Value(true));
  for (auto& p : params) p.set_grad(grad_of(p.value(), 8));
  const Tensor before = params[2].value().to(DType::Float32);
  opt->step().clear_grad();
  EXPECT_EQ(opt->state(params[2]).tensor("master_weight").dtype(), DType::Float32);
  EXPECT_FALSE(optreg_test::same_bits(before, opt->state(params[2]).tensor("master_weight")));
}

TEST(StochasticRounding, IsUnbiasedReproducibleAndSeededByStepAndParameter) {
  const optreg::Options base{{"lr", 1e-3}, {"rounding", std::string("stochastic")}};
  std::vector<Parameter> a, b, c;
  Tensor fa, fb, fc;
  run_half("sgd", a, fa, base, 4);
  run_half("sgd", b, fb, base, 4);
  optreg::Options seeded = base;
  seeded["rounding_seed"] = std::int64_t{7};
  run_half("sgd", c, fc, seeded, 4);
  std::size_t differ = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(optreg_test::same_bits(a[k].value(), b[k].value())) << "the same seed rounds alike";
    const auto x = a[k].value().to_vector(), y = c[k].value().to_vector();
    for (std::size_t i = 0; i < x.size(); ++i) differ += x[i] != y[i] ? 1 : 0;
  }
  EXPECT_GT(differ, 1000U) << "another seed rounds otherwise";

  // Updates far below a bfloat16 step: nearest rounding loses them all, stochastic rounding
  // keeps their sum on average.
  const float start = 1.0F, update = 1e-4F;  // bfloat16's step at 1 is 2^-7 = 0.0078
  std::vector<Parameter> ps = {Parameter("w", Tensor({20000}, DType::BFloat16))};
  ps[0].value().fill(start);
  auto opt = in_tree_registry().create("sgd", ps, {{"lr", 1.0}, {"rounding", std::string("stochastic")}});
  std::vector<Parameter> pn = {Parameter("w", Tensor({20000}, DType::BFloat16))};
  pn[0].value().fill(start);
  auto nearest = in_tree_registry().create("sgd", pn, {{"lr", 1.0}});
  for (int step = 0; step < 10; ++step) {
    Tensor g({20000}, DType::BFloat16);
    g.fill(-update);
    ps[0].set_grad(g.clone());
    pn[0].set_grad(g.clone());
    opt->step().clear_grad();
    nearest->step().clear_grad();
  }
  double mean = 0;
  for (float x : ps[0].value().to_vector()) mean += x;
  mean /= 20000.0;
  const double expected = 1.0 + 10 * static_cast<double>(optreg::to_float(optreg::bfloat16{optreg::float_to_bf16(update)}));
  EXPECT_NEAR(mean, expected, 2e-4);
  EXPECT_EQ(pn[0].value().to_vector()[0], 1.0F) << "nearest rounding loses every update";
  EXPECT_EQ(std::get<std::int64_t>(opt->state(ps[0]).scalar("rounding_step")), 10);
}

TEST(StochasticRounding, AStepCountAtTheTopRefusesTheStepBeforeAnythingChanges) {
  std::vector<Parameter> params;
  Tensor flat;
  auto opt = run_half("sgd", params, flat, {{"lr", 1e-3}, {"rounding", std::string("stochastic")}}, 1);
  optreg::StateDict sd = opt->state_dict();
  std::get<std::int64_t>(sd.state.at(1).scalar("rounding_step")) = optreg::kMaxCount;
  opt->load_state_dict(sd);
  std::vector<std::vector<double>> before;
  for (auto& p : params) {
    before.push_back(p.value().to_double_vector());
    p.set_grad(grad_of(p.value(), 2));
  }
  const std::string m = optreg_test::message_of<optreg::UsageError>([&] { opt->step(); });
  EXPECT_NE(m.find("parameter 'b' cannot take another step: its state count 'rounding_step'"), std::string::npos) << m;
  for (std::size_t k = 0; k < params.size(); ++k) EXPECT_EQ(params[k].value().to_double_vector(), before[k]);
}
