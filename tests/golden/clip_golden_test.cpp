// Replays PyTorch 1.13's clip_grad_norm_ and clip_grad_value_ results of clip.txt (written by
// generate_clip.py) through optreg::clip_grad_norm and optreg::clip_grad_value, and pins the
// error option and the config route.
//
// Tolerance: relative 1e-6 for the total norm and the clipped gradients. Both compute float32
// results, but optreg accumulates each norm in double while PyTorch's reductions accumulate in
// float32 in their own order, so a norm may differ in its last bits (a float32 ulp is 6e-8
// relative); the factor and every gradient inherit that difference. Clipping by value is exact.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/clip.hpp>
#include <optreg/config.hpp>
#include <optreg/error.hpp>

#include "test_support.hpp"

namespace {

constexpr double kRtol = 1e-6;

struct ClipCase {
  std::string name;
  bool by_norm = true;
  double a = 0, norm_type = 2;
  std::vector<std::vector<float>> grads;  // empty: no gradient
  std::vector<bool> has_grad;
  double total = 0;
  std::vector<std::vector<float>> clipped;
};

std::vector<float> floats(std::istringstream& in) {
  std::vector<float> out;
  std::string tok;
  while (in >> tok) out.push_back(std::stof(tok));
  return out;
}

std::vector<ClipCase> load_cases() {
  std::ifstream in(std::string(OPTREG_TEST_SOURCE_DIR) + "/golden/clip.txt");
  std::vector<ClipCase> out;
  std::string line;
  std::size_t declared = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line == "optreg-clip 1" || line == "end") continue;
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (key == "cases") {
      s >> declared;
    } else if (key == "case") {
      out.emplace_back();
      s >> out.back().name;
    } else if (key == "norm") {
      std::string a, p;
      s >> a >> p;
      out.back().a = std::stod(a);
      out.back().norm_type = std::stod(p);
    } else if (key == "value") {
      std::string a;
      s >> a;
      out.back().by_norm = false;
      out.back().a = std::stod(a);
    } else if (key == "grad") {
      std::size_t i = 0;
      s >> i;
      const bool none = line.find(" none") != std::string::npos;
      out.back().grads.push_back(none ? std::vector<float>{} : floats(s));
      out.back().has_grad.push_back(!none);
    } else if (key == "total") {
      std::string t;
      s >> t;
      out.back().total = std::stod(t);
    } else if (key == "clipped") {
      std::size_t i = 0;
      s >> i;
      out.back().clipped.resize(out.back().grads.size());
      out.back().clipped.at(i) = floats(s);
    } else {
      throw std::runtime_error("clip.txt: unknown line '" + line + "'");
    }
  }
  if (out.size() != declared) throw std::runtime_error("clip.txt: the case count does not match its 'cases' line");
  return out;
}

std::vector<optreg::Parameter> params_of(const ClipCase& c) {
  std::vector<optreg::Parameter> out;
  for (std::size_t i = 0; i < c.grads.size(); ++i) {
    const auto n = static_cast<std::int64_t>(c.has_grad[i] ? c.grads[i].size() : 1);
    out.emplace_back("p" + std::to_string(i), optreg::Tensor({n}));
    if (c.has_grad[i]) out.back().set_grad(optreg::Tensor({n}, c.grads[i]));
  }
  return out;
}

bool close(double got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= kRtol * std::fabs(want) + 1e-30;
}

class Clip : public ::testing::TestWithParam<ClipCase> {};

}  // namespace

TEST_P(Clip, MatchesPyTorch) {
  const ClipCase& c = GetParam();
  std::vector<optreg::Parameter> params = params_of(c);
  if (c.by_norm) {
    const double total = optreg::clip_grad_norm(params, c.a, c.norm_type);
    EXPECT_TRUE(close(total, c.total)) << "total norm " << total << ", PyTorch " << c.total;
  } else {
    optreg::clip_grad_value(params, c.a);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!c.has_grad[i]) {
      EXPECT_FALSE(params[i].has_grad());
      continue;
    }
    const optreg::Tensor& g = params[i].grad();
    ASSERT_EQ(g.numel(), c.clipped[i].size());
    for (std::size_t k = 0; k < g.numel(); ++k) {
      EXPECT_TRUE(c.by_norm ? close(g[k], c.clipped[i][k]) : g[k] == c.clipped[i][k])
          << "parameter " << i << " element " << k << ": " << g[k] << ", PyTorch " << c.clipped[i][k];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, Clip, ::testing::ValuesIn(load_cases()),
                         [](const ::testing::TestParamInfo<ClipCase>& info) { return info.param.name; });

TEST(ClipGradNorm, NonFiniteTotalThrowsWhenAskedNamingTheParameterAndChangesNothing) {
  optreg::Parameter a("a", optreg::Tensor({2}));
  optreg::Parameter b("b", optreg::Tensor({2}));
  a.set_grad(optreg::Tensor({2}, {1.0F, 2.0F}));
  b.set_grad(optreg::Tensor({2}, {std::nanf(""), 1.0F}));
  EXPECT_EQ(optreg_test::message_of<optreg::NonFiniteError>([&] { optreg::clip_grad_norm({a, b}, 1.0, 2.0, true); }),
            "clip_grad_norm: the total 2.0-norm of the gradients is .nan; the gradient of parameter 'b' is not finite");
  EXPECT_EQ(a.grad()[1], 2.0F);
  EXPECT_TRUE(std::isnan(optreg::clip_grad_norm({a, b}, 1.0)));  // returned, not hidden
}

TEST(ClipGradNorm, AMaxNormIsNanWhereverTheNanIs) {
  for (const std::vector<float>& values : {std::vector<float>{std::nanf(""), 0.5F, 0.25F},
                                           std::vector<float>{0.5F, std::nanf(""), 0.25F},
                                           std::vector<float>{0.5F, 0.25F, std::nanf("")}}) {
    for (bool nan_first : {false, true}) {
      optreg::Parameter a("a", optreg::Tensor({1}, {3.0F}));
      optreg::Parameter b("b", optreg::Tensor({3}));
      a.set_grad(optreg::Tensor({1}, {2.0F}));
      b.set_grad(optreg::Tensor({3}, values));
      const std::vector<optreg::Parameter> params = nan_first ? std::vector<optreg::Parameter>{b, a}
                                                              : std::vector<optreg::Parameter>{a, b};
      EXPECT_TRUE(std::isnan(optreg::clip_grad_norm(params, 1.0, HUGE_VAL))) << "nan in the first parameter: " << nan_first;
    }
  }
}

TEST(ClipGradNorm, BadArgumentsAreUsageErrors) {
  optreg::Parameter a("a", optreg::Tensor({1}));
  EXPECT_EQ(optreg_test::message_of<optreg::UsageError>([&] { optreg::clip_grad_norm({a}, 1.0, 0.0); }),
            "clip_grad_norm: norm_type = 0.0 must be positive (or inf)");
  EXPECT_EQ(optreg_test::message_of<optreg::UsageError>([&] { optreg::clip_grad_value({a}, -1.0); }),
            "clip_grad_value: clip_value = -1.0 must be a non-negative number");
  EXPECT_EQ(optreg::clip_grad_norm({a}, 1.0), 0.0) << "no gradient: nothing to clip";
}

TEST(ClipConfig, ApplyClipFollowsTheConfigSection) {
  optreg::Parameter a("a", optreg::Tensor({2}));
  a.set_grad(optreg::Tensor({2}, {3.0F, 4.0F}));
  const auto by_norm = optreg::parse_config("optimizer: {name: sgd}\nclip: {max_norm: 1.0, norm_type: 2}\n");
  const auto total = optreg::apply_clip(by_norm, {a});
  ASSERT_TRUE(total.has_value());
  EXPECT_EQ(*total, 5.0);
  EXPECT_NEAR(a.grad()[1], 0.8F, 1e-6);
  a.set_grad(optreg::Tensor({2}, {3.0F, -4.0F}));
  const auto by_value = optreg::parse_config("optimizer: {name: sgd}\nclip: {value: 0.5}\n");
  EXPECT_FALSE(optreg::apply_clip(by_value, {a}).has_value());
  EXPECT_EQ(a.grad()[0], 0.5F);
  EXPECT_EQ(a.grad()[1], -0.5F);
  const auto none = optreg::parse_config("optimizer: {name: sgd}\n");
  EXPECT_FALSE(optreg::apply_clip(none, {a}).has_value());
  const auto inf = optreg::parse_config("optimizer: {name: sgd}\nclip: {max_norm: 2, norm_type: inf, error_if_nonfinite: true}\n");
  EXPECT_TRUE(std::isinf(inf.clip->norm_type));
  EXPECT_TRUE(inf.clip->error_if_nonfinite);
}
