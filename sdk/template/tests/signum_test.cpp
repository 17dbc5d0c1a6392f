#include <gtest/gtest.h>

#include <optreg/conformance.hpp>
#include <optreg/registry.hpp>

TEST(Signum, PassesTheConformanceKit) {
  const auto results = optreg::run_conformance(SIGNUM_PLUGIN);
  ASSERT_FALSE(results.empty());
  for (const auto& r : results) {
    EXPECT_NE(r.status, optreg::ConformanceResult::Status::Failed) << r.optimizer << " " << r.check << ": " << r.detail;
  }
}

TEST(Signum, FollowsItsUpdateRule) {
  optreg::Registry registry;
  registry.load_file(SIGNUM_PLUGIN);
  optreg::Parameter w("w", optreg::Tensor({2}, {1.0F, -1.0F}));
  auto opt = registry.create("signum", {w}, {{"lr", 0.1}, {"momentum", 0.5}});
  w.accumulate_grad(optreg::Tensor({2}, {2.0F, 0.0F}));
  opt->step().clear_grad();  // m = [1, 0]: sign [1, 0]
  EXPECT_FLOAT_EQ(w.value()[0], 0.9F);
  EXPECT_FLOAT_EQ(w.value()[1], -1.0F);
  w.accumulate_grad(optreg::Tensor({2}, {-4.0F, 1.0F}));
  opt->step().clear_grad();  // m = [-1.5, 0.5]: sign [-1, 1]
  EXPECT_FLOAT_EQ(w.value()[0], 1.0F);
  EXPECT_FLOAT_EQ(w.value()[1], -1.1F);
}

TEST(Signum, RefusesAMomentumOfOne) {
  optreg::Registry registry;
  registry.load_file(SIGNUM_PLUGIN);
  optreg::Parameter w("w", optreg::Tensor({2}));
  EXPECT_THROW(registry.create("signum", {w}, {{"momentum", 1.0}}), optreg::OptionError);
}
