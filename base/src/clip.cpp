// Gradient clipping by global norm and by value (PyTorch 1.13 semantics), for gradients of every dtype.
#include <optreg/clip.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <string>

#include <optreg/error.hpp>
#include <optreg/value.hpp>

#include "parameter_checks.hpp"

namespace optreg {

namespace {

/// Checks every gradient's shape and dtype against its value's before anything is clipped;
/// `fn` names the function in messages.
void check_grads(const std::vector<Parameter>& params, const char* fn) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = params[i];
    if (p.has_grad() && !detail::grad_fits(p.value(), p.grad())) {
      throw UsageError(std::string(fn) + ": parameter " + quoted_name(p.name()) + " (position " + std::to_string(i) +
                       "): " + detail::grad_misfit_reason(p));
    }
  }
}


/// The p-norm of `n` elements, accumulated in double.
template <typename T>
double norm_of(const T* x, std::size_t n, double p) {
  if (std::isinf(p)) {
    double m = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double a = std::fabs(to_double(x[i]));
      if (std::isnan(a)) return a;  // nan wins wherever it is, as in PyTorch's max
      if (a > m) m = a;
    }
    return m;
  }
  double sum = 0;
  if (p == 1.0) {
    for (std::size_t i = 0; i < n; ++i) sum += std::fabs(to_double(x[i]));
    return sum;
  }
  if (p == 2.0) {
    for (std::size_t i = 0; i < n; ++i) sum += to_double(x[i]) * to_double(x[i]);
    return std::sqrt(sum);
  }
  for (std::size_t i = 0; i < n; ++i) sum += std::pow(std::fabs(to_double(x[i])), p);
  return std::pow(sum, 1.0 / p);
}

/// The norm of a gradient, rounded to its dtype's arithmetic: float32 for every dtype but
/// float64, whose norm stays double.
double grad_norm(const Tensor& g, double p) {
  return visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const double norm = norm_of(g.data_as<T>(), g.numel(), p);
    return std::is_same_v<T, double> ? norm : static_cast<double>(static_cast<float>(norm));
  });
}

/// Multiplies every element of `g` by `coef` (in float32 arithmetic, or double for float64).
void scale(Tensor& g, double coef) {
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* x = g.data_as<T>();
    const std::size_t n = g.numel();
    if constexpr (std::is_same_v<T, double>) {
      for (std::size_t i = 0; i < n; ++i) x[i] = x[i] * coef;
    } else {
      const auto c = static_cast<float>(coef);
      for (std::size_t i = 0; i < n; ++i) x[i] = from_float<T>(to_float(x[i]) * c);
    }
  });
}

/// `v` stored as T (a half type rounds to nearest).
template <typename T, typename A>
T store(A v) noexcept {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return static_cast<T>(v);
  } else {
    return from_float<T>(v);
  }
}

/// Clamps every element of `g` to [-hi, hi] (hi rounded to float32, or double for float64).
void clamp(Tensor& g, double hi) {
  visit_dtype(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* x = g.data_as<T>();
    const auto top = static_cast<A>(hi);
    const A bottom = -top;
    for (std::size_t i = 0, n = g.numel(); i < n; ++i) {
      const A v = static_cast<A>(to_double(x[i]));
      if (v < bottom) {
        x[i] = store<T>(bottom);
      } else if (v > top) {
        x[i] = store<T>(top);
      }
    }
  });
}

}  // namespace

double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  if (!(max_norm >= 0)) throw UsageError("clip_grad_norm: max_norm = " + Value(max_norm).to_string() + " must be a non-negative number");
  if (!(norm_type > 0)) {
    throw UsageError("clip_grad_norm: norm_type = " + Value(norm_type).to_string() + " must be positive (or inf)");
  }
  check_grads(params, "clip_grad_norm");
  std::vector<Parameter> with_grad;
  std::vector<double> norms;
  bool all_double = true;
  for (const Parameter& p : params) {
    if (!p.has_grad()) continue;
    with_grad.push_back(p);
    norms.push_back(grad_norm(p.grad(), norm_type));
    all_double = all_double && p.grad().dtype() == DType::Float64;
  }
  if (with_grad.empty()) return 0.0;
  double total = norm_of(norms.data(), norms.size(), norm_type);
  if (!all_double) total = static_cast<float>(total);
  if (!std::isfinite(total) && error_if_nonfinite) {
    std::string who;
    for (std::size_t i = 0; i < norms.size() && who.empty(); ++i) {
      if (!std::isfinite(norms[i])) who = "; the gradient of parameter '" + with_grad[i].name() + "' is not finite";
    }
    throw NonFiniteError("clip_grad_norm: the total " + Value(norm_type).to_string() + "-norm of the gradients is " +
                         Value(total).to_string() + who);
  }
  // PyTorch: max_norm / (total + 1e-6) as reciprocal times max_norm, clamped to at most 1; in
  // float32 unless every gradient is float64.
  double coef = 0;
  if (all_double) {
    coef = std::min(1.0, (1.0 / (total + 1e-6)) * max_norm);
  } else {
    float c = (1.0f / (static_cast<float>(total) + 1e-6f)) * static_cast<float>(max_norm);
    if (c > 1.0f) c = 1.0f;
    coef = c;
  }
  for (Parameter& p : with_grad) scale(p.grad(), coef);
  return total;
}

void clip_grad_value(const std::vector<Parameter>& params, double clip_value) {
  if (!(clip_value >= 0)) {
    throw UsageError("clip_grad_value: clip_value = " + Value(clip_value).to_string() + " must be a non-negative number");
  }
  check_grads(params, "clip_grad_value");
  for (Parameter p : params) {  // a handle: the copy reaches the same gradient
    if (p.has_grad()) clamp(p.grad(), clip_value);
  }
}

}  // namespace optreg
