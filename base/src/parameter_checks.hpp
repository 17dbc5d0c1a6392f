#pragma once
// Checks of a parameter's gradient against its value, shared by the optimizer and the clipping
// functions. Not installed.

#include <optreg/error.hpp>
#include <optreg/parameter.hpp>

namespace optreg::detail {

/// Throws UsageError "WHERE: its gradient has shape [..], but its value has shape [..]" when
/// `p` has a gradient whose shape is not its value's (one of them replaced through grad() or
/// value()). `where()` names the parameter; it is called only to throw, so that the check
/// allocates nothing.
template <typename Where>
void check_grad_shape(const Parameter& p, Where&& where) {
  if (p.has_grad() && p.grad().shape() != p.value().shape()) {
    throw UsageError(where() + ": its gradient has shape " + to_string(p.grad().shape()) +
                     ", but its value has shape " + to_string(p.value().shape()));
  }
}

}  // namespace optreg::detail
