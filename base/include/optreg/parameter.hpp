#pragma once
/// \file
/// optreg::Parameter: a named value tensor with an optional gradient.

#include <optreg/export.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <optreg/tensor.hpp>

namespace optreg {

class Parameter;

namespace detail {
/// The position of the first of `params` whose value's shape is not `shapes[i]` (of
/// `numels[i]` elements) or whose dtype is not `dtypes[i]`, or whose gradient (when present) has
/// another shape or dtype than its value; params.size() when every one fits. One pass without a
/// call per parameter: what an optimizer checks at every step.
OPTREG_API std::size_t first_misfit(const std::vector<Parameter>& params, const std::vector<Shape>& shapes,
                                    const std::vector<std::size_t>& numels, const std::vector<DType>& dtypes) noexcept;
}  // namespace detail

/// A trainable parameter: a name, a value tensor and an optional gradient.
///
/// The gradient has the value's dtype (a float16 parameter takes float16 gradients, a float64
/// one float64 gradients): accumulate_grad() and set_grad() refuse any other, naming both.
/// Parameter is a handle: copies refer to the same parameter, and identity (same_as) is what
/// optimizers use to tell parameters apart. Gradients accumulate until cleared; a parameter
/// whose gradient is absent is skipped by Optimizer::step(), which is how freezing works.
/// A Parameter is not synchronised: do not modify one from two threads at once.
class OPTREG_API Parameter {
 public:
  /// A parameter whose value is `value` (which may be a view of caller memory).
  Parameter(std::string name, Tensor value);

  const std::string& name() const noexcept;
  /// The value. It may be replaced by another tensor of the same shape (a view of new memory);
  /// while an optimizer manages the parameter, a value of another shape makes the optimizer's
  /// step() throw UsageError (Optimizer::check_parameters()).
  Tensor& value() noexcept;
  const Tensor& value() const noexcept;

  /// Whether a gradient is present.
  bool has_grad() const noexcept;
  /// The gradient; throws UsageError when absent. Replacing it by a tensor of another shape
  /// than the value's makes step() and clipping throw UsageError.
  Tensor& grad();
  const Tensor& grad() const;

  /// Adds `g` to the gradient, or makes it the gradient when absent (copying it into a buffer
  /// that is reused across clear_grad() calls). The sum of half-precision gradients is taken in
  /// float32 and rounded to nearest. Throws UsageError when the shape or dtype differs from the
  /// value's, or when the present gradient's shape or dtype is not the value's.
  void accumulate_grad(const Tensor& g);
  /// Makes `g` the gradient itself (no copy; `g` may be a view). Throws UsageError on a shape
  /// or dtype mismatch.
  void set_grad(Tensor g);
  /// Makes the gradient absent. Its buffer is kept for the next accumulate_grad().
  void clear_grad() noexcept;

  /// True when both handles refer to the same parameter.
  bool same_as(const Parameter& other) const noexcept { return impl_ == other.impl_; }
  /// An identity key, equal for handles of the same parameter (for hashing).
  const void* id() const noexcept { return impl_.get(); }

 private:
  friend std::size_t detail::first_misfit(const std::vector<Parameter>& params, const std::vector<Shape>& shapes,
                                          const std::vector<std::size_t>& numels,
                                          const std::vector<DType>& dtypes) noexcept;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace optreg
