#include <optreg/tensor.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>
#include <type_traits>

#include <optreg/error.hpp>

namespace optreg {

std::size_t numel_of(const Shape& shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw UsageError("tensor shape " + to_string(shape) + " has a negative extent");
    const auto ud = static_cast<std::size_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::size_t>::max() / sizeof(double) / ud) {
      throw UsageError("tensor shape " + to_string(shape) + " is too large");
    }
    n *= ud;
  }
  return n;
}

std::string to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

namespace {
std::shared_ptr<void> allocate(std::size_t n, DType dtype) {
  // Round up so that aligned_alloc's size is a multiple of the alignment; never zero bytes.
  const std::size_t bytes = std::max<std::size_t>(
      Tensor::kAlignment, (n * dtype_size(dtype) + Tensor::kAlignment - 1) / Tensor::kAlignment * Tensor::kAlignment);
  void* p = std::aligned_alloc(Tensor::kAlignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}


/// `x` stored as T, rounding to nearest: doubles to float first (float32 holds every value a
/// half type can, so the two roundings give the half type's nearest value but for ties at the
/// float32 step, which no value a half-precision or float32 tensor held can produce).
template <typename T>
T narrow(double x) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else {
    return from_float<T>(static_cast<float>(x));
  }
}
}  // namespace

Tensor::Tensor() : Tensor(Shape{0}) {}

Tensor::Tensor(const Shape& shape, DType dtype)
    : shape_(shape), numel_(numel_of(shape)), dtype_(dtype), data_(allocate(numel_, dtype)) {
  std::memset(data_.get(), 0, nbytes());  // +0 in every dtype
}

Tensor::Tensor(const Shape& shape, float value)
    : shape_(shape), numel_(numel_of(shape)), data_(allocate(numel_, DType::Float32)) {
  std::fill_n(static_cast<float*>(data_.get()), numel_, value);
}

Tensor::Tensor(const Shape& shape, const std::vector<float>& values)
    : shape_(shape), numel_(numel_of(shape)), data_(allocate(numel_, DType::Float32)) {
  if (values.size() != numel_) {
    throw UsageError("tensor of shape " + to_string(shape) + " needs " + std::to_string(numel_) + " values, got " +
                     std::to_string(values.size()));
  }
  std::copy(values.begin(), values.end(), static_cast<float*>(data_.get()));
}

Tensor::Tensor(const Shape& shape, std::initializer_list<float> values)
    : Tensor(shape, std::vector<float>(values)) {}

Tensor Tensor::uninitialized(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.dtype_ = dtype;
  t.data_ = allocate(t.numel_, dtype);
  return t;
}

Tensor Tensor::part_of(const Tensor& buffer, std::size_t offset, const Shape& shape) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  if (offset > buffer.numel_ || t.numel_ > buffer.numel_ - offset) {
    throw UsageError("a part of shape " + to_string(shape) + " at offset " + std::to_string(offset) +
                     " does not fit in a buffer of " + std::to_string(buffer.numel_) + " elements");
  }
  t.view_ = buffer.view_;
  t.dtype_ = buffer.dtype_;
  t.data_ = std::shared_ptr<void>(buffer.data_, static_cast<std::byte*>(buffer.data_.get()) + offset * buffer.element_size());
  return t;
}

Tensor Tensor::view(void* data, DType dtype, const Shape& shape) {
  if (data == nullptr) throw UsageError("Tensor::view needs memory, got a null pointer");
  if (dtype_size(dtype) == 0) throw UsageError("Tensor::view: unknown dtype " + std::to_string(static_cast<unsigned>(dtype)));
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.view_ = true;
  t.dtype_ = dtype;
  t.data_ = std::shared_ptr<void>(data, [](void*) {});
  return t;
}

Tensor Tensor::view(float* data, const Shape& shape) { return view(data, DType::Float32, shape); }
Tensor Tensor::view(double* data, const Shape& shape) { return view(data, DType::Float64, shape); }
Tensor Tensor::view(bfloat16* data, const Shape& shape) { return view(data, DType::BFloat16, shape); }
Tensor Tensor::view(float16* data, const Shape& shape) { return view(data, DType::Float16, shape); }

void Tensor::refuse_access(DType asked) const {
  throw UsageError(std::string("a ") + dtype_name(dtype_) + " tensor of shape " + to_string(shape_) +
                   " was accessed as " + dtype_name(asked) + "; access it as " + dtype_name(dtype_) +
                   " or convert it with Tensor::to()");
}

double Tensor::element(std::size_t i) const noexcept {
  return visit_dtype(dtype_, [&](auto tag) { return to_double(static_cast<const decltype(tag)*>(data_.get())[i]); });
}

Tensor Tensor::clone() const {
  Tensor t = uninitialized(shape_, dtype_);
  std::memcpy(t.data_.get(), data_.get(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor t = uninitialized(shape_, dtype);
  visit_dtype(dtype_, [&](auto from) {
    const auto* src = static_cast<const decltype(from)*>(data_.get());
    visit_dtype(dtype, [&](auto into) {
      using T = decltype(into);
      T* dst = static_cast<T*>(t.data_.get());
      for (std::size_t i = 0; i < numel_; ++i) dst[i] = narrow<T>(to_double(src[i]));
    });
  });
  return t;
}

void Tensor::copy_from(const Tensor& other) {
  if (other.shape_ != shape_ || other.dtype_ != dtype_) {
    throw UsageError(std::string("cannot copy a ") + dtype_name(other.dtype_) + " tensor of shape " +
                     to_string(other.shape_) + " into a " + dtype_name(dtype_) + " tensor of shape " +
                     to_string(shape_));
  }
  if (other.data_ != data_) std::memmove(data_.get(), other.data_.get(), nbytes());
}

void Tensor::fill(double value) noexcept {
  visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    std::fill_n(static_cast<T*>(data_.get()), numel_, narrow<T>(value));
  });
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(numel_);
  for (std::size_t i = 0; i < numel_; ++i) out[i] = static_cast<float>(element(i));
  return out;
}

std::vector<double> Tensor::to_double_vector() const {
  std::vector<double> out(numel_);
  for (std::size_t i = 0; i < numel_; ++i) out[i] = element(i);
  return out;
}

}  // namespace optreg
