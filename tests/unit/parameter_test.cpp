#include <cmath>
#include <gtest/gtest.h>

#include <optreg/clip.hpp>
#include <optreg/error.hpp>
#include <optreg/parameter.hpp>

using optreg::Parameter;
using optreg::Tensor;

TEST(Parameter, StartsWithoutGradient) {
  Parameter p("w", Tensor({3}));
  EXPECT_EQ(p.name(), "w");
  EXPECT_FALSE(p.has_grad());
  EXPECT_THROW(p.grad(), optreg::UsageError);
}

TEST(Parameter, GradientsAccumulateUntilCleared) {
  Parameter p("w", Tensor({2}));
  p.accumulate_grad(Tensor({2}, {1, 2}));
  p.accumulate_grad(Tensor({2}, {10, 20}));
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{11, 22}));
  p.clear_grad();
  EXPECT_FALSE(p.has_grad());
  p.accumulate_grad(Tensor({2}, {5, 6}));
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{5, 6}));
}

TEST(Parameter, AccumulateCopiesTheGivenGradient) {
  Parameter p("w", Tensor({2}));
  Tensor g({2}, {1, 2});
  p.accumulate_grad(g);
  p.accumulate_grad(g);
  EXPECT_EQ(g.to_vector(), (std::vector<float>{1, 2}));
}

TEST(Parameter, ClearedGradientBufferIsReused) {
  Parameter p("w", Tensor({4}));
  p.accumulate_grad(Tensor({4}, 1.0F));
  const float* buffer = p.grad().data();
  p.clear_grad();
  p.accumulate_grad(Tensor({4}, 2.0F));
  EXPECT_EQ(p.grad().data(), buffer);
}

TEST(Parameter, SetGradUsesTheCallersTensorWithoutCopy) {
  std::vector<float> mem = {1, 2, 3};
  Parameter p("w", Tensor({3}));
  p.set_grad(Tensor::view(mem.data(), {3}));
  EXPECT_EQ(p.grad().data(), mem.data());
  p.clear_grad();
  p.accumulate_grad(Tensor({3}, 7.0F));  // must not write into the caller's buffer
  EXPECT_EQ(mem, (std::vector<float>{1, 2, 3}));
}

TEST(Parameter, GradientShapeMustMatchNamingTheParameter) {
  Parameter p("layer.weight", Tensor({2, 3}));
  try {
    p.accumulate_grad(Tensor({3, 2}));
    FAIL() << "expected UsageError";
  } catch (const optreg::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.set_grad(Tensor({6})), optreg::UsageError);
}

TEST(Parameter, CopiesAreTheSameParameter) {
  Parameter a("w", Tensor({1}));
  Parameter b = a;
  Parameter c("w", Tensor({1}));
  EXPECT_TRUE(a.same_as(b));
  EXPECT_FALSE(a.same_as(c));
  b.accumulate_grad(Tensor({1}, 3.0F));
  EXPECT_TRUE(a.has_grad());
}

TEST(Parameter, AccumulatingIntoAGradientOfAnotherShapeThanTheValueIsRefused) {
  Parameter p("w", Tensor({4096}));
  p.accumulate_grad(Tensor({4096}, 1.0F));
  p.value() = Tensor({2});
  try {
    p.accumulate_grad(Tensor({2}, 1.0F));  // would read 4096 floats of a 2-float tensor
    ADD_FAILURE() << "no error";
  } catch (const optreg::UsageError& e) {
    EXPECT_STREQ(e.what(), "parameter 'w': its gradient has shape [4096], but its value has shape [2]");
  }
  p.clear_grad();
  p.accumulate_grad(Tensor({2}, {1, 2}));  // a fresh buffer of the value's shape
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{1, 2}));
}

TEST(Parameter, ClippingRefusesAGradientReplacedByAnotherShapeBeforeChangingAny) {
  Parameter a("a", Tensor({2}));
  Parameter b("b", Tensor({3}));
  a.set_grad(Tensor({2}, {30, 40}));
  b.set_grad(Tensor({3}, 1.0F));
  b.grad() = Tensor({1}, {5});
  try {
    optreg::clip_grad_norm({a, b}, 1.0);
    ADD_FAILURE() << "no error";
  } catch (const optreg::UsageError& e) {
    EXPECT_STREQ(e.what(), "clip_grad_norm: parameter 'b' (position 1): its gradient has shape [1], but its value has shape [3]");
  }
  EXPECT_THROW(optreg::clip_grad_value({a, b}, 1.0), optreg::UsageError);
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{30, 40}));
}

TEST(Parameter, GradientDTypeMustBeTheValuesNamingBoth) {
  optreg::Parameter p("w", optreg::Tensor(optreg::Shape{2}, optreg::DType::BFloat16));
  try {
    p.accumulate_grad(optreg::Tensor(optreg::Shape{2}, optreg::DType::Float16));
    FAIL() << "a float16 gradient was taken by a bfloat16 parameter";
  } catch (const optreg::UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("float16 gradient"), std::string::npos) << m;
    EXPECT_NE(m.find("'w', which is bfloat16"), std::string::npos) << m;
  }
  EXPECT_THROW(p.set_grad(optreg::Tensor(optreg::Shape{2})), optreg::UsageError);
  EXPECT_FALSE(p.has_grad());
}

TEST(Parameter, HalfPrecisionGradientsAccumulateInFloat32RoundedToNearest) {
  optreg::Parameter p("w", optreg::Tensor(optreg::Shape{2}, optreg::DType::BFloat16));
  optreg::Tensor g(optreg::Shape{2}, optreg::DType::BFloat16);
  g.fill(1.0F);
  p.accumulate_grad(g);
  optreg::Tensor small(optreg::Shape{2}, optreg::DType::BFloat16);
  small.fill(0.00390625F);  // 2^-8: 1 + 2^-8 is a tie in bfloat16, rounded to even (1)
  p.accumulate_grad(small);
  EXPECT_EQ(p.grad().dtype(), optreg::DType::BFloat16);
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{1.0F, 1.0F}));
  p.accumulate_grad(g);
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{2.0F, 2.0F}));

  optreg::Parameter q("v", optreg::Tensor(optreg::Shape{1}, optreg::DType::Float64));
  optreg::Tensor a(optreg::Shape{1}, optreg::DType::Float64);
  a.data_as<double>()[0] = 1.0;
  optreg::Tensor b(optreg::Shape{1}, optreg::DType::Float64);
  b.data_as<double>()[0] = 1e-12;  // lost in float32, kept in float64
  q.accumulate_grad(a);
  q.accumulate_grad(b);
  EXPECT_EQ(q.grad().data_as<double>()[0], 1.0 + 1e-12);
}

TEST(Parameter, ClippingWorksInEachGradientsDType) {
  using optreg::DType;
  optreg::Parameter d("d", optreg::Tensor(optreg::Shape{2}, DType::Float64));
  optreg::Tensor gd(optreg::Shape{2}, DType::Float64);
  gd.data_as<double>()[0] = 3.0;
  gd.data_as<double>()[1] = 4.0 + 1e-12;  // kept by a float64 norm
  d.set_grad(gd);
  const double norm = optreg::clip_grad_norm({d}, 1.0);
  EXPECT_EQ(norm, std::sqrt(9.0 + (4.0 + 1e-12) * (4.0 + 1e-12)));
  EXPECT_DOUBLE_EQ(d.grad().data_as<double>()[0], 3.0 / (norm + 1e-6));

  optreg::Parameter b("b", optreg::Tensor(optreg::Shape{2}, DType::BFloat16));
  optreg::Tensor gb(optreg::Shape{2}, DType::BFloat16);
  gb.fill(3.0F);
  b.set_grad(gb);
  optreg::clip_grad_value({b}, 1.5);
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{1.5F, 1.5F}));
  EXPECT_EQ(b.grad().dtype(), DType::BFloat16);
  const double nb = optreg::clip_grad_norm({b}, 0.1);
  EXPECT_EQ(nb, static_cast<double>(static_cast<float>(std::sqrt(4.5))));
  for (float x : b.grad().to_vector()) EXPECT_NEAR(x, 0.1 / std::sqrt(2.0), 0.1 / std::sqrt(2.0) / 128);
}
