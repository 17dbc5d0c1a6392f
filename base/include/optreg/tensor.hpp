#pragma once
/// \file
/// optreg::Tensor: a dense, row-major array with a shape and an element type.

#include <optreg/export.hpp>
#include <optreg/dtype.hpp>
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

/// A dense, row-major array of one element type (DType): float32 unless asked otherwise.
///
/// A Tensor is a handle: copies share the same elements (like torch::Tensor); use clone()
/// for an independent copy. Its memory is either owned (64-byte aligned, freed with the last
/// handle) or a view of memory the caller owns and keeps alive (zero-copy integration with
/// another framework's buffers), and a view names its dtype.
///
/// Element access is typed: data() is the float32 elements, data_as<T>() those of T (double,
/// bfloat16, float16); asking for another type than the tensor's dtype throws UsageError naming
/// both, never reinterprets memory. element() and to_vector() read any dtype as numbers.
class OPTREG_API Tensor {
 public:
  static constexpr std::size_t kAlignment = 64;

  /// An empty float32 tensor of shape {0}.
  Tensor();
  /// Owned, zero-filled memory of the given shape and dtype (a quantized tensor holds zeros
  /// too: every code is its map's code of 0, every scale 0).
  explicit Tensor(const Shape& shape, DType dtype = DType::Float32);
  /// Owned float32 memory of the given shape, filled with `value`.
  Tensor(const Shape& shape, float value);
  /// Owned float32 memory holding a copy of `values`; throws UsageError if the count differs from the shape.
  Tensor(const Shape& shape, const std::vector<float>& values);
  Tensor(const Shape& shape, std::initializer_list<float> values);

  /// Owned memory of the given shape and dtype whose elements are left unset (for code that
  /// fills every element at once, such as a checkpoint reader).
  static Tensor uninitialized(const Shape& shape, DType dtype = DType::Float32);

  /// A tensor of the given shape over `buffer`'s elements from `offset` on, of the buffer's
  /// dtype; it shares (and keeps alive) the buffer's memory. Throws UsageError when the part
  /// does not fit.
  static Tensor part_of(const Tensor& buffer, std::size_t offset, const Shape& shape);

  /// A view of caller-owned memory (`data` must hold numel_of(shape) elements and outlive every
  /// handle); the pointer's type names the dtype.
  static Tensor view(float* data, const Shape& shape);
  static Tensor view(double* data, const Shape& shape);
  static Tensor view(bfloat16* data, const Shape& shape);
  static Tensor view(float16* data, const Shape& shape);
  /// A view of caller-owned memory holding numel_of(shape) elements of `dtype`.
  static Tensor view(void* data, DType dtype, const Shape& shape);
  /// The same, keeping `owner` (what holds the memory: another framework's array) alive while
  /// any handle to the view lives, so that the memory cannot go away under the optimizer.
  static Tensor view(void* data, DType dtype, const Shape& shape, std::shared_ptr<const void> owner);

  const Shape& shape() const noexcept { return shape_; }
  std::size_t numel() const noexcept { return numel_; }
  std::size_t dim() const noexcept { return shape_.size(); }
  bool is_view() const noexcept { return view_; }
  DType dtype() const noexcept { return dtype_; }
  /// Bytes of one element.
  std::size_t element_size() const noexcept { return dtype_size(dtype_); }
  /// Bytes of all the elements (of a quantized tensor: its codes, padding and scales).
  std::size_t nbytes() const noexcept { return storage_bytes(dtype_, numel_); }

  /// The float32 elements; throws UsageError for a tensor of another dtype.
  float* data() { return data_as<float>(); }
  const float* data() const { return data_as<float>(); }
  /// The elements as T (float, double, bfloat16 or float16); throws UsageError, naming both
  /// dtypes, when T is not the tensor's dtype.
  template <typename T>
  T* data_as() {
    if (dtype_ != dtype_v<T>) refuse_access(dtype_v<T>);
    return static_cast<T*>(data_.get());
  }
  template <typename T>
  const T* data_as() const {
    if (dtype_ != dtype_v<T>) refuse_access(dtype_v<T>);
    return static_cast<const T*>(data_.get());
  }
  /// The memory, untyped (for code that dispatches on dtype() itself, or copies bytes).
  void* raw() noexcept { return data_.get(); }
  const void* raw() const noexcept { return data_.get(); }
  /// The codes of a quantized tensor, one byte per element; throws UsageError for another dtype.
  std::uint8_t* codes();
  const std::uint8_t* codes() const;
  /// The scales of a quantized tensor: the absmax of each block of kQuantBlock elements.
  float* scales();
  const float* scales() const;
  /// A float32 element; throws UsageError for a tensor of another dtype.
  float& operator[](std::size_t i) { return data()[i]; }
  float operator[](std::size_t i) const { return data()[i]; }
  /// Element i of any dtype as a double (exact: every dtype widens to double exactly; a
  /// quantized element is its map value times its block's scale, a float).
  double element(std::size_t i) const noexcept;

  /// An owned deep copy, of the same dtype.
  Tensor clone() const;
  /// An owned copy converted to `dtype`, rounding to nearest (ties to even) where `dtype`
  /// cannot hold a value; a copy like clone() when the dtype is the same. Into a quantized
  /// dtype, the values are rounded to float and each block quantized with its absmax.
  Tensor to(DType dtype) const;
  /// Copies the elements of `other` into this tensor's memory; throws UsageError on a shape or
  /// dtype mismatch, naming both.
  void copy_from(const Tensor& other);
  /// Sets every element to `value`, rounded to nearest into the dtype (a float32 tensor holds
  /// float(value), a half-precision one the half nearest to float(value), a float64 one value,
  /// a quantized one float(value) quantized).
  void fill(double value) noexcept;
  /// The elements as floats (for tests and display; float64 elements are rounded to nearest).
  std::vector<float> to_vector() const;
  /// The elements as doubles (exact for every dtype).
  std::vector<double> to_double_vector() const;
  /// True when both handles use the same memory.
  bool shares_memory_with(const Tensor& other) const noexcept { return data_ == other.data_; }

 private:
  [[noreturn]] void refuse_access(DType asked) const;

  Shape shape_;
  std::size_t numel_ = 0;
  bool view_ = false;
  DType dtype_ = DType::Float32;
  std::shared_ptr<void> data_;
};

}  // namespace optreg
