// The shared thread pool, and kernels that give the same bits with any thread count.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/parallel.hpp>
#include <optreg/registry.hpp>

namespace {

/// Restores the default thread count when a test ends.
struct ThreadCount {
  explicit ThreadCount(std::size_t n) { optreg::set_num_threads(n); }
  ~ThreadCount() { optreg::set_num_threads(0); }
};

}  // namespace

TEST(ParallelFor, CoversEveryIndexExactlyOnce) {
  for (std::size_t threads : {1, 2, 3, 7}) {
    ThreadCount t(threads);
    for (std::size_t n : {0, 1, 5, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(n);
      optreg::parallel_for(n, 16, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) ++hits[i];
      });
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " index " << i;
    }
  }
}

TEST(ParallelFor, RethrowsAnExceptionAfterEveryRangeFinished) {
  ThreadCount t(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(optreg::parallel_for(1 << 20, 1, [&](std::size_t b, std::size_t) {
                 ++ran;
                 if (b == 0) throw std::runtime_error("range 0 failed");
               }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 2);
}

TEST(ParallelFor, NestedAndConcurrentCallsRunSeriallyInsteadOfWaiting) {
  ThreadCount t(2);
  std::atomic<long> sum{0};
  optreg::parallel_for(4, 1, [&](std::size_t b, std::size_t e) {
    optreg::parallel_for(1000, 1, [&](std::size_t bb, std::size_t ee) { sum += static_cast<long>(ee - bb); });
    sum += static_cast<long>(e - b);
  });
  EXPECT_EQ(sum.load(), 2 * 1000 + 4);
}

TEST(ParallelFor, AForkedChildRunsSerially) {
  ThreadCount t(2);
  optreg::parallel_for(1000, 1, [](std::size_t, std::size_t) {});  // the workers exist
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    long n = 0;
    optreg::parallel_for(1000, 1, [&](std::size_t b, std::size_t e) { n += static_cast<long>(e - b); });
    _exit(n == 1000 && optreg::num_threads() == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

namespace {

/// Parameters of awkward sizes (many small, one large) and their state after a few steps.
std::vector<std::vector<float>> run_steps(const std::string& name, const optreg::Options& options,
                                          std::size_t threads) {
  ThreadCount t(threads);
  optreg::Registry registry;
  registry.load_directory(OPTREG_TEST_PLUGIN_DIR);
  std::vector<optreg::Parameter> params;
  for (int i = 0; i < 300; ++i) params.emplace_back("small" + std::to_string(i), optreg::Tensor({1 + (i * 37) % 101}));
  params.emplace_back("large", optreg::Tensor({300007}));
  params.emplace_back("matrix", optreg::Tensor({3, 211, 257}));  // for optimizers that treat rows and columns apart
  for (std::size_t k = 0; k < params.size(); ++k) {
    optreg::Tensor& v = params[k].value();
    for (std::size_t i = 0; i < v.numel(); ++i) v[i] = std::sin(0.001F * static_cast<float>(i + 13 * k));
  }
  auto opt = registry.create(name, params, options);
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
  optreg::Registry registry;
  registry.load_file(OPTREG_TEST_ADAM_PLUGIN);
  optreg::Parameter a("a", optreg::Tensor({3})), b("b", optreg::Tensor({2, 2})), c("c", optreg::Tensor({5}));
  auto opt = registry.create("adam", {a, b, c}, {{"amsgrad", true}});
  for (const char* entry : {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}) {
    EXPECT_EQ(opt->state(a).tensor(entry).data() + 3, opt->state(b).tensor(entry).data()) << entry;
    EXPECT_EQ(opt->state(b).tensor(entry).data() + 4, opt->state(c).tensor(entry).data()) << entry;
  }
}

TEST(PackedState, ParametersInOneFlatBufferGiveTheSameBitsAsSeparateOnes) {
  optreg::Registry registry;
  registry.load_file(OPTREG_TEST_SGD_PLUGIN);
  registry.load_file(OPTREG_TEST_ADAM_PLUGIN);
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
