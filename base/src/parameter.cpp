#include <optreg/parameter.hpp>

#include <type_traits>

#include <optreg/error.hpp>

#include "parameter_checks.hpp"

namespace optreg {

struct Parameter::Impl {
  std::string name;
  Tensor value;
  Tensor grad;
  bool has_grad = false;
  bool grad_is_buffer = false;  // grad is our own buffer (reusable) rather than a caller's tensor
};

Parameter::Parameter(std::string name, Tensor value) : impl_(std::make_shared<Impl>()) {
  impl_->name = std::move(name);
  impl_->value = std::move(value);
}

const std::string& Parameter::name() const noexcept { return impl_->name; }
Tensor& Parameter::value() noexcept { return impl_->value; }
const Tensor& Parameter::value() const noexcept { return impl_->value; }
bool Parameter::has_grad() const noexcept { return impl_->has_grad; }

Tensor& Parameter::grad() {
  if (!impl_->has_grad) throw UsageError("parameter '" + impl_->name + "' has no gradient");
  return impl_->grad;
}

const Tensor& Parameter::grad() const {
  if (!impl_->has_grad) throw UsageError("parameter '" + impl_->name + "' has no gradient");
  return impl_->grad;
}

namespace {
void check_grad_fits(const std::string& name, const Tensor& value, const Tensor& g) {
  if (g.dtype() != value.dtype()) {
    throw UsageError(std::string("a ") + dtype_name(g.dtype()) + " gradient does not match parameter '" + name +
                     "', which is " + dtype_name(value.dtype()) + "; a gradient must have its parameter's dtype");
  }
  if (g.shape() != value.shape()) {
    throw UsageError("gradient of shape " + to_string(g.shape()) + " does not match parameter '" + name +
                     "' of shape " + to_string(value.shape()));
  }
}

/// dst += src elementwise, in the elements' dtype (half types summed in float32, rounded to nearest).
void add_into(Tensor& dst, const Tensor& src) {
  visit_dtype(dst.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.data_as<T>();
    const T* s = src.data_as<T>();
    for (std::size_t i = 0, n = dst.numel(); i < n; ++i) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        d[i] += s[i];
      } else {
        d[i] = from_float<T>(to_float(d[i]) + to_float(s[i]));
      }
    }
  });
}
}  // namespace

void Parameter::accumulate_grad(const Tensor& g) {
  Impl& p = *impl_;
  check_grad_fits(p.name, p.value, g);
  if (p.has_grad) {
    // The gradient itself must still fit the value (neither replaced by another shape or dtype).
    detail::check_grad_fits(*this, [] { return std::string(); }, -1);
    add_into(p.grad, g);
    return;
  }
  if (!p.grad_is_buffer || !detail::grad_fits(p.value, p.grad)) {  // the value may have been replaced
    p.grad = Tensor::uninitialized(p.value.shape(), p.value.dtype());
    p.grad_is_buffer = true;
  }
  p.grad.copy_from(g);
  p.has_grad = true;
}

void Parameter::set_grad(Tensor g) {
  check_grad_fits(impl_->name, impl_->value, g);
  impl_->grad = std::move(g);
  impl_->grad_is_buffer = false;
  impl_->has_grad = true;
}

void Parameter::clear_grad() noexcept { impl_->has_grad = false; }

namespace {
/// Whether `t` has shape `shape` of `numel` elements. A shape of at most one dimension is fixed
/// by its rank and element count, both held in the tensor itself: only a shape of two or more
/// dimensions is compared dimension by dimension (a loop rather than operator==: shapes are
/// short, and this runs for every parameter at every step).
bool same_shape(const Tensor& t, const Shape& shape, std::size_t numel) noexcept {
  const Shape& have = t.shape();
  if (have.size() != shape.size() || t.numel() != numel) return false;
  if (have.size() < 2) return true;
  for (std::size_t i = 0; i < have.size(); ++i) {
    if (have[i] != shape[i]) return false;
  }
  return true;
}
}  // namespace

std::size_t detail::first_misfit(const std::vector<Parameter>& params, const std::vector<Shape>& shapes,
                                 const std::vector<std::size_t>& numels, const std::vector<DType>& dtypes) noexcept {
  // Each parameter is an allocation of its own: its handles (name, value, gradient) are asked
  // for a few parameters ahead, so that ten thousand small parameters do not each wait on memory.
  constexpr std::size_t kAhead = 8;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i + kAhead < params.size()) {
      const char* next = reinterpret_cast<const char*>(params[i + kAhead].impl_.get());
      for (std::size_t at = 0; at < sizeof(Parameter::Impl); at += 64) __builtin_prefetch(next + at);
    }
    const Parameter::Impl& p = *params[i].impl_;
    if (p.value.dtype() != dtypes[i] || !same_shape(p.value, shapes[i], numels[i])) return i;
    if (p.has_grad && (p.grad.dtype() != p.value.dtype() || !same_shape(p.grad, p.value.shape(), p.value.numel()))) {
      return i;
    }
  }
  return params.size();
}

}  // namespace optreg
