// Replays torch 1.13's LBFGS trajectories of lbfgs.txt (written by generate_lbfgs.py) through
// the lbfgs plugin: float64 parameters, stepped with a closure that evaluates the same
// quadratic or Rosenbrock function in double. After every step it compares the loss step()
// returned, the evaluation and iteration counts (exactly: the same control flow) and x.
//
// Tolerance: |a - b| <= 1e-12 + 1e-8 |b| on x. The plugin follows torch's algorithm operation
// by operation, but accumulates dot products in another order than torch's BLAS; the
// differences, ulps at first, grow where the problem amplifies them (Rosenbrock with a fixed
// step). The largest relative error across the cases is printed.
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

constexpr double kRtol = 1e-8;
constexpr double kAtol = 1e-12;
constexpr std::size_t kMinCases = 7;

struct Step {
  double loss;
  std::int64_t func_evals, n_iter;
  std::vector<double> x;
};

struct LbfgsCase {
  std::string name;
  std::string problem;
  std::size_t dim = 0;
  std::vector<double> a, b, x0;
  optreg::Options options;
  std::vector<Step> steps;
};

std::vector<double> numbers(std::istringstream& in) {
  std::vector<double> out;
  std::string tok;
  while (in >> tok) out.push_back(std::stod(tok));
  return out;
}

optreg::Value parse_value(const std::string& s) {
  char* end = nullptr;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (!s.empty() && *end == '\0') return optreg::Value(static_cast<std::int64_t>(i));
  const double d = std::strtod(s.c_str(), &end);
  if (!s.empty() && *end == '\0') return optreg::Value(d);
  return optreg::Value(s);
}

std::vector<LbfgsCase> load_cases() {
  std::ifstream in(std::string(OPTREG_TEST_SOURCE_DIR) + "/golden/lbfgs.txt");
  if (!in) throw std::runtime_error("cannot read golden/lbfgs.txt");
  std::vector<LbfgsCase> out;
  std::string line;
  bool header = false;
  std::size_t declared = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (!header) {
      if (line != "optreg-lbfgs 1") throw std::runtime_error("lbfgs.txt: unknown format line '" + line + "'");
      header = true;
    } else if (key == "cases") {
      s >> declared;
    } else if (key == "case") {
      out.emplace_back();
      s >> out.back().name;
    } else if (key == "problem") {
      s >> out.back().problem >> out.back().dim;
    } else if (key == "a") {
      out.back().a = numbers(s);
    } else if (key == "b") {
      out.back().b = numbers(s);
    } else if (key == "x0") {
      out.back().x0 = numbers(s);
    } else if (key == "options") {
      std::string kv;
      while (s >> kv) {
        const auto eq = kv.find('=');
        out.back().options.emplace(kv.substr(0, eq), parse_value(kv.substr(eq + 1)));
      }
    } else if (key == "step") {
      Step st{};
      int k = 0;
      s >> k >> st.loss >> st.func_evals >> st.n_iter;
      out.back().steps.push_back(st);
    } else if (key == "x") {
      out.back().steps.back().x = numbers(s);
    } else if (key != "end") {
      throw std::runtime_error("lbfgs.txt: unknown line '" + line + "'");
    }
  }
  if (out.size() != declared) throw std::runtime_error("lbfgs.txt: the case count disagrees with 'cases'");
  return out;
}

const std::vector<LbfgsCase>& cases() {
  static const std::vector<LbfgsCase> all = load_cases();
  return all;
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& c : cases()) names.push_back(c.name);
  return names;
}

/// The case's function at x, its gradient written to g.
double evaluate(const LbfgsCase& c, const double* x, double* g) {
  const std::size_t n = c.dim;
  double f = 0;
  if (c.problem == "quadratic") {
    for (std::size_t i = 0; i < n; ++i) {
      double ax = 0;
      for (std::size_t j = 0; j < n; ++j) ax += c.a[i * n + j] * x[j];
      g[i] = ax - c.b[i];
      f += 0.5 * x[i] * ax - c.b[i] * x[i];
    }
    return f;
  }
  for (std::size_t i = 0; i < n; ++i) g[i] = 0;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const double r = x[i + 1] - x[i] * x[i];
    f += 100 * r * r + (1 - x[i]) * (1 - x[i]);
    g[i] += -400 * x[i] * r - 2 * (1 - x[i]);
    g[i + 1] += 200 * r;
  }
  return f;
}

double max_rel_error = 0;

class LbfgsTrajectory : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST(LbfgsGolden, TheFileHoldsEveryCase) { EXPECT_GE(cases().size(), kMinCases); }

TEST_P(LbfgsTrajectory, MatchesTorch) {
  const LbfgsCase* c = nullptr;
  for (const auto& k : cases()) {
    if (k.name == GetParam()) c = &k;
  }
  ASSERT_NE(c, nullptr);
  optreg::Tensor value({static_cast<std::int64_t>(c->dim)}, optreg::DType::Float64);
  for (std::size_t i = 0; i < c->dim; ++i) value.data_as<double>()[i] = c->x0[i];
  optreg::Parameter x("x", value);
  optreg::OptimizerPtr opt = optreg_test::in_tree_registry().create("lbfgs", {x}, c->options);
  ASSERT_TRUE(opt->needs_closure());
  const optreg::Closure closure = [&] {
    optreg::Tensor g(x.value().shape(), optreg::DType::Float64);
    const double f = evaluate(*c, x.value().data_as<double>(), g.data_as<double>());
    x.set_grad(g);
    return f;
  };
  for (std::size_t k = 0; k < c->steps.size(); ++k) {
    const Step& want = c->steps[k];
    const double loss = opt->step(closure);
    EXPECT_NEAR(loss, want.loss, kAtol + kRtol * std::abs(want.loss)) << "step " << k + 1;
    EXPECT_EQ(std::get<std::int64_t>(opt->state(x).scalar("func_evals")), want.func_evals) << "step " << k + 1;
    EXPECT_EQ(std::get<std::int64_t>(opt->state(x).scalar("n_iter")), want.n_iter) << "step " << k + 1;
    for (std::size_t i = 0; i < c->dim; ++i) {
      const double a = x.value().data_as<double>()[i];
      const double b = want.x[i];
      EXPECT_NEAR(a, b, kAtol + kRtol * std::abs(b)) << "step " << k + 1 << ", element " << i;
      if (b != 0) max_rel_error = std::max(max_rel_error, std::abs(a - b) / std::abs(b));
    }
  }
  std::printf("%s: largest relative error so far %.3g\n", c->name.c_str(), max_rel_error);
}

INSTANTIATE_TEST_SUITE_P(Golden, LbfgsTrajectory, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });
