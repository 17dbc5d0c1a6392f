// optreg::torch: optreg optimizers in a libtorch training loop, against torch::optim.
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/torch.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

struct Net : ::torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", ::torch::nn::Linear(8, 16));
    fc2 = register_module("fc2", ::torch::nn::Linear(16, 3));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(::torch::relu(fc1(x))); }
  ::torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

std::shared_ptr<Net> make_net() {
  ::torch::manual_seed(0);
  return std::make_shared<Net>();
}

/// `steps` steps of `step_fn` on fixed batches (the same data for every run).
template <typename Zero, typename Step>
void train(Net& net, int steps, Zero zero, Step step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (int i = 0; i < steps; ++i) {
    const at::Tensor x = at::randn({16, 8}, gen);
    const at::Tensor y = at::randint(0, 3, {16}, gen);
    zero();
    ::torch::nn::functional::cross_entropy(net.forward(x), y).backward();
    step();
  }
}

void expect_close(Net& a, Net& b) {
  const auto pa = a.parameters();
  const auto pb = b.parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::allclose(pa[i], pb[i], 1e-5, 1e-6)) << "parameter " << i << ": largest difference "
                                                        << (pa[i] - pb[i]).abs().max().item<float>();
  }
}

class TorchOptimizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { optreg_test::in_tree_registry(); }
  static const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }
};

TEST_F(TorchOptimizer, AdamOverAModuleMatchesTorchOptimAdamOver50Steps) {
  auto ref = make_net();
  auto ours = make_net();
  ::torch::optim::Adam adam(ref->parameters(), ::torch::optim::AdamOptions(1e-2).weight_decay(1e-3));
  optreg::torch::Optimizer opt(registry(), "adam", ours->named_parameters(), {{"lr", 1e-2}, {"weight_decay", 1e-3}});
  train(*ref, 50, [&] { adam.zero_grad(); }, [&] { adam.step(); });
  train(*ours, 50, [&] { opt.zero_grad(); }, [&] { opt.step(); });
  expect_close(*ref, *ours);
  EXPECT_EQ(opt->parameters()[0].name(), "fc1.weight");
}

TEST_F(TorchOptimizer, ZeroingGradientsInPlaceGivesTheSameStepsAsMakingThemUndefined) {
  auto a = make_net();
  auto b = make_net();
  optreg::torch::Optimizer oa(registry(), "sgd", a->parameters(), {{"lr", 0.1}, {"momentum", 0.9}});
  optreg::torch::Optimizer ob(registry(), "sgd", b->parameters(), {{"lr", 0.1}, {"momentum", 0.9}});
  train(*a, 10, [&] { oa.zero_grad(true); }, [&] { oa.step(); });
  train(*b, 10, [&] { ob.zero_grad(false); }, [&] { ob.step(); });
  for (std::size_t i = 0; i < a->parameters().size(); ++i) EXPECT_TRUE(at::equal(a->parameters()[i], b->parameters()[i]));
}

TEST_F(TorchOptimizer, AParameterWithoutAGradientIsSkipped) {
  auto net = make_net();
  net->fc1->bias.set_requires_grad(false);
  const at::Tensor frozen = net->fc1->bias.clone();
  optreg::torch::Optimizer opt(registry(), "adam", net->named_parameters(), {{"lr", 0.1}});
  train(*net, 3, [&] { opt.zero_grad(); }, [&] { opt.step(); });
  EXPECT_TRUE(at::equal(net->fc1->bias, frozen));
  EXPECT_EQ(std::get<std::int64_t>(opt->state(opt->parameters()[1]).scalar("step")), 0);
  EXPECT_EQ(std::get<std::int64_t>(opt->state(opt->parameters()[0]).scalar("step")), 3);
}

TEST_F(TorchOptimizer, AParameterGivenNewMemoryIsSteppedThere) {
  at::Tensor p = at::ones({4}).set_requires_grad(true);
  optreg::torch::Optimizer opt(registry(), "sgd", std::vector<at::Tensor>{p}, {{"lr", 1.0}});
  {
    at::NoGradGuard no_grad;
    p.set_data(at::zeros({4}));
  }
  p.mutable_grad() = at::ones({4});
  opt.step();
  EXPECT_TRUE(at::equal(p.detach(), at::full({4}, -1.0F)));
}

TEST_F(TorchOptimizer, TheModelMayGoBeforeTheOptimizer) {
  auto net = make_net();
  optreg::torch::Optimizer opt(registry(), "adam", net->named_parameters(), {{"lr", 0.1}});
  train(*net, 1, [&] { opt.zero_grad(); }, [] {});
  net.reset();  // the optimizer's views keep the parameters' and gradients' storage alive
  opt.step();
  EXPECT_EQ(std::get<std::int64_t>(opt->state(opt->parameters()[0]).scalar("step")), 1);
}

TEST_F(TorchOptimizer, TensorsItCannotStepAreRefusedNamingThem) {
  const auto refused = [&](const at::Tensor& t, const std::string& part) {
    try {
      optreg::torch::Optimizer opt(registry(), "sgd", std::vector<at::Tensor>{at::ones({2}), t}, {{"lr", 0.1}});
      ADD_FAILURE() << "expected a UsageError about " << part;
    } catch (const optreg::UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("parameter 1 ('p1')"), std::string::npos) << what;
      EXPECT_NE(what.find(part), std::string::npos) << what;
    }
  };
  refused(at::ones({3, 4}).t(), "not contiguous");
  refused(at::ones({3}, at::kLong), "Long");
  refused(at::ones({3}).to_sparse(), "sparse");
  at::Tensor p = at::ones({3});
  optreg::torch::Optimizer opt(registry(), "sgd", std::vector<at::Tensor>{p}, {{"lr", 0.1}});
  p.mutable_grad() = at::ones({3}, at::kDouble);
  EXPECT_THROW(opt.step(), optreg::UsageError);
}

TEST_F(TorchOptimizer, BFloat16ParametersStepWithMasterWeights) {
  at::Tensor p = at::randn({32}).to(at::kBFloat16);
  at::Tensor ref = p.to(at::kFloat).clone();
  optreg::torch::Optimizer opt(registry(), "sgd", std::vector<at::Tensor>{p}, {{"lr", 0.01}, {"master_weights", true}});
  for (int i = 0; i < 5; ++i) {
    const at::Tensor g = at::randn({32}).to(at::kBFloat16);
    p.mutable_grad() = g;
    opt.step();
    ref -= 0.01F * g.to(at::kFloat);
  }
  EXPECT_TRUE(at::equal(p, ref.to(at::kBFloat16)));
}

TEST_F(TorchOptimizer, AConfigGroupsTheModulesParametersByName) {
  const optreg::OptimizerConfig config = optreg::parse_config(
      "optimizer:\n  name: adamw\n  lr: 0.01\nparam_groups:\n  - params: '*.bias'\n    weight_decay: 0.0\n");
  auto net = make_net();
  optreg::torch::Optimizer opt = optreg::torch::Optimizer::from_config(config, net->named_parameters(), registry());
  ASSERT_EQ(opt->param_groups().size(), 2U);
  for (const optreg::Parameter& p : opt->param_groups()[1].params()) EXPECT_NE(p.name().find("bias"), std::string::npos);
  train(*net, 3, [&] { opt.zero_grad(); }, [&] { opt.step(); });
}

TEST_F(TorchOptimizer, ACheckpointResumesBitExactly) {
  optreg_test::TempDir dir;
  const std::string path = dir.path() + "/run.ckpt";
  auto a = make_net();
  optreg::torch::Optimizer oa(registry(), "adam", a->named_parameters(), {{"lr", 0.01}});
  train(*a, 5, [&] { oa.zero_grad(); }, [&] { oa.step(); });
  optreg::save_optimizer(path, oa.get());
  auto b = make_net();
  optreg::torch::Optimizer ob(registry(), "adam", b->named_parameters(), {{"lr", 0.01}});
  optreg::load_optimizer(path, ob.get());
  // Both continue on the same batches.
  train(*a, 5, [&] { oa.zero_grad(); }, [&] { oa.step(); });
  train(*b, 5, [&] { ob.zero_grad(); }, [&] { ob.step(); });
  for (std::size_t i = 0; i < a->parameters().size(); ++i) EXPECT_TRUE(at::equal(a->parameters()[i], b->parameters()[i]));
}

}  // namespace
