#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/quantize.hpp>
#include <optreg/tensor.hpp>

using optreg::Shape;
using optreg::Tensor;

TEST(Tensor, OwnedMemoryIsZeroFilledAnd64ByteAligned) {
  for (std::int64_t n : {1, 3, 17, 1000}) {
    Tensor t(Shape{n, 2});
    EXPECT_EQ(t.numel(), static_cast<std::size_t>(2 * n));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % Tensor::kAlignment, 0U);
    for (std::size_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t[i], 0.0F);
    EXPECT_FALSE(t.is_view());
  }
}

TEST(Tensor, ScalarShapeHasOneElement) {
  Tensor t(Shape{}, 2.5F);
  EXPECT_EQ(t.numel(), 1U);
  EXPECT_EQ(t.dim(), 0U);
  EXPECT_EQ(t[0], 2.5F);
}

TEST(Tensor, CopiesShareMemoryAndCloneDoesNot) {
  Tensor a(Shape{2, 2}, {1, 2, 3, 4});
  Tensor b = a;
  b[0] = 10;
  EXPECT_EQ(a[0], 10);
  EXPECT_TRUE(a.shares_memory_with(b));
  Tensor c = a.clone();
  c[1] = 20;
  EXPECT_EQ(a[1], 2);
  EXPECT_FALSE(c.shares_memory_with(a));
}

TEST(Tensor, ViewWritesThroughToCallerMemory) {
  std::vector<float> buffer = {1, 2, 3, 4, 5, 6};
  Tensor v = Tensor::view(buffer.data(), {2, 3});
  EXPECT_TRUE(v.is_view());
  EXPECT_EQ(v.data(), buffer.data());
  v[5] = 60;
  EXPECT_EQ(buffer[5], 60);
  Tensor owned = v.clone();
  EXPECT_FALSE(owned.is_view());
  owned[0] = -1;
  EXPECT_EQ(buffer[0], 1);
}

TEST(Tensor, AViewWithAnOwnerKeepsTheOwnerAliveWhileAnyHandleLives) {
  auto owner = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4});
  std::weak_ptr<std::vector<float>> watch = owner;
  Tensor v = Tensor::view(owner->data(), optreg::DType::Float32, {2, 2}, owner);
  owner.reset();
  ASSERT_FALSE(watch.expired());
  Tensor copy = v;
  Tensor part = Tensor::part_of(v, 2, {2});
  v = Tensor();
  copy = Tensor();
  ASSERT_FALSE(watch.expired());  // the part still refers to the memory
  part[0] = 30;
  EXPECT_EQ((*watch.lock())[2], 30);
  part = Tensor();
  EXPECT_TRUE(watch.expired());
}

TEST(Tensor, CopyFromRejectsAShapeMismatchNamingBothShapes) {
  Tensor a(Shape{2, 3});
  Tensor b(Shape{3, 2});
  try {
    a.copy_from(b);
    FAIL() << "expected UsageError";
  } catch (const optreg::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
}

TEST(Tensor, ValueCountMustMatchTheShape) {
  EXPECT_THROW(Tensor(Shape{2, 2}, {1, 2, 3}), optreg::UsageError);
}

TEST(Tensor, NegativeExtentIsRejected) { EXPECT_THROW(Tensor(Shape{2, -1}), optreg::UsageError); }

TEST(Tensor, ViewOfNullIsRejected) {
  EXPECT_THROW(Tensor::view(static_cast<float*>(nullptr), {1}), optreg::UsageError);
  EXPECT_THROW(Tensor::view(nullptr, optreg::DType::BFloat16, {1}), optreg::UsageError);
}

TEST(Tensor, PartOfSharesAndKeepsTheBufferAlive) {
  Tensor part;
  {
    Tensor buffer(Shape{10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    part = Tensor::part_of(buffer, 4, {2, 3});
    buffer[4] = 40;
  }
  EXPECT_EQ(part.shape(), (Shape{2, 3}));
  EXPECT_EQ(part.to_vector(), (std::vector<float>{40, 5, 6, 7, 8, 9}));
}

TEST(Tensor, PartOfRejectsAPartThatDoesNotFit) {
  Tensor buffer(Shape{10});
  EXPECT_THROW(Tensor::part_of(buffer, 8, {3}), optreg::UsageError);
  EXPECT_THROW(Tensor::part_of(buffer, 11, {0}), optreg::UsageError);
}

// ---- element types ----

using optreg::bfloat16;
using optreg::DType;
using optreg::float16;

TEST(TensorDType, OwnedTensorsAreFloat32UnlessAskedAndZeroFilledInTheirDType) {
  EXPECT_EQ(Tensor(Shape{3}).dtype(), DType::Float32);
  for (DType d : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    Tensor t(Shape{5, 3}, d);
    EXPECT_EQ(t.dtype(), d);
    EXPECT_EQ(t.element_size(), optreg::dtype_size(d));
    EXPECT_EQ(t.nbytes(), 15 * optreg::dtype_size(d));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw()) % Tensor::kAlignment, 0U);
    for (std::size_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.element(i), 0.0);
  }
}

TEST(TensorDType, TypedAccessOfAnotherDTypeIsRefusedNamingBoth) {
  Tensor t(Shape{2}, DType::BFloat16);
  try {
    (void)t.data();
    FAIL() << "float32 access to a bfloat16 tensor was allowed";
  } catch (const optreg::UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bfloat16 tensor"), std::string::npos) << m;
    EXPECT_NE(m.find("accessed as float32"), std::string::npos) << m;
  }
  EXPECT_THROW((void)t.data_as<float16>(), optreg::UsageError);
  EXPECT_THROW((void)t.data_as<double>(), optreg::UsageError);
  EXPECT_NO_THROW((void)t.data_as<bfloat16>());
  EXPECT_THROW((void)Tensor(Shape{1}, DType::Float64)[0], optreg::UsageError);
}

TEST(TensorDType, ViewsNameTheirDTypeAndShareTheCallersMemory) {
  double d[3] = {1.5, -2.0, 1e300};
  Tensor v = Tensor::view(d, {3});
  EXPECT_EQ(v.dtype(), DType::Float64);
  EXPECT_TRUE(v.is_view());
  EXPECT_EQ(v.data_as<double>(), d);
  EXPECT_EQ(v.element(2), 1e300);
  bfloat16 b[2] = {{0x3F80}, {0xC000}};  // 1, -2
  Tensor vb = Tensor::view(b, {2});
  EXPECT_EQ(vb.dtype(), DType::BFloat16);
  EXPECT_EQ(vb.to_vector(), (std::vector<float>{1.0F, -2.0F}));
  float16 h[1] = {{0x3C00}};  // 1
  EXPECT_EQ(Tensor::view(h, {1}).element(0), 1.0);
  std::uint16_t raw[2] = {0x3F80, 0x4000};
  Tensor vr = Tensor::view(raw, DType::BFloat16, {2});
  EXPECT_EQ(vr.to_vector(), (std::vector<float>{1.0F, 2.0F}));
}

TEST(TensorDType, CopyFromRefusesAnotherDTypeAndToConvertsRoundingToNearest) {
  Tensor f(Shape{3}, {1.0F, 1.00390625F, -3.0e38F});  // 1 + 2^-8 is a tie in bfloat16: to even (1)
  Tensor b(Shape{3}, DType::BFloat16);
  try {
    b.copy_from(f);
    FAIL() << "a float32 tensor was copied into a bfloat16 one";
  } catch (const optreg::UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("float32 tensor"), std::string::npos) << m;
    EXPECT_NE(m.find("bfloat16 tensor"), std::string::npos) << m;
  }
  const Tensor c = f.to(DType::BFloat16);
  EXPECT_EQ(c.dtype(), DType::BFloat16);
  EXPECT_EQ(c.data_as<bfloat16>()[0].bits, 0x3F80);
  EXPECT_EQ(c.data_as<bfloat16>()[1].bits, 0x3F80);
  EXPECT_EQ(c.data_as<bfloat16>()[2].bits, optreg::float_to_bf16(-3.0e38F));
  const Tensor h = f.to(DType::Float16);
  EXPECT_EQ(h.data_as<float16>()[2].bits, 0xFC00);  // -inf: past float16's range
  const Tensor d = f.to(DType::Float64);
  EXPECT_EQ(d.to_double_vector(), (std::vector<double>{1.0, 1.00390625, static_cast<double>(-3.0e38F)}));
  EXPECT_EQ(d.to(DType::Float32).to_vector(), f.to_vector());  // exact both ways
}

TEST(TensorDType, PartsKeepTheBufferDTypeAndOffsetByElements) {
  Tensor buf(Shape{8}, DType::Float16);
  buf.fill(2.0F);
  Tensor part = Tensor::part_of(buf, 3, {2});
  EXPECT_EQ(part.dtype(), DType::Float16);
  EXPECT_EQ(static_cast<const char*>(part.raw()) - static_cast<const char*>(buf.raw()), 6);
  part.fill(-1.0F);
  EXPECT_EQ(buf.to_vector(), (std::vector<float>{2, 2, 2, -1, -1, 2, 2, 2}));
  EXPECT_EQ(buf.clone().dtype(), DType::Float16);
}

// ------------------------------------------------------------------ quantized tensors

TEST(QuantizedTensor, HoldsCodesThenBlockScalesAndStartsAtZero) {
  for (const DType dtype : {DType::QInt8, DType::QUInt8}) {
    const Tensor t({1025}, dtype);  // three blocks, the last of one element
    EXPECT_EQ(t.element_size(), 1U);
    EXPECT_EQ(t.nbytes(), 1028U + 3 * sizeof(float));
    for (std::size_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.element(i), 0.0) << i;
    EXPECT_FALSE(std::signbit(t.element(0))) << "zero, not -0: the zero code, not code 0";
    EXPECT_EQ(static_cast<const void*>(t.scales()), static_cast<const void*>(t.codes() + 1028));
  }
  EXPECT_STREQ(optreg::dtype_name(DType::QInt8), "qint8");
  EXPECT_STREQ(optreg::dtype_name(DType::QUInt8), "quint8");
}

TEST(QuantizedTensor, ToQuantizesEachBlockWithItsAbsmaxAndReadsBackThroughTheMap) {
  std::vector<float> values(1300);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(std::sin(0.1 * static_cast<double>(i))) * (1.0F + static_cast<float>(i / 512));
  const Tensor x({1300}, values);
  const Tensor q = x.to(DType::QInt8);
  ASSERT_EQ(q.dtype(), DType::QInt8);
  const optreg::DynamicMap& map = optreg::dynamic_map(true);
  for (std::size_t b = 0; b < 3; ++b) {
    const std::size_t n = std::min<std::size_t>(512, 1300 - b * 512);
    std::vector<std::uint8_t> codes(n);
    const float absmax = optreg::quantize_block(values.data() + b * 512, n, map, codes.data());
    EXPECT_EQ(q.scales()[b], absmax) << "block " << b;
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(q.codes()[b * 512 + i], codes[i]) << b * 512 + i;
  }
  const Tensor back = q.to(DType::Float32);
  for (std::size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(back[i], map.values[q.codes()[i]] * q.scales()[i / 512]) << i;
    ASSERT_EQ(q.element(i), static_cast<double>(back[i])) << i;
    ASSERT_NEAR(back[i], values[i], 0.03 * q.scales()[i / 512]) << i;
  }
  // Between quantized dtypes, through the values; a clone and copy_from copy codes and scales.
  const Tensor u = x.to(DType::QUInt8);
  EXPECT_EQ(u.element(0), 0.0);
  ASSERT_LT(values[40], 0.0F);
  EXPECT_EQ(u.element(40), 0.0) << "the unsigned map stores a negative value as 0";
  Tensor c({1300}, DType::QInt8);
  c.copy_from(q);
  EXPECT_EQ(std::memcmp(c.raw(), q.raw(), q.nbytes()), 0);
  const Tensor d = q.clone();
  EXPECT_EQ(std::memcmp(d.raw(), q.raw(), q.nbytes()), 0);
}

TEST(QuantizedTensor, FillStoresTheValueInEveryBlock) {
  Tensor t({1000}, DType::QInt8);
  t.fill(0.25);
  for (std::size_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.element(i), 0.25) << i;
  // The signed map holds 1 but not -1: a negative value is its nearest, as Tensor::to() stores it.
  t.fill(-0.25);
  const double stored = Tensor({1}, {-0.25F}).to(DType::QInt8).element(0);
  EXPECT_NEAR(stored, -0.25, 0.25 * 0.01);
  for (std::size_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.element(i), stored) << i;
  t.fill(0.0);
  EXPECT_EQ(t.element(999), 0.0);
}

TEST(QuantizedTensor, IsNeitherAViewNorAPartNorTypedElements) {
  std::uint8_t memory[64] = {};
  EXPECT_THROW(Tensor::view(memory, DType::QInt8, {8}), optreg::UsageError);
  const Tensor t({1024}, DType::QUInt8);
  EXPECT_THROW(Tensor::part_of(t, 0, {512}), optreg::UsageError);
  EXPECT_THROW((void)t.data(), optreg::UsageError);
  const Tensor f({4});
  EXPECT_THROW((void)f.codes(), optreg::UsageError);
  EXPECT_THROW(Tensor({4}, static_cast<DType>(99)), optreg::UsageError);
}
