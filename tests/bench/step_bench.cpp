// step() throughput of every registered optimizer, measured through the registry, against the
// in-place memory-bandwidth limit measured in the same run and, when built with libtorch,
// against torch::optim::Adam, AdamW, SGD, Adagrad and RMSprop on the same shapes. Also reports
// heap allocations inside step() after the first, the time to create an optimizer by name, and
// the time to load every in-tree plugin. See docs/performance.md.
//
//   step_bench [--plugin-path DIR] [--threads 1,2] [--only NAME] [--case LABEL] [--seconds S]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <optreg/parallel.hpp>
#include <optreg/registry.hpp>

#ifdef OPTREG_BENCH_WITH_TORCH
#include <torch/torch.h>
#endif

// Every allocation of the process (plugins included) is counted, to show that step() allocates
// nothing once it has run once. (GCC cannot see that the replaced operator new pairs with free.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<long> g_allocations{0};
}
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

/// Calls `f` repeatedly for about `budget` seconds (at least 3 times) after one warm-up call,
/// and returns the best time of one call.
template <typename F>
double best_time(double budget, F&& f) {
  f();
  double best = 1e30, spent = 0;
  for (int i = 0; i < 3 || spent < budget; ++i) {
    const auto t0 = Clock::now();
    f();
    const double t = seconds(t0, Clock::now());
    best = std::min(best, t);
    spent += t;
    if (i > 1000) break;
  }
  return best;
}

struct Case {
  std::string label;
  std::size_t tensors;
  std::int64_t elements;  // per tensor
  /// Parameters and gradients as parts of one flat buffer each (as frameworks that flatten
  /// their parameters hold them), rather than one allocation per tensor.
  bool flat = false;
};

const std::vector<Case> kCases = {
    {"1 x 1e4", 1, 10'000},
    {"1 x 1e6", 1, 1'000'000},
    {"1 x 1e7", 1, 10'000'000},
    {"1 x 3e7", 1, 30'000'000},
    {"1000 x 1e4", 1000, 10'000},
    {"1000 x 1e4 flat", 1000, 10'000, true},
    {"10000 x 100", 10000, 100},
    {"10000 x 100 flat", 10000, 100, true},
};

/// Options that make each known optimizer do its full work (momentum for SGD; momentum and the
/// centered variance for RMSprop).
optreg::Options options_for(const std::string& name) {
  if (name == "sgd") return {{"lr", 1e-3}, {"momentum", 0.9}};
  if (name == "rmsprop") return {{"momentum", 0.9}, {"centered", true}};
  if (name == "lamb") return {{"weight_decay", 0.01}};  // the trust ratio: two passes
  return {};
}

/// Bytes read and written per element by a step: value (read, write), gradient (read), and
/// each state tensor (read, write), as one pass moves them (optimizers that take per-tensor
/// norms read some arrays twice, which this does not count).
double bytes_per_element(const optreg::Optimizer& opt) {
  std::size_t tensors = 0;
  const auto params = opt.parameters();
  if (!params.empty()) tensors = opt.state(params.front()).num_tensors();
  return 4.0 * (3.0 + 2.0 * static_cast<double>(tensors));
}

/// One thread's share of the limit loop, compiled on its own so that nothing aliases it.
__attribute__((noinline)) void axpy_inplace(float* __restrict a, const float* __restrict b, float s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] += s * b[i];
}

/// The in-place read-modify-write limit: a[i] += s * b[i] over arrays far larger than the caches,
/// each thread on its own contiguous part (as the optimizers' kernels split their work).
double inplace_limit_gbs(double budget) {
  const std::size_t n = std::size_t{64} << 20;  // 256 MiB per array
  std::vector<float> a(n), b(n);
  optreg::parallel_for(n, 1 << 16, [&](std::size_t begin, std::size_t end) {  // first touch by the same threads
    std::fill(a.begin() + static_cast<std::ptrdiff_t>(begin), a.begin() + static_cast<std::ptrdiff_t>(end), 1.0F);
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(begin), b.begin() + static_cast<std::ptrdiff_t>(end), 0.5F);
  });
  const double t = best_time(budget, [&] {
    optreg::parallel_for(n, 1 << 16, [&](std::size_t begin, std::size_t end) {
      axpy_inplace(a.data() + begin, b.data() + begin, 1e-7F, end - begin);
    });
  });
  return 12.0 * static_cast<double>(n) / t / 1e9;
}

struct Measured {
  double elements_per_s = 0;
  double gbs = 0;
  double allocations_per_step = 0;
};

Measured measure_optreg(const optreg::Registry& registry, const std::string& name, const Case& c, double budget) {
  std::vector<optreg::Parameter> params;
  const auto total = static_cast<std::int64_t>(c.tensors) * c.elements;
  const optreg::Tensor values({c.flat ? total : 0}, 0.5F), grads({c.flat ? total : 0}, 1e-3F);
  for (std::size_t i = 0; i < c.tensors; ++i) {
    const std::size_t at = i * static_cast<std::size_t>(c.elements);
    params.emplace_back("p" + std::to_string(i),
                        c.flat ? optreg::Tensor::part_of(values, at, {c.elements}) : optreg::Tensor({c.elements}, 0.5F));
    params.back().set_grad(c.flat ? optreg::Tensor::part_of(grads, at, {c.elements})
                                  : optreg::Tensor({c.elements}, 1e-3F));
  }
  auto opt = registry.create(name, params, options_for(name));
  opt->step();  // the first step may allocate (lazily created state)
  const long before = g_allocations.load();
  opt->step();
  const long allocations = g_allocations.load() - before;
  const double t = best_time(budget, [&] { opt->step(); });
  Measured m;
  const double elements = static_cast<double>(c.tensors) * static_cast<double>(c.elements);
  m.elements_per_s = elements / t;
  m.gbs = m.elements_per_s * bytes_per_element(*opt) / 1e9;
  m.allocations_per_step = static_cast<double>(allocations);
  return m;
}

#ifdef OPTREG_BENCH_WITH_TORCH
double measure_torch(const std::string& name, const Case& c, double budget) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (std::size_t i = 0; i < c.tensors; ++i) {
    auto p = torch::full({c.elements}, 0.5F);
    p.mutable_grad() = torch::full({c.elements}, 1e-3F);
    params.push_back(p);
  }
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (name == "adam") {
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
  } else if (name == "adamw") {
    opt = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-3));
  } else if (name == "sgd") {
    opt = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(1e-3).momentum(0.9));
  } else if (name == "adagrad") {
    opt = std::make_unique<torch::optim::Adagrad>(params, torch::optim::AdagradOptions(1e-2));
  } else if (name == "rmsprop") {
    opt = std::make_unique<torch::optim::RMSprop>(params,
                                                  torch::optim::RMSpropOptions(1e-2).momentum(0.9).centered(true));
  } else {
    return 0;
  }
  const double t = best_time(budget, [&] { opt->step(); });
  return static_cast<double>(c.tensors) * static_cast<double>(c.elements) / t;
}
#endif

std::vector<std::size_t> parse_list(const std::string& s) {
  std::vector<std::size_t> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(std::stoul(s.substr(start, comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plugin_dir = optreg::Registry::installed_plugin_dir();
  std::vector<std::size_t> threads = {1, 2};
  std::string only;
  std::string only_case;
  double budget = 0.3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plugin-path" && i + 1 < argc) {
      plugin_dir = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      threads = parse_list(argv[++i]);
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--case" && i + 1 < argc) {
      only_case = argv[++i];
    } else if (a == "--seconds" && i + 1 < argc) {
      budget = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: step_bench [--plugin-path DIR] [--threads 1,2] [--only NAME] [--case LABEL] [--seconds S]\n");
      return 2;
    }
  }

  // Loading every in-tree plugin: each round is a fresh registry, so every library is really
  // opened again (plugins are built to unload).
  std::vector<double> loads;
  std::size_t loaded = 0;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    optreg::Registry r;
    r.load_directory(plugin_dir);
    loads.push_back(seconds(t0, Clock::now()));
    loaded = r.list().size();
  }
  std::sort(loads.begin(), loads.end());

  optreg::Registry registry;
  const auto refused = registry.load_directory(plugin_dir);
  for (const auto& r : refused) std::fprintf(stderr, "refused %s: %s\n", r.path.c_str(), r.reason.c_str());

  // Creating an optimizer by name over one small parameter.
  std::vector<double> creates;
  {
    optreg::Parameter p("w", optreg::Tensor({64}));
    for (int i = 0; i < 2000; ++i) {
      const auto t0 = Clock::now();
      auto opt = registry.create("adam", {p});
      creates.push_back(seconds(t0, Clock::now()));
    }
    std::sort(creates.begin(), creates.end());
  }

  std::printf("optreg step benchmark: %u hardware threads; plugins from %s\n", std::thread::hardware_concurrency(),
              plugin_dir.c_str());
  std::printf("loading %zu in-tree optimizers: median %.2f ms (first %.2f ms)\n", loaded, 1e3 * loads[loads.size() / 2],
              1e3 * loads.back());
  std::printf("creating 'adam' by name over one parameter: median %.1f us, 99th percentile %.1f us\n",
              1e6 * creates[creates.size() / 2], 1e6 * creates[creates.size() * 99 / 100]);

  std::map<std::size_t, double> limit;
  for (std::size_t t : threads) {
    optreg::set_num_threads(t);
    limit[t] = inplace_limit_gbs(budget);
    std::printf("in-place limit a[i] += s*b[i] (12 bytes/element), %zu thread%s: %.1f GB/s\n", t, t == 1 ? "" : "s",
                limit[t]);
  }
#ifdef OPTREG_BENCH_WITH_TORCH
  std::printf(
      "peer: libtorch %s (torch::optim::Adam, AdamW, SGD with momentum 0.9, Adagrad, and RMSprop with momentum 0.9, "
      "centered)\n",
      TORCH_VERSION);
#else
  std::printf("peer: none (built without libtorch)\n");
#endif
  std::printf("\n%-9s %-16s %3s %12s %8s %9s %13s %8s %11s\n", "optim", "case", "thr", "Melem/s", "GB/s", "of limit",
              "torch Melem/s", "ratio", "alloc/step");
  for (const auto& d : registry.list()) {
    if (!only.empty() && d.name != only) continue;
    for (const auto& c : kCases) {
      if (!only_case.empty() && c.label != only_case) continue;
      for (std::size_t t : threads) {
        optreg::set_num_threads(t);
        const Measured m = measure_optreg(registry, d.name, c, budget);
        double torch_eps = 0;
#ifdef OPTREG_BENCH_WITH_TORCH
        torch::set_num_threads(static_cast<int>(t));
        torch_eps = measure_torch(d.name, c, budget);
#endif
        std::printf("%-9s %-16s %3zu %12.1f %8.1f %8.0f%% ", d.name.c_str(), c.label.c_str(), t, m.elements_per_s / 1e6,
                    m.gbs, 100.0 * m.gbs / limit[t]);
        if (torch_eps > 0) {
          std::printf("%13.1f %7.1fx", torch_eps / 1e6, m.elements_per_s / torch_eps);
        } else {
          std::printf("%13s %8s", "-", "-");
        }
        std::printf(" %11.0f\n", m.allocations_per_step);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
