// Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"; as
// torch.optim.Muon of PyTorch 2.9): momentum whose update, a matrix, is replaced by the nearest
// semi-orthogonal matrix, approximated by Newton-Schulz iterations with the published quintic
// coefficients. For a parameter of shape [m, n] with gradient g:
//   buf = lerp(buf, g, 1 - momentum);  u = nesterov ? lerp(g, buf, momentum) : buf
//   X = u / max(|u|_F, eps), transposed when m > n
//   ns_steps times: A = X X^T;  B = b A + c A A;  X = a X + B X
//   p = p (1 - lr weight_decay) - lr_adjusted X^T-back,  lr_adjusted = lr max(1, m/n)^0.5
//   (adjust_lr: original), or 0.2 lr sqrt(max(m, n)) (match_rms_adamw)
// The products go through the BLAS (CBLAS sgemm/dgemm of OpenBLAS), loaded at the first step
// with one thread unless OPENBLAS_NUM_THREADS says otherwise, so that a product's bits do not
// depend on a thread count. Matrices only: the core refuses other shapes (abi flag).
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;
using sdk::lerp;
using optreg::DType;
using optreg::Tensor;

struct Hyper {
  double lr, weight_decay, momentum;
  bool nesterov;
  std::array<double, 3> ns_coefficients;
  double eps;
  std::int64_t ns_steps;
  std::string adjust_lr;
};

constexpr double kCoefficients[] = {3.4445, -4.775, 2.0315};
constexpr const char* kAdjustments[] = {"original", "match_rms_adamw", nullptr};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3),
    sdk::weight_decay(&Hyper::weight_decay, 0.1, "decoupled weight decay: p scaled by 1 - lr * weight_decay"),
    sdk::option(&Hyper::momentum, sdk::float_option("momentum", 0.95, sdk::closed_open(0.0, 1.0), "momentum factor")),
    sdk::option(&Hyper::nesterov, sdk::bool_option("nesterov", true, "orthogonalize the Nesterov look-ahead")),
    sdk::option(&Hyper::ns_coefficients,
                sdk::float_list_option("ns_coefficients", kCoefficients, sdk::any(),
                                       "(a, b, c) of each Newton-Schulz iteration X = a X + (b A + c A^2) X")),
    sdk::option(&Hyper::eps, sdk::float_option("eps", 1e-7, sdk::greater_than(0.0),
                                               "least Frobenius norm the update is divided by")),
    sdk::option(&Hyper::ns_steps, sdk::int_option("ns_steps", 5, sdk::closed(0.0, 100.0), "Newton-Schulz iterations")),
    sdk::option(&Hyper::adjust_lr, sdk::string_option("adjust_lr", "original", kAdjustments,
                                                      "lr scale by shape: max(1, m/n)^0.5 (original) or "
                                                      "0.2 sqrt(max(m, n)) (match_rms_adamw)")));

constexpr sdk::State kState[] = {
    sdk::state_tensor("momentum_buffer", sdk::not_nan(), "momentum of the gradients"),
};
constexpr auto kBuffer = sdk::tensor_entry(kState, "momentum_buffer");

// ------------------------------------------------------------------ BLAS, loaded on first use

enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };  // CBLAS_ORDER, CBLAS_TRANSPOSE
template <typename T>
using Gemm = void (*)(int, int, int, int, int, int, T, const T*, int, const T*, int, T, T*, int);

struct Blas {
  Gemm<float> sgemm = nullptr;
  Gemm<double> dgemm = nullptr;
  void gemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
            float beta, float* c, int ldc) const {
    sgemm(kRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void gemm(int ta, int tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
            double beta, double* c, int ldc) const {
    dgemm(kRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
};

/// The BLAS, loaded at the first call (never unloaded: its threads live until the process
/// ends); throws optreg::Error naming the library when it cannot.
const Blas& blas() {
  static std::mutex mutex;
  static Blas loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded.sgemm != nullptr) return loaded;
  // One thread unless asked otherwise; OpenBLAS reads the variable only while it loads.
  const bool set_threads = std::getenv("OPENBLAS_NUM_THREADS") == nullptr;
  if (set_threads) ::setenv("OPENBLAS_NUM_THREADS", "1", 0);
  void* library = ::dlopen(OPTREG_MUON_BLAS, RTLD_NOW | RTLD_LOCAL);
  const char* failure = library == nullptr ? ::dlerror() : nullptr;
  if (set_threads) ::unsetenv("OPENBLAS_NUM_THREADS");
  const std::string what = std::string("optimizer 'muon' needs the BLAS library ") + OPTREG_MUON_BLAS;
  if (library == nullptr) throw optreg::Error(what + ", which cannot be loaded: " + (failure ? failure : "unknown error") + " (Debian package libopenblas0)");
  void* s = ::dlsym(library, "cblas_sgemm");
  void* d = ::dlsym(library, "cblas_dgemm");
  if (s == nullptr || d == nullptr) throw optreg::Error(what + ", which has no cblas_sgemm or cblas_dgemm");
  Blas b;
  std::memcpy(&b.sgemm, &s, sizeof s);
  std::memcpy(&b.dgemm, &d, sizeof d);
  loaded = b;
  return loaded;
}

// ------------------------------------------------------------------ the update

/// Scratch matrices, kept from step to step.
template <typename T>
struct Work {
  std::vector<T> x, y, a, b;
};

/// One parameter's update, in its element type T (float or double).
template <typename T>
void update(const Hyper& h, Tensor& param, const Tensor& grad, Tensor& buffer, Work<T>& w) {
  const auto m = static_cast<std::size_t>(param.shape()[0]);
  const auto n = static_cast<std::size_t>(param.shape()[1]);
  const std::size_t count = m * n;
  T* p = param.data_as<T>();
  const T* g = grad.data_as<T>();
  T* buf = buffer.data_as<T>();
  const T beta = static_cast<T>(h.momentum);
  const T one_minus_beta = static_cast<T>(1.0 - h.momentum);

  // X: the update, transposed into r x c with r <= c.
  const bool transpose = m > n;
  const std::size_t r = transpose ? n : m;
  const std::size_t c = transpose ? m : n;
  w.x.resize(count);
  w.y.resize(count);
  w.a.resize(r * r);
  w.b.resize(r * r);
  double norm = 0;
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t k = i * n + j;
      buf[k] = lerp(buf[k], g[k], one_minus_beta);
      const T u = h.nesterov ? lerp(g[k], buf[k], beta) : buf[k];
      w.x[transpose ? j * m + i : k] = u;
      norm += static_cast<double>(u) * static_cast<double>(u);
    }
  }
  const T scale = static_cast<T>(1.0 / std::max(std::sqrt(norm), h.eps));
  for (T& v : w.x) v *= scale;

  const Blas& b = blas();
  const T ca = static_cast<T>(h.ns_coefficients[0]);
  const T cb = static_cast<T>(h.ns_coefficients[1]);
  const T cc = static_cast<T>(h.ns_coefficients[2]);
  const int ri = static_cast<int>(r);
  const int ci = static_cast<int>(c);
  for (std::int64_t step = 0; step < h.ns_steps; ++step) {
    b.gemm(kNoTrans, kTrans, ri, ri, ci, T(1), w.x.data(), ci, w.x.data(), ci, T(0), w.a.data(), ri);  // A = X X^T
    w.b = w.a;
    b.gemm(kNoTrans, kNoTrans, ri, ri, ri, cc, w.a.data(), ri, w.a.data(), ri, cb, w.b.data(), ri);     // B = b A + c A A
    w.y = w.x;
    b.gemm(kNoTrans, kNoTrans, ri, ci, ri, T(1), w.b.data(), ri, w.x.data(), ci, ca, w.y.data(), ci);   // Y = a X + B X
    std::swap(w.x, w.y);
  }

  const double rows = static_cast<double>(m);
  const double cols = static_cast<double>(n);
  const double adjusted = h.adjust_lr == "original" ? h.lr * std::sqrt(std::max(1.0, rows / cols))
                                                    : 0.2 * h.lr * std::sqrt(std::max(rows, cols));
  const T decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
  const T step_size = static_cast<T>(adjusted);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t k = i * n + j;
      const T o = w.x[transpose ? j * m + i : k];
      p[k] = p[k] * decay - step_size * o;
    }
  }
}

class Muon final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = optreg::dtype_bit(DType::Float32) | optreg::dtype_bit(DType::Float64);
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerMatricesOnly;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    (void)blas();  // a missing library fails the step before any parameter changes
    for (const Slot& slot : slots) {
      Tensor& param = slot.param->value();
      Tensor& buffer = sdk::get(*slot.state, kBuffer);
      if (param.dtype() == DType::Float64) {
        update<double>(h, param, slot.param->grad(), buffer, work64_);
      } else {
        update<float>(h, param, slot.param->grad(), buffer, work32_);
      }
    }
  }

 private:
  Work<float> work32_;
  Work<double> work64_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Muon, "muon", "1.0.0",
                          "Muon: momentum orthogonalized by Newton-Schulz iterations, for matrices (2-D parameters), "
                          "with decoupled weight decay and Nesterov; matrix products through the BLAS",
                          kHyper.schema, kState)
