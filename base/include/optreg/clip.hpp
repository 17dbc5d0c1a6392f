#pragma once
/// \file
/// Gradient clipping, with the semantics of PyTorch 1.13's torch.nn.utils.clip_grad_norm_ and
/// clip_grad_value_. Call it after the gradients are computed and before Optimizer::step();
/// parameters without a gradient are left out. A gradient whose shape is not its value's (one
/// replaced through Parameter::grad() or value()) is a UsageError naming the parameter and its
/// position in `params`, before any gradient changes.
///
/// Arithmetic is float32 like PyTorch's: each gradient's norm, then the norm of those norms,
/// each rounded to float32 (sums are accumulated in double, so a total may differ from
/// PyTorch's in the last bits); the factor is max_norm / (total + 1e-6), at most 1, and every
/// gradient is multiplied by it.

#include <optreg/export.hpp>
#include <vector>

#include <optreg/parameter.hpp>

namespace optreg {

/// Scales the gradients of `params` so that their total `norm_type`-norm (over all of them, as
/// if concatenated) is at most `max_norm`, and returns the total norm before scaling (0 when no
/// parameter has a gradient). `norm_type` is p > 0 or infinity (the largest magnitude).
///
/// A non-finite total norm (a gradient holding inf or nan) is returned, never hidden; the
/// gradients are then scaled as PyTorch scales them (by 0 for inf, to nan for nan). With
/// `error_if_nonfinite` it throws NonFiniteError naming the total and the first parameter whose
/// gradient is not finite, and changes nothing. Throws UsageError for a `max_norm` that is
/// negative or not a number, or a `norm_type` that is not positive.
OPTREG_API double clip_grad_norm(const std::vector<Parameter>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

/// Clamps every element of the gradients of `params` to [-clip_value, clip_value] (nan stays
/// nan). Throws UsageError for a negative `clip_value` or one that is not a number.
OPTREG_API void clip_grad_value(const std::vector<Parameter>& params, double clip_value);

}  // namespace optreg
