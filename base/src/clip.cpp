// Gradient clipping by global norm and by value (PyTorch 1.13 semantics, float32).
#include <optreg/clip.hpp>

#include <cmath>
#include <string>

#include <optreg/error.hpp>
#include <optreg/value.hpp>

#include "parameter_checks.hpp"

namespace optreg {

namespace {

/// Checks every gradient's shape against its value's before anything is clipped; `fn` names
/// the function in messages.
void check_grads(const std::vector<Parameter>& params, const char* fn) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter& p = params[i];
    if (p.has_grad() && p.grad().shape() != p.value().shape()) {
      throw UsageError(std::string(fn) + ": parameter " + quoted_name(p.name()) + " (position " + std::to_string(i) +
                       "): " + detail::grad_shape_reason(p));
    }
  }
}

/// The p-norm of `n` floats, accumulated in double and rounded to float32 like a float32
/// tensor's norm.
float norm_of(const float* x, std::size_t n, double p) {
  if (std::isinf(p)) {
    float m = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const float a = std::fabs(x[i]);
      if (std::isnan(a)) return a;  // nan wins wherever it is, as in PyTorch's max
      if (a > m) m = a;
    }
    return m;
  }
  double sum = 0;
  if (p == 1.0) {
    for (std::size_t i = 0; i < n; ++i) sum += std::fabs(static_cast<double>(x[i]));
    return static_cast<float>(sum);
  }
  if (p == 2.0) {
    for (std::size_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return static_cast<float>(std::sqrt(sum));
  }
  for (std::size_t i = 0; i < n; ++i) sum += std::pow(std::fabs(static_cast<double>(x[i])), p);
  return static_cast<float>(std::pow(sum, 1.0 / p));
}

}  // namespace

double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  if (!(max_norm >= 0)) throw UsageError("clip_grad_norm: max_norm = " + Value(max_norm).to_string() + " must be a non-negative number");
  if (!(norm_type > 0)) {
    throw UsageError("clip_grad_norm: norm_type = " + Value(norm_type).to_string() + " must be positive (or inf)");
  }
  check_grads(params, "clip_grad_norm");
  std::vector<Parameter> with_grad;
  std::vector<float> norms;
  for (const Parameter& p : params) {
    if (!p.has_grad()) continue;
    with_grad.push_back(p);
    const Tensor& g = p.grad();
    norms.push_back(norm_of(g.data(), g.numel(), norm_type));
  }
  if (with_grad.empty()) return 0.0;
  const float total = norm_of(norms.data(), norms.size(), norm_type);
  if (!std::isfinite(total) && error_if_nonfinite) {
    std::string who;
    for (std::size_t i = 0; i < norms.size() && who.empty(); ++i) {
      if (!std::isfinite(norms[i])) who = "; the gradient of parameter '" + with_grad[i].name() + "' is not finite";
    }
    throw NonFiniteError("clip_grad_norm: the total " + Value(norm_type).to_string() + "-norm of the gradients is " +
                         Value(static_cast<double>(total)).to_string() + who);
  }
  // PyTorch: max_norm / (total + 1e-6) as reciprocal times max_norm, clamped to at most 1.
  float coef = (1.0f / (total + 1e-6f)) * static_cast<float>(max_norm);
  if (coef > 1.0f) coef = 1.0f;
  for (Parameter& p : with_grad) {
    Tensor& g = p.grad();
    float* x = g.data();
    for (std::size_t i = 0, n = g.numel(); i < n; ++i) x[i] = x[i] * coef;
  }
  return static_cast<double>(total);
}

void clip_grad_value(const std::vector<Parameter>& params, double clip_value) {
  if (!(clip_value >= 0)) {
    throw UsageError("clip_grad_value: clip_value = " + Value(clip_value).to_string() + " must be a non-negative number");
  }
  check_grads(params, "clip_grad_value");
  const float hi = static_cast<float>(clip_value);
  const float lo = -hi;
  for (Parameter p : params) {  // a handle: the copy reaches the same gradient
    if (!p.has_grad()) continue;
    Tensor& g = p.grad();
    float* x = g.data();
    for (std::size_t i = 0, n = g.numel(); i < n; ++i) {
      if (x[i] < lo) {
        x[i] = lo;
      } else if (x[i] > hi) {
        x[i] = hi;
      }
    }
  }
}

}  // namespace optreg
