#include <optreg/tensor.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include <optreg/error.hpp>

namespace optreg {

std::size_t numel_of(const Shape& shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw UsageError("tensor shape " + to_string(shape) + " has a negative extent");
    const auto ud = static_cast<std::size_t>(d);
    if (ud != 0 && n > std::numeric_limits<std::size_t>::max() / sizeof(float) / ud) {
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
std::shared_ptr<float> allocate(std::size_t n) {
  // Round up so that aligned_alloc's size is a multiple of the alignment; never zero bytes.
  const std::size_t bytes = std::max<std::size_t>(Tensor::kAlignment, (n * sizeof(float) + Tensor::kAlignment - 1) /
                                                                           Tensor::kAlignment * Tensor::kAlignment);
  void* p = std::aligned_alloc(Tensor::kAlignment, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor() : Tensor(Shape{0}) {}

Tensor::Tensor(const Shape& shape) : shape_(shape), numel_(numel_of(shape)), data_(allocate(numel_)) {
  std::fill_n(data_.get(), numel_, 0.0F);
}

Tensor::Tensor(const Shape& shape, float value) : shape_(shape), numel_(numel_of(shape)), data_(allocate(numel_)) {
  std::fill_n(data_.get(), numel_, value);
}

Tensor::Tensor(const Shape& shape, const std::vector<float>& values)
    : shape_(shape), numel_(numel_of(shape)), data_(allocate(numel_)) {
  if (values.size() != numel_) {
    throw UsageError("tensor of shape " + to_string(shape) + " needs " + std::to_string(numel_) + " values, got " +
                     std::to_string(values.size()));
  }
  std::copy(values.begin(), values.end(), data_.get());
}

Tensor::Tensor(const Shape& shape, std::initializer_list<float> values)
    : Tensor(shape, std::vector<float>(values)) {}

Tensor Tensor::uninitialized(const Shape& shape) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.data_ = allocate(t.numel_);
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
  t.data_ = std::shared_ptr<float>(buffer.data_, buffer.data_.get() + offset);
  return t;
}

Tensor Tensor::view(float* data, const Shape& shape) {
  if (data == nullptr) throw UsageError("Tensor::view needs memory, got a null pointer");
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.view_ = true;
  t.data_ = std::shared_ptr<float>(data, [](float*) {});
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  std::copy_n(data_.get(), numel_, t.data_.get());
  return t;
}

void Tensor::copy_from(const Tensor& other) {
  if (other.shape_ != shape_) {
    throw UsageError("cannot copy a tensor of shape " + to_string(other.shape_) + " into one of shape " +
                     to_string(shape_));
  }
  if (other.data_ != data_) std::memmove(data_.get(), other.data_.get(), numel_ * sizeof(float));
}

void Tensor::fill(float value) noexcept { std::fill_n(data_.get(), numel_, value); }

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data_.get(), data_.get() + numel_); }

}  // namespace optreg
