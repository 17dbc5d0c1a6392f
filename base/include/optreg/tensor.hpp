#pragma once
/// \file
/// optreg::Tensor: a dense, row-major float32 array with a shape.

#include <optreg/export.hpp>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace optreg {

/// Extents of a tensor, outermost first. A shape of {} is a scalar (one element).
using Shape = std::vector<std::int64_t>;

/// Number of elements of a shape; throws UsageError on a negative extent or overflow.
OPTREG_API std::size_t numel_of(const Shape& shape);

/// "[2, 3]" for display and messages.
OPTREG_API std::string to_string(const Shape& shape);

/// A dense, row-major float32 array.
///
/// A Tensor is a handle: copies share the same elements (like torch::Tensor); use clone()
/// for an independent copy. Its memory is either owned (64-byte aligned, freed with the last
/// handle) or a view of memory the caller owns and keeps alive (zero-copy integration with
/// another framework's buffers).
class OPTREG_API Tensor {
 public:
  static constexpr std::size_t kAlignment = 64;

  /// An empty tensor of shape {0}.
  Tensor();
  /// Owned, zero-filled memory of the given shape.
  explicit Tensor(const Shape& shape);
  /// Owned memory of the given shape, filled with `value`.
  Tensor(const Shape& shape, float value);
  /// Owned memory holding a copy of `values`; throws UsageError if the count differs from the shape.
  Tensor(const Shape& shape, const std::vector<float>& values);
  Tensor(const Shape& shape, std::initializer_list<float> values);

  /// Owned memory of the given shape whose elements are left unset (for code that fills every
  /// element at once, such as a checkpoint reader).
  static Tensor uninitialized(const Shape& shape);

  /// A tensor of the given shape over `buffer`'s elements from `offset` on; it shares (and keeps
  /// alive) the buffer's memory. Throws UsageError when the part does not fit.
  static Tensor part_of(const Tensor& buffer, std::size_t offset, const Shape& shape);

  /// A view of caller-owned memory (`data` must hold numel_of(shape) floats and outlive every handle).
  static Tensor view(float* data, const Shape& shape);

  const Shape& shape() const noexcept { return shape_; }
  std::size_t numel() const noexcept { return numel_; }
  std::size_t dim() const noexcept { return shape_.size(); }
  bool is_view() const noexcept { return view_; }

  float* data() noexcept { return data_.get(); }
  const float* data() const noexcept { return data_.get(); }
  float& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  float operator[](std::size_t i) const noexcept { return data_.get()[i]; }

  /// An owned deep copy.
  Tensor clone() const;
  /// Copies the elements of `other` into this tensor's memory; throws UsageError on a shape mismatch.
  void copy_from(const Tensor& other);
  /// Sets every element to `value`.
  void fill(float value) noexcept;
  /// The elements as a std::vector (for tests and display).
  std::vector<float> to_vector() const;
  /// True when both handles use the same memory.
  bool shares_memory_with(const Tensor& other) const noexcept { return data_ == other.data_; }

 private:
  Shape shape_;
  std::size_t numel_ = 0;
  bool view_ = false;
  std::shared_ptr<float> data_;
};

}  // namespace optreg
