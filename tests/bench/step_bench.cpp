// step() throughput of every registered optimizer, measured through the registry, against the
// ceiling of its own memory traffic measured in the same run on the same tensors (a kernel that
// reads and writes exactly the arrays the step does, with trivial arithmetic) and, when built
// with libtorch, against torch::optim::Adam, AdamW, SGD, Adagrad and RMSprop on the same
// shapes. Also reports heap allocations inside step() after the first, the time to create an
// optimizer by name, and the time to load every in-tree plugin. See docs/performance.md.
//
//   step_bench [--plugin-path DIR] [--threads 1,2] [--only NAME] [--case LABEL] [--seconds S]
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <optreg/abi.hpp>
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

/// The arrays one step of an optimizer reads and writes for one parameter: the value (read,
/// write), the gradient (read) and every state tensor shaped like the parameter (read, write).
struct Arrays {
  float* value;
  const float* grad;
  std::array<float*, 4> state;
  std::size_t begin;  // the parameter's first element in the flattened order of all of them
  std::size_t size;
};

/// One thread's share of the ceiling kernel for k state arrays (0 to 4): the same loads and
/// stores per element as a step with k state tensors, and trivial arithmetic. The arrays never
/// overlap. Inlined into one function per instruction set (below).
inline __attribute__((always_inline)) void traffic(std::size_t k, float* __restrict p, const float* __restrict g,
                                                   float* __restrict s0, float* __restrict s1, float* __restrict s2,
                                                   float* __restrict s3, std::size_t n) {
  constexpr float c = 1e-7F;
  switch (k) {
    case 0:
      for (std::size_t i = 0; i < n; ++i) p[i] = p[i] + c * g[i];
      break;
    case 1:
      for (std::size_t i = 0; i < n; ++i) {
        const float a = s0[i] + c * g[i];
        s0[i] = a;
        p[i] = p[i] + c * a;
      }
      break;
    case 2:
      for (std::size_t i = 0; i < n; ++i) {
        const float a = s0[i] + c * g[i], b = s1[i] + c * g[i];
        s0[i] = a;
        s1[i] = b;
        p[i] = p[i] + c * (a + b);
      }
      break;
    case 3:
      for (std::size_t i = 0; i < n; ++i) {
        const float a = s0[i] + c * g[i], b = s1[i] + c * g[i], d = s2[i] + c * g[i];
        s0[i] = a;
        s1[i] = b;
        s2[i] = d;
        p[i] = p[i] + c * (a + b + d);
      }
      break;
    default:
      for (std::size_t i = 0; i < n; ++i) {
        const float a = s0[i] + c * g[i], b = s1[i] + c * g[i], d = s2[i] + c * g[i], e = s3[i] + c * g[i];
        s0[i] = a;
        s1[i] = b;
        s2[i] = d;
        s3[i] = e;
        p[i] = p[i] + c * (a + b + d + e);
      }
      break;
  }
}

/// Where the norm pass's sums go, so that the pass is not optimised away.
volatile float g_norms_sink = 0;

/// The norm pass of the ceiling of an optimizer that needs a norm of each whole tensor before it
/// can write any element (LAMB, LARS, Adafactor: abi::kOptimizerWholeTensors): it reads the
/// value and the gradient once, the least any such step reads before its update pass, and
/// returns the sum of their squares (sixteen running sums, so that the loop vectorises).
inline __attribute__((always_inline)) float norms(const float* __restrict p, const float* __restrict g, std::size_t n) {
  float lane[16] = {};
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (std::size_t j = 0; j < 16; ++j) lane[j] += p[i + j] * p[i + j] + g[i + j] * g[i + j];
  }
  for (std::size_t j = 0; i < n; ++i, ++j) lane[j] += p[i] * p[i] + g[i] * g[i];
  float sum = 0;
  for (float x : lane) sum += x;
  return sum;
}

struct TrafficKernel {
  void (*update)(std::size_t, float*, const float*, float*, float*, float*, float*, std::size_t);
  float (*norms)(const float*, const float*, std::size_t);
};

/// The ceiling's two kernels compiled for one instruction set (`attributes` names it).
#define OPTREG_TRAFFIC_KERNELS(suffix, attributes)                                                           \
  attributes void traffic_##suffix(std::size_t k, float* p, const float* g, float* s0, float* s1, float* s2, \
                                   float* s3, std::size_t n) {                                               \
    traffic(k, p, g, s0, s1, s2, s3, n);                                                                     \
  }                                                                                                          \
  attributes float norms_##suffix(const float* p, const float* g, std::size_t n) { return norms(p, g, n); }
OPTREG_TRAFFIC_KERNELS(baseline, __attribute__((noinline)))
OPTREG_TRAFFIC_KERNELS(avx2, __attribute__((noinline, target("arch=x86-64-v3"))))
OPTREG_TRAFFIC_KERNELS(avx512, __attribute__((noinline, target("arch=x86-64-v4"))))
#undef OPTREG_TRAFFIC_KERNELS

/// The ceiling kernel compiled for each instruction set this CPU has: the ceiling is the best
/// of them, what this CPU can do rather than what the optimizers' kernels use.
std::vector<TrafficKernel> traffic_kernels() {
  std::vector<TrafficKernel> out = {{traffic_baseline, norms_baseline}};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back({traffic_avx2, norms_avx2});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    out.push_back({traffic_avx512, norms_avx512});
  }
  return out;
}

/// The arrays of every parameter of `opt` (after its first step, so that its state exists and
/// has been touched) and how many state arrays each has; `k` is the largest count, up to 4.
std::vector<Arrays> arrays_of(const optreg::Optimizer& opt, std::size_t& k) {
  std::vector<Arrays> out;
  std::size_t at = 0;
  k = 0;
  for (const optreg::Parameter& p : opt.parameters()) {
    optreg::Parameter handle = p;  // a handle to the same memory
    Arrays a{handle.value().data(), handle.grad().data(), {}, at, handle.value().numel()};
    const optreg::ParamState& state = opt.state(p);
    std::size_t n = 0;
    for (std::size_t i = 0; i < state.num_tensors() && n < a.state.size(); ++i) {
      optreg::Tensor t = state.tensor(i);
      if (t.numel() == a.size) a.state[n++] = t.data();
    }
    k = std::max(k, n);
    at += a.size;
    out.push_back(a);
  }
  return out;
}

/// Elements per second of the same-traffic kernel over `arrays` (k state arrays each), split
/// across the threads by element ranges as the optimizers' own kernels are; with `norm_pass`, a
/// pass that reads every value and gradient comes first (the sums it returns are kept, so that
/// it is not optimised away).
double ceiling_elements_per_s(const std::vector<Arrays>& arrays, std::size_t k, TrafficKernel kernel, bool norm_pass,
                              double budget) {
  const std::size_t total = arrays.empty() ? 0 : arrays.back().begin + arrays.back().size;
  // Runs `f(array, from, to)` over every piece of every parameter, split across the threads.
  const auto over_pieces = [&](auto f) {
    optreg::parallel_for(total, 1 << 14, [&](std::size_t begin, std::size_t end) {
      // The first parameter that ends after `begin`, then every one up to `end`.
      auto it = std::upper_bound(arrays.begin(), arrays.end(), begin,
                                 [](std::size_t x, const Arrays& a) { return x < a.begin + a.size; });
      for (; it != arrays.end() && it->begin < end; ++it) {
        f(*it, std::max(begin, it->begin) - it->begin, std::min(end, it->begin + it->size) - it->begin);
      }
    });
  };
  std::vector<std::atomic<float>> sums(arrays.size());
  const double t = best_time(budget, [&] {
    if (norm_pass) {
      over_pieces([&](const Arrays& a, std::size_t from, std::size_t to) {
        // Pieces of one parameter on two threads may both store its entry; either sum keeps the pass.
        sums[static_cast<std::size_t>(&a - arrays.data())].store(kernel.norms(a.value + from, a.grad + from, to - from),
                                                                 std::memory_order_relaxed);
      });
    }
    over_pieces([&](const Arrays& a, std::size_t from, std::size_t to) {
      const auto at = [&](std::size_t j) { return j < k ? a.state[j] + from : nullptr; };
      kernel.update(k, a.value + from, a.grad + from, at(0), at(1), at(2), at(3), to - from);
    });
  });
  for (const std::atomic<float>& x : sums) g_norms_sink = x.load(std::memory_order_relaxed);
  return static_cast<double>(total) / t;
}

struct Measured {
  double elements_per_s = 0;
  double gbs = 0;
  double state_bytes = 0;  // state bytes per parameter element (measure_dtype)
  double ceiling_elements_per_s = 0;  // the same-traffic kernel on the same tensors
  double allocations_per_step = 0;
};

/// Parameters of case `c` and `dtype`, with gradients: values 0.5 and gradients 1e-3.
std::vector<optreg::Parameter> params_of(const Case& c, optreg::DType dtype) {
  std::vector<optreg::Parameter> params;
  const auto total = static_cast<std::int64_t>(c.tensors) * c.elements;
  const optreg::Tensor values = optreg::Tensor({c.flat ? total : 0}, 0.5F).to(dtype);
  const optreg::Tensor grads = optreg::Tensor({c.flat ? total : 0}, 1e-3F).to(dtype);
  for (std::size_t i = 0; i < c.tensors; ++i) {
    const std::size_t at = i * static_cast<std::size_t>(c.elements);
    params.emplace_back("p" + std::to_string(i), c.flat ? optreg::Tensor::part_of(values, at, {c.elements})
                                                        : optreg::Tensor({c.elements}, 0.5F).to(dtype));
    params.back().set_grad(c.flat ? optreg::Tensor::part_of(grads, at, {c.elements})
                                  : optreg::Tensor({c.elements}, 1e-3F).to(dtype));
  }
  return params;
}

/// Elements per second of `name` stepping parameters of `dtype` with its state in
/// `state_dtype` (no ceiling: the ceiling kernel is float32), and the bytes of its state per element.
Measured measure_dtype(const optreg::Registry& registry, const std::string& name, const Case& c, optreg::DType dtype,
                       const std::string& state_dtype, double budget) {
  std::vector<optreg::Parameter> params = params_of(c, dtype);
  optreg::Options options = options_for(name);
  options["state_dtype"] = optreg::Value(state_dtype);
  auto opt = registry.create(name, params, options);
  opt->step();
  const double t = best_time(budget, [&] { opt->step(); });
  Measured m;
  m.elements_per_s = static_cast<double>(c.tensors) * static_cast<double>(c.elements) / t;
  const auto n = static_cast<double>(params[0].value().numel());
  double state_bytes = 0;  // per element, block scales of quantized state included
  for (const auto& [entry, s] : opt->state(params[0]).tensors()) {
    state_bytes += s.numel() == params[0].value().numel() ? static_cast<double>(s.nbytes()) / n : 0.0;
  }
  m.state_bytes = state_bytes;
  m.gbs = m.elements_per_s * (3.0 * static_cast<double>(optreg::dtype_size(dtype)) + 2.0 * state_bytes) / 1e9;
  return m;
}

/// An optimizer of matrices only (Muon): its step over one matrix of each shape, as the rate
/// of its Newton-Schulz products (ns_steps (4 r^2 c + 2 r^3) flops for r x c, r <= c, at the
/// default 5 steps), against the rate of the BLAS's sgemm over an r x c by c x r product
/// measured in the same run, from the library the optimizer loaded.
void bench_matrices(const optreg::Registry& registry, const std::string& name, double budget) {
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{256, 256}, {1024, 1024}, {768, 3072}, {3072, 768}};
  std::printf("%-9s %-16s %10s %12s %13s %8s\n", "optim", "matrix", "step ms", "NS GFLOP/s", "sgemm GFLOP/s", "of sgemm");
  for (const auto& [m, n] : shapes) {
    optreg::Tensor value({m, n});
    optreg::Tensor grad({m, n});
    for (std::size_t i = 0; i < value.numel(); ++i) {
      value[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
      grad[i] = static_cast<float>(std::cos(0.11 * static_cast<double>(i)));
    }
    optreg::Parameter p("w", value);
    p.set_grad(grad);
    auto opt = registry.create(name, {p}, options_for(name));
    opt->step();  // loads the BLAS
    const double t = best_time(budget, [&] { opt->step(); });
    void* library = ::dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD);
    void* symbol = library != nullptr ? ::dlsym(library, "cblas_sgemm") : nullptr;
    if (symbol == nullptr) {
      std::printf("%-9s the optimizer loaded no libopenblas.so.0: no sgemm figure\n", name.c_str());
      return;
    }
    Sgemm sgemm = nullptr;
    std::memcpy(&sgemm, &symbol, sizeof symbol);
    const auto r = static_cast<int>(std::min(m, n));
    const auto c = static_cast<int>(std::max(m, n));
    std::vector<float> x(static_cast<std::size_t>(r) * static_cast<std::size_t>(c), 0.5F);
    std::vector<float> out(static_cast<std::size_t>(r) * static_cast<std::size_t>(r));
    const double g = best_time(budget, [&] {
      sgemm(101, 111, 112, r, r, c, 1.0F, x.data(), c, x.data(), c, 0.0F, out.data(), r);
    });
    const double rd = r, cd = c;
    const double ns_flops = 5 * (4 * rd * rd * cd + 2 * rd * rd * rd);
    const double gemm_rate = 2 * rd * rd * cd / g / 1e9;
    const std::string label = std::to_string(m) + " x " + std::to_string(n);
    std::printf("%-9s %-16s %10.2f %12.1f %13.1f %7.0f%%\n", name.c_str(), label.c_str(), t * 1e3, ns_flops / t / 1e9,
                gemm_rate, 100.0 * (ns_flops / t / 1e9) / gemm_rate);
    std::fflush(stdout);
  }
}

Measured measure_optreg(const optreg::Registry& registry, const optreg::OptimizerDescriptor& d, const Case& c,
                        double budget) {
  const std::string& name = d.name;
  const bool norm_pass = (d.flags & optreg::abi::kOptimizerWholeTensors) != 0;
  std::vector<optreg::Parameter> params = params_of(c, optreg::DType::Float32);
  auto opt = registry.create(name, params, options_for(name));
  opt->step();  // the first step may allocate (lazily created state)
  const long before = g_allocations.load();
  opt->step();
  const long allocations = g_allocations.load() - before;
  std::size_t k = 0;
  const std::vector<Arrays> arrays = arrays_of(*opt, k);
  static const std::vector<TrafficKernel> kernels = traffic_kernels();
  // The step and the ceiling take turns over three rounds, so that a change in the machine's
  // bandwidth during the run affects both alike; each keeps its best.
  double t = 1e30;
  Measured m;
  for (int round = 0; round < 3; ++round) {
    t = std::min(t, best_time(budget / 3, [&] { opt->step(); }));
    for (TrafficKernel kernel : kernels) {
      m.ceiling_elements_per_s =
          std::max(m.ceiling_elements_per_s, ceiling_elements_per_s(arrays, k, kernel, norm_pass, budget / 3));
    }
  }
  const double elements = static_cast<double>(c.tensors) * static_cast<double>(c.elements);
  m.elements_per_s = elements / t;
  // Bytes of one pass per element: the value (read, write), the gradient (read), and each
  // state array (read, write), and the norm pass's value and gradient; optimizers that read some
  // arrays more often move more.
  m.gbs = m.elements_per_s * 4.0 * ((norm_pass ? 5.0 : 3.0) + 2.0 * static_cast<double>(k)) / 1e9;
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
  optreg::DType dtype = optreg::DType::Float32;
  std::string state_dtype = "float32";
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
    } else if (a == "--dtype" && i + 1 < argc) {
      dtype = optreg::dtype_from_name(argv[++i]);
    } else if (a == "--state-dtype" && i + 1 < argc) {
      state_dtype = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: step_bench [--plugin-path DIR] [--threads 1,2] [--only NAME] [--case LABEL] [--seconds S] "
                   "[--dtype float64|bfloat16|float16] [--state-dtype bfloat16|int8]\n");
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

  std::printf(
      "ceiling: per optimizer, case and thread count, a kernel that reads the value, the gradient and every state "
      "tensor shaped like the parameter and writes the value and those state tensors, with trivial arithmetic, over "
      "the optimizer's own tensors, best of several repeats in this run; for an optimizer that needs a norm of each "
      "whole tensor first (whole_tensors: lamb, lars, adafactor), a pass that reads every value and gradient "
      "before it\n");
#ifdef OPTREG_BENCH_WITH_TORCH
  std::printf(
      "peer: libtorch %s (torch::optim::Adam, AdamW, SGD with momentum 0.9, Adagrad, and RMSprop with momentum 0.9, "
      "centered)\n",
      TORCH_VERSION);
#else
  std::printf("peer: none (built without libtorch)\n");
#endif
  if (dtype != optreg::DType::Float32 || state_dtype != "float32") {
    // Each optimizer that declares the dtypes, against its own float32 step in the same run.
    std::printf(
        "\nparameters and gradients of %s, state in %s; the float32 step of the same optimizer measured alongside\n",
        optreg::dtype_name(dtype), state_dtype.c_str());
    std::printf("%-9s %-16s %3s %12s %8s %7s %12s %7s %8s\n", "optim", "case", "thr", "Melem/s", "GB/s", "state B",
                "f32 Melem/s", "f32 B", "speedup");
    const std::uint32_t state_bit = state_dtype == "bfloat16" ? optreg::abi::kStateBFloat16
                                    : state_dtype == "int8"   ? optreg::abi::kStateInt8
                                                              : 0;
    for (const auto& d : registry.list()) {
      if ((!only.empty() && d.name != only) || (d.param_dtypes & optreg::dtype_bit(dtype)) == 0) continue;
      if ((d.state_dtypes & state_bit) != state_bit) continue;
      if ((d.flags & (optreg::abi::kOptimizerNeedsClosure | optreg::abi::kOptimizerMatricesOnly |
                      optreg::abi::kOptimizerWrapper)) != 0) {
        continue;
      }
      for (const auto& c : kCases) {
        if (!only_case.empty() && c.label != only_case) continue;
        for (std::size_t t : threads) {
          optreg::set_num_threads(t);
          Measured low, single;
          for (int round = 0; round < 3; ++round) {  // interleaved, each keeping its best
            const Measured a = measure_dtype(registry, d.name, c, dtype, state_dtype, budget / 3);
            const Measured b = measure_dtype(registry, d.name, c, optreg::DType::Float32, "float32", budget / 3);
            if (a.elements_per_s > low.elements_per_s) low = a;
            if (b.elements_per_s > single.elements_per_s) single = b;
          }
          std::printf("%-9s %-16s %3zu %12.1f %8.1f %7.2f %12.1f %7.2f %7.2fx\n", d.name.c_str(), c.label.c_str(), t,
                      low.elements_per_s / 1e6, low.gbs, low.state_bytes, single.elements_per_s / 1e6,
                      single.state_bytes, low.elements_per_s / single.elements_per_s);
          std::fflush(stdout);
        }
      }
    }
    return 0;
  }
  std::printf("\n%-9s %-16s %3s %12s %8s %12s %8s %13s %8s %11s\n", "optim", "case", "thr", "Melem/s", "GB/s",
              "ceil Melem/s", "of ceil", "torch Melem/s", "ratio", "alloc/step");
  for (const auto& d : registry.list()) {
    if (!only.empty() && d.name != only) continue;
    if ((d.flags & optreg::abi::kOptimizerMatricesOnly) != 0) {
      bench_matrices(registry, d.name, budget);
      continue;
    }
    if ((d.flags & optreg::abi::kOptimizerWrapper) != 0) {
      // It has no step of its own: it runs after an inner optimizer's.
      std::printf("%-9s is a wrapper: it has no step of its own, only one after an inner optimizer's; not measured\n",
                  d.name.c_str());
      continue;
    }
    if ((d.flags & optreg::abi::kOptimizerNeedsClosure) != 0) {
      // Its step is a series of loss evaluations, not a pass over the elements.
      std::printf("%-9s steps with a closure: its time is its loss evaluations (optreg train reports steps/s)\n",
                  d.name.c_str());
      continue;
    }
    for (const auto& c : kCases) {
      if (!only_case.empty() && c.label != only_case) continue;
      for (std::size_t t : threads) {
        optreg::set_num_threads(t);
        const Measured m = measure_optreg(registry, d, c, budget);
        double torch_eps = 0;
#ifdef OPTREG_BENCH_WITH_TORCH
        torch::set_num_threads(static_cast<int>(t));
        torch_eps = measure_torch(d.name, c, budget);
#endif
        std::printf("%-9s %-16s %3zu %12.1f %8.1f %12.1f %7.0f%% ", d.name.c_str(), c.label.c_str(), t,
                    m.elements_per_s / 1e6, m.gbs, m.ceiling_elements_per_s / 1e6,
                    100.0 * m.elements_per_s / m.ceiling_elements_per_s);
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
