// Optimizer kernels from the in-tree plugins give the same bits with any thread count, and a
// group's state tensors are packed back to back.
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/parallel.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg_test::in_tree_registry;
using optreg_test::ThreadCount;

namespace {

/// Parameters of awkward sizes (many small, one large) and their state after a few steps.
std::vector<std::vector<float>> run_steps(const std::string& name, const optreg::Options& options,
                                          std::size_t threads) {
  ThreadCount t(threads);
  std::vector<optreg::Parameter> params;
  for (int i = 0; i < 300; ++i) params.emplace_back("small" + std::to_string(i), optreg::Tensor({1 + (i * 37) % 101}));
  params.emplace_back("large", optreg::Tensor({300007}));
  params.emplace_back("matrix", optreg::Tensor({3, 211, 257}));  // for optimizers that treat rows and columns apart
  for (std::size_t k = 0; k < params.size(); ++k) {
    optreg::Tensor& v = params[k].value();
    for (std::size_t i = 0; i < v.numel(); ++i) v[i] = std::sin(0.001F * static_cast<float>(i + 13 * k));
  }
  auto opt = in_tree_registry().create(name, params, options);
  for (int step = 0; step < 5; ++step) {
    for (auto& p : params) {
      optreg::Tensor g(p.value().shape());
      for (std::size_t i = 0; i < g.numel(); ++i) g[i] = p.value()[i] * p.value()[i] - 0.1F * static_cast<float>(step);
      p.accumulate_grad(g);
    }
    opt->step().clear_grad();
  }
  std::vector<std::vector<float>> out;
  for (const auto& p : params) {
    out.push_back(p.value().to_vector());
    for (const auto& [n, s] : opt->state(p).tensors()) out.push_back(s.to_vector());
  }
  return out;
}

bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST(ParallelKernels, SgdGivesTheSameBitsWithOneTwoAndThreeThreadsAndAcrossRuns) {
  const optreg::Options o = {{"lr", 0.01}, {"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 1e-4}};
  const auto one = run_steps("sgd", o, 1);
  EXPECT_TRUE(same_bits(one, run_steps("sgd", o, 2)));
  EXPECT_TRUE(same_bits(one, run_steps("sgd", o, 3)));
  EXPECT_TRUE(same_bits(run_steps("sgd", o, 2), run_steps("sgd", o, 2)));
}

TEST(ParallelKernels, AdamGivesTheSameBitsWithOneTwoAndThreeThreadsAndAcrossRuns) {
  for (bool amsgrad : {false, true}) {
    const optreg::Options o = {{"lr", 0.01}, {"amsgrad", amsgrad}, {"weight_decay", 1e-2}};
    const auto one = run_steps("adam", o, 1);
    EXPECT_TRUE(same_bits(one, run_steps("adam", o, 2))) << "amsgrad " << amsgrad;
    EXPECT_TRUE(same_bits(one, run_steps("adam", o, 3))) << "amsgrad " << amsgrad;
    EXPECT_TRUE(same_bits(run_steps("adam", o, 2), run_steps("adam", o, 2))) << "amsgrad " << amsgrad;
  }
}

TEST(ParallelKernels, PerTensorNormsGiveTheSameBitsWithOneTwoThreeAndFiveThreads) {
  // Optimizers that scale each tensor's update by norms or means over the whole tensor (or
  // over its rows and columns) take those sums in an order that the thread count cannot change.
  const std::vector<std::pair<std::string, optreg::Options>> cases = {
      {"lamb", {{"lr", 0.01}, {"weight_decay", 0.01}}},
      {"lamb", {{"lr", 0.01}, {"always_adapt", true}, {"bias_correction", false}}},
      {"lars", {{"lr", 0.5}, {"weight_decay", 1e-3}, {"nesterov", true}}},
      {"lion", {{"lr", 1e-3}, {"weight_decay", 0.1}}},
      {"adafactor", {}},
      {"adafactor", {{"beta1", 0.9}, {"weight_decay", 0.01}, {"clip_threshold", 0.5}}},
  };
  for (const auto& [name, o] : cases) {
    const auto one = run_steps(name, o, 1);
    for (std::size_t threads : {2, 3, 5}) EXPECT_TRUE(same_bits(one, run_steps(name, o, threads))) << name << " " << threads;
  }
}

TEST(PackedState, AGroupsStateTensorsLieBackToBackInParameterOrder) {
  const optreg::Registry& registry = optreg_test::reference_registry();
  optreg::Parameter a("a", optreg::Tensor({3})), b("b", optreg::Tensor({2, 2})), c("c", optreg::Tensor({5}));
  auto opt = registry.create("adam", {a, b, c}, {{"amsgrad", true}});
  for (const char* entry : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}) {
    EXPECT_EQ(opt->state(a).tensor(entry).data() + 3, opt->state(b).tensor(entry).data()) << entry;
    EXPECT_EQ(opt->state(b).tensor(entry).data() + 4, opt->state(c).tensor(entry).data()) << entry;
  }
}

TEST(PackedState, ParametersInOneFlatBufferGiveTheSameBitsAsSeparateOnes) {
  const optreg::Registry& registry = optreg_test::reference_registry();
  for (const std::string name : {"sgd", "adam"}) {
    const optreg::Options o = name == "sgd" ? optreg::Options{{"lr", 0.1}, {"momentum", 0.9}} : optreg::Options{{"lr", 0.1}};
    optreg::Tensor flat({40}), flat_grad({40});
    std::vector<optreg::Parameter> joined, apart;
    for (int i = 0; i < 4; ++i) {
      joined.emplace_back("p" + std::to_string(i), optreg::Tensor::part_of(flat, 10 * static_cast<std::size_t>(i), {10}));
      apart.emplace_back("p" + std::to_string(i), optreg::Tensor({10}));
      joined.back().set_grad(optreg::Tensor::part_of(flat_grad, 10 * static_cast<std::size_t>(i), {10}));
      for (int k = 0; k < 10; ++k) {
        const float v = std::cos(static_cast<float>(10 * i + k));
        joined.back().value()[static_cast<std::size_t>(k)] = v;
        apart.back().value()[static_cast<std::size_t>(k)] = v;
        joined.back().grad()[static_cast<std::size_t>(k)] = v * v;
      }
      apart.back().set_grad(joined.back().grad().clone());
    }
    auto one = registry.create(name, joined, o);
    auto two = registry.create(name, apart, o);
    for (int s = 0; s < 3; ++s) {
      one->step();
      two->step();
    }
    for (std::size_t i = 0; i < joined.size(); ++i) {
      EXPECT_EQ(std::memcmp(joined[i].value().data(), apart[i].value().data(), 10 * sizeof(float)), 0) << name << " " << i;
    }
  }
}
