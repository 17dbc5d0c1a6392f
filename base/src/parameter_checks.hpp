#pragma once
// Checks of a parameter's gradient against its value, shared by the optimizer and the clipping
// functions. Not installed.

#include <optreg/error.hpp>
#include <optreg/parameter.hpp>

namespace optreg::detail {

/// The reason check_grad_shape() gives.
inline std::string grad_shape_reason(const Parameter& p) {
  return "its gradient has shape " + to_string(p.grad().shape()) + ", but its value has shape " +
         to_string(p.value().shape());
}

/// Throws UsageError "WHERE, parameter 'NAME' (position P): its gradient has shape [..], but
/// its value has shape [..]" when `p` has a gradient whose shape is not its value's (one of
/// them replaced through grad() or value()). `where()` names what holds the parameter (empty:
/// nothing) and `position` its place there (-1: none); `where` is called only to throw, so
/// that the check allocates nothing.
template <typename Where>
void check_grad_shape(const Parameter& p, Where&& where, std::int64_t position) {
  if (p.has_grad() && p.grad().shape() != p.value().shape()) {
    throw UsageError(where(), p.name(), position, grad_shape_reason(p));
  }
}

}  // namespace optreg::detail
