#pragma once
// The objectives the conformance kit steps optimizers on, shared by the kit and by
// optreg-conformance-resume: gradients as functions of the parameters' values, and, for an
// optimizer that re-evaluates the loss (L-BFGS), the closure that evaluates them. Internal to
// the kit; not installed.

#include <cmath>
#include <cstddef>
#include <vector>

#include <optreg/optimizer.hpp>

namespace optreg::kit {

/// The curvature a, in [0.5, 5], of element i of parameter k in the quadratic problems.
inline double curvature(std::size_t k, std::size_t i) {
  return 0.5 + 4.5 * static_cast<double>((k * 131 + i * 29) % 97) / 96.0;
}

enum class Gradient {
  Smooth,     ///< a x + 0.1 sin(3x + i): the gradient of 0.5 a x^2 - cos(3x + i) / 30
  Quadratic,  ///< a x: the gradient of 0.5 * sum(a x^2)
  Zero,       ///< all zeros (a constant loss)
};

/// The gradient of kind `kind` of parameter k at its value x.
inline Tensor gradient(Gradient kind, std::size_t k, const Tensor& x) {
  // Another dtype: the float32 gradient of the widened values, rounded to the parameter's dtype.
  if (x.dtype() != DType::Float32) return gradient(kind, k, x.to(DType::Float32)).to(x.dtype());
  Tensor g(x.shape());
  if (kind == Gradient::Zero) return g;
  for (std::size_t i = 0; i < x.numel(); ++i) {
    const double v = x[i];
    double d = curvature(k, i) * v;
    if (kind == Gradient::Smooth) d += 0.1 * std::sin(3.0 * v + static_cast<double>(i));
    g[i] = static_cast<float>(d);
  }
  return g;
}

/// The loss whose gradient gradient(kind, k, x) is, over parameter k.
inline double objective(Gradient kind, std::size_t k, const Tensor& x) {
  if (kind == Gradient::Zero) return 0.0;
  double sum = 0.0;
  for (std::size_t i = 0; i < x.numel(); ++i) {
    const double v = x.element(i);
    sum += 0.5 * curvature(k, i) * v * v;
    if (kind == Gradient::Smooth) sum -= std::cos(3.0 * v + static_cast<double>(i)) / 30.0;
  }
  return sum;
}

/// One step of `opt` over `params` (in id order), whose gradients the caller has set (by
/// kind `kind`, or none for some): step(), or for an optimizer that needs a closure, step()
/// with the closure that re-evaluates the objective of `kind` over the parameters that have a
/// gradient now, setting their gradients at each call.
inline void take_step(Optimizer& opt, std::vector<Parameter>& params, Gradient kind) {
  if (!opt.needs_closure()) {
    opt.step();
    return;
  }
  std::vector<std::size_t> with;
  for (std::size_t k = 0; k < params.size(); ++k) {
    if (params[k].has_grad()) with.push_back(k);
  }
  opt.step([&] {
    double loss = 0.0;
    for (const std::size_t k : with) {
      params[k].set_grad(gradient(kind, k, params[k].value()));
      loss += objective(kind, k, params[k].value());
    }
    return loss;
  });
}

}  // namespace optreg::kit
