#include <optreg/tensor.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>
#include <type_traits>

#include <optreg/error.hpp>
#include <optreg/quantize.hpp>

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
      Tensor::kAlignment, (storage_bytes(dtype, n) + Tensor::kAlignment - 1) / Tensor::kAlignment * Tensor::kAlignment);
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
/// Quantizes the floats `x` (numel of them) into the codes and scales of the quantized tensor `t`.
void quantize_into(const float* x, Tensor& t) {
  const DynamicMap& map = dynamic_map(t.dtype());
  const std::size_t n = t.numel();
  for (std::size_t b = 0; b * kQuantBlock < n; ++b) {
    const std::size_t at = b * kQuantBlock;
    t.scales()[b] = quantize_block(x + at, std::min(kQuantBlock, n - at), map, t.codes() + at);
  }
}

/// The values of the quantized tensor `t`, as floats.
std::vector<float> dequantized(const Tensor& t) {
  std::vector<float> out(t.numel());
  const DynamicMap& map = dynamic_map(t.dtype());
  for (std::size_t b = 0; b * kQuantBlock < t.numel(); ++b) {
    const std::size_t at = b * kQuantBlock;
    dequantize_block(t.codes() + at, std::min(kQuantBlock, t.numel() - at), t.scales()[b], map, out.data() + at);
  }
  return out;
}

/// The dtype's size, or UsageError naming its code when it is not a dtype.
void check_dtype(DType dtype, const char* who) {
  if (dtype_size(dtype) == 0) {
    throw UsageError(std::string(who) + ": unknown dtype code " + std::to_string(static_cast<unsigned>(dtype)));
  }
}
}  // namespace

Tensor::Tensor() : Tensor(Shape{0}) {}

Tensor::Tensor(const Shape& shape, DType dtype)
    : shape_(shape), numel_(numel_of(shape)), dtype_(dtype), data_((check_dtype(dtype, "Tensor"), allocate(numel_, dtype))) {
  std::memset(data_.get(), 0, nbytes());  // +0 in every element dtype, scale 0 in a quantized one
  if (is_quantized(dtype)) std::memset(data_.get(), dynamic_map(dtype).nearest(0.0f), numel_);
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
  check_dtype(dtype, "Tensor::uninitialized");
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.dtype_ = dtype;
  t.data_ = allocate(t.numel_, dtype);
  if (is_quantized(dtype)) {  // the padding between codes and scales is zero, so that equal tensors have equal bytes
    std::memset(static_cast<std::byte*>(t.data_.get()) + t.numel_, 0, quant_scales_offset(t.numel_) - t.numel_);
  }
  return t;
}

Tensor Tensor::part_of(const Tensor& buffer, std::size_t offset, const Shape& shape) {
  Tensor t;
  if (is_quantized(buffer.dtype_)) {
    throw UsageError(std::string("a part of a ") + dtype_name(buffer.dtype_) +
                     " tensor cannot be taken: its blocks' scales lie after all its codes");
  }
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
  return view(data, dtype, shape, nullptr);
}

Tensor Tensor::view(void* data, DType dtype, const Shape& shape, std::shared_ptr<const void> owner) {
  if (data == nullptr) throw UsageError("Tensor::view needs memory, got a null pointer");
  check_dtype(dtype, "Tensor::view");
  if (is_quantized(dtype)) {
    throw UsageError(std::string("Tensor::view: a view holds elements of float32, float64, bfloat16 or float16, not ") +
                     dtype_name(dtype) + ", which is optimizer state only");
  }
  Tensor t;
  t.shape_ = shape;
  t.numel_ = numel_of(shape);
  t.view_ = true;
  t.dtype_ = dtype;
  if (owner) {
    t.data_ = std::shared_ptr<void>(std::const_pointer_cast<void>(std::move(owner)), data);  // shares the owner's count
  } else {
    t.data_ = std::shared_ptr<void>(data, [](void*) {});
  }
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

std::uint8_t* Tensor::codes() {
  return const_cast<std::uint8_t*>(static_cast<const Tensor&>(*this).codes());
}
const std::uint8_t* Tensor::codes() const {
  if (!is_quantized(dtype_)) {
    throw UsageError(std::string("a ") + dtype_name(dtype_) + " tensor of shape " + to_string(shape_) +
                     " has elements, not quantization codes");
  }
  return static_cast<const std::uint8_t*>(data_.get());
}
float* Tensor::scales() { return const_cast<float*>(static_cast<const Tensor&>(*this).scales()); }
const float* Tensor::scales() const {
  return reinterpret_cast<const float*>(codes() + quant_scales_offset(numel_));
}

double Tensor::element(std::size_t i) const noexcept {
  if (is_quantized(dtype_)) {
    const auto* codes = static_cast<const std::uint8_t*>(data_.get());
    const auto* scales = reinterpret_cast<const float*>(codes + quant_scales_offset(numel_));
    return dynamic_map(dtype_).values[codes[i]] * scales[i / kQuantBlock];
  }
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
  if (is_quantized(dtype_) || is_quantized(dtype)) {
    // Through float32: the values of a quantized tensor are floats, and quantization codes floats.
    const Tensor values = is_quantized(dtype_) ? Tensor(shape_, dequantized(*this)) : to(DType::Float32);
    if (!is_quantized(dtype)) return values.to(dtype);
    quantize_into(values.data(), t);
    return t;
  }
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
  if (is_quantized(dtype_)) {
    // Every block holds float(value) alone: its absmax is |value| and every code the map's 1
    // (or -1, which the signed map lacks: its nearest), or 0 for a zero value.
    const DynamicMap& map = dynamic_map(dtype_);
    const float v = static_cast<float>(value);
    float one[1] = {v};
    std::uint8_t code = 0;
    const float scale = quantize_block(one, 1, map, &code);
    std::memset(data_.get(), code, numel_);
    std::fill_n(scales(), quant_blocks(numel_), scale);
    return;
  }
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
