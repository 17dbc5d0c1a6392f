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
