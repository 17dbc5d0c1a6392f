#pragma once
// Checks of a parameter's gradient against its value, shared by the optimizer and the clipping
// functions. Not installed.

#include <optreg/error.hpp>
#include <optreg/parameter.hpp>

namespace optreg::detail {

/// Whether a gradient fits its parameter's value: the same shape and the same dtype (the one
/// gradient dtype each parameter dtype accepts; docs/precision.md).
inline bool grad_fits(const Tensor& value, const Tensor& grad) noexcept {
  return grad.dtype() == value.dtype() && grad.shape() == value.shape();
}

/// Why `grad` does not fit `value` (grad_fits() is false).
inline std::string grad_misfit_reason(const Tensor& value, const Tensor& grad) {
  if (grad.dtype() != value.dtype()) {
    return std::string("its gradient is ") + dtype_name(grad.dtype()) + ", but its value is " +
           dtype_name(value.dtype()) + "; a gradient must have its parameter's dtype";
  }
  return "its gradient has shape " + to_string(grad.shape()) + ", but its value has shape " +
         to_string(value.shape());
}

/// The reason check_grad_fits() gives.
inline std::string grad_misfit_reason(const Parameter& p) { return grad_misfit_reason(p.value(), p.grad()); }

/// Throws UsageError "WHERE, parameter 'NAME' (position P): its gradient has shape [..], but
/// its value has shape [..]" (or names both dtypes) when `p` has a gradient whose shape or
/// dtype is not its value's (one of them replaced through grad() or value()). `where()` names what holds the parameter (empty:
/// nothing) and `position` its place there (-1: none); `where` is called only to throw, so
/// that the check allocates nothing.
template <typename Where>
void check_grad_fits(const Parameter& p, Where&& where, std::int64_t position) {
  if (p.has_grad() && !grad_fits(p.value(), p.grad())) {
    throw UsageError(where(), p.name(), position, grad_misfit_reason(p));
  }
}

}  // namespace optreg::detail
