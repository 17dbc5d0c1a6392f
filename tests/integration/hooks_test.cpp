// Hooks (Optimizer::add_hook()): where they run, in which order, what their handles do, and
// what a throwing hook leaves behind.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/clip.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg::HookPoint;
using optreg::Optimizer;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;

namespace {

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

struct Fixture {
  Parameter w{"w", Tensor({3}, {1, 2, 3})};
  OptimizerPtr opt = registry().create("adam", {w}, {{"lr", 0.1}});
  void grad(float g) { w.set_grad(Tensor({3}, {g, g, g})); }
};

}  // namespace

TEST(Hooks, EachPointRunsItsHooksInTheOrderAddedOncePerEvent) {
  Fixture f;
  std::vector<std::string> log;
  const auto note = [&](const std::string& what) { return [&log, what](Optimizer&) { log.push_back(what); }; };
  optreg::HookHandle a = f.opt->add_hook(HookPoint::PreStep, note("pre a"));
  optreg::HookHandle b = f.opt->add_hook(HookPoint::PreStep, note("pre b"));
  optreg::HookHandle c = f.opt->add_hook(HookPoint::PostStep, note("post"));
  optreg::HookHandle d = f.opt->add_hook(HookPoint::PreStateDict, note("state_dict"));
  optreg::HookHandle e = f.opt->add_hook(HookPoint::PostLoad, note("load"));
  f.grad(1);
  f.opt->step();
  EXPECT_EQ(log, (std::vector<std::string>{"pre a", "pre b", "post"}));
  log.clear();
  const optreg::StateDict sd = f.opt->state_dict();
  f.opt->load_state_dict(sd);
  EXPECT_EQ(log, (std::vector<std::string>{"state_dict", "load"}));
  log.clear();
  // A closure step of an optimizer without closures: the hooks see the closure's gradients.
  f.opt->step([&] {
    log.push_back("closure");
    f.grad(2);
    return 0.0;
  });
  EXPECT_EQ(log, (std::vector<std::string>{"closure", "pre a", "pre b", "post"}));
}

TEST(Hooks, APreStepHookSeesAndMayChangeTheGradientsBeforeTheStep) {
  Fixture clipped, by_hand;
  optreg::HookHandle h = clipped.opt->add_hook(HookPoint::PreStep, [&](Optimizer& o) {
    const auto params = o.parameters();
    optreg::clip_grad_norm(params, 0.5);
  });
  clipped.grad(3);
  by_hand.grad(3);
  optreg::clip_grad_norm({by_hand.w}, 0.5);
  clipped.opt->step();
  by_hand.opt->step();
  EXPECT_EQ(clipped.w.value().to_vector(), by_hand.w.value().to_vector());
}

TEST(Hooks, AThrowingPreStepHookLeavesTheOptimizerUnchanged) {
  Fixture f;
  f.grad(1);
  f.opt->step();
  const optreg::StateDict before = f.opt->state_dict();
  const std::vector<float> value = f.w.value().to_vector();
  optreg::HookHandle h = f.opt->add_hook(HookPoint::PreStep, [](Optimizer&) { throw std::runtime_error("not now"); });
  int later = 0;
  optreg::HookHandle after = f.opt->add_hook(HookPoint::PreStep, [&](Optimizer&) { ++later; });
  f.grad(5);
  EXPECT_THROW(f.opt->step(), std::runtime_error);
  EXPECT_EQ(later, 0);
  EXPECT_EQ(f.w.value().to_vector(), value);
  EXPECT_EQ(std::get<std::int64_t>(f.opt->state(f.w).scalar("step")), 1);
  EXPECT_EQ(f.opt->state(f.w).tensor("exp_avg").to_vector(), before.state.at(0).tensor("exp_avg").to_vector());
  h.remove();
  f.opt->step();
  EXPECT_EQ(later, 1);
  EXPECT_EQ(std::get<std::int64_t>(f.opt->state(f.w).scalar("step")), 2);
}

TEST(Hooks, AHandleRemovesItsHookWhenDestroyedOrRemovedAndOutlivesTheOptimizer) {
  Fixture f;
  int calls = 0;
  {
    optreg::HookHandle scoped = f.opt->add_hook(HookPoint::PostStep, [&](Optimizer&) { ++calls; });
    EXPECT_TRUE(scoped.active());
    f.grad(1);
    f.opt->step();
  }
  f.opt->step();
  EXPECT_EQ(calls, 1);
  optreg::HookHandle moved;
  {
    optreg::HookHandle h = f.opt->add_hook(HookPoint::PostStep, [&](Optimizer&) { ++calls; });
    moved = std::move(h);
    EXPECT_FALSE(h.active());  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
  }
  f.opt->step();
  EXPECT_EQ(calls, 2);
  moved.remove();
  EXPECT_FALSE(moved.active());
  f.opt->step();
  EXPECT_EQ(calls, 2);
  // A handle whose optimizer is gone does nothing, and a new optimizer has no hooks of it.
  optreg::HookHandle orphan = f.opt->add_hook(HookPoint::PostStep, [&](Optimizer&) { ++calls; });
  f.opt.reset();
  Fixture g;
  g.grad(1);
  g.opt->step();
  EXPECT_EQ(calls, 2);
  orphan.remove();
}

TEST(Hooks, AHookMayRemoveItselfOrAddAnotherWhileItsPointRuns) {
  Fixture f;
  std::vector<std::string> log;
  optreg::HookHandle self;
  optreg::HookHandle added;
  self = f.opt->add_hook(HookPoint::PreStep, [&](Optimizer& o) {
    log.push_back("once");
    self.remove();
    added = o.add_hook(HookPoint::PreStep, [&](Optimizer&) { log.push_back("added"); });
  });
  optreg::HookHandle other = f.opt->add_hook(HookPoint::PreStep, [&](Optimizer&) { log.push_back("other"); });
  f.grad(1);
  f.opt->step();
  EXPECT_EQ(log, (std::vector<std::string>{"once", "other"}));
  f.opt->step();
  EXPECT_EQ(log, (std::vector<std::string>{"once", "other", "other", "added"}));
}

TEST(Hooks, CheckpointsRunTheStateDictAndLoadHooks) {
  Fixture f;
  int saves = 0;
  int loads = 0;
  optreg::HookHandle s = f.opt->add_hook(HookPoint::PreStateDict, [&](Optimizer&) { ++saves; });
  optreg::HookHandle l = f.opt->add_hook(HookPoint::PostLoad, [&](Optimizer&) { ++loads; });
  const std::string path = ::testing::TempDir() + "optreg_hooks.ckpt";
  optreg::save_optimizer(path, *f.opt);
  EXPECT_EQ(saves, 1);
  optreg::load_optimizer(path, *f.opt);
  EXPECT_EQ(loads, 1);
  // A refused load runs no post_load hook.
  OptimizerPtr other = registry().create("sgd", {Parameter("v", Tensor({3}))});
  optreg::save_optimizer(path, *other);
  EXPECT_THROW(optreg::load_optimizer(path, *f.opt), optreg::Error);
  EXPECT_EQ(loads, 1);
  std::remove(path.c_str());
}

TEST(Hooks, AnEmptyHookIsRefusedNamingThePoint) {
  Fixture f;
  EXPECT_EQ(optreg_test::message_of<optreg::UsageError>([&] { (void)f.opt->add_hook(HookPoint::PostLoad, nullptr); }),
            "add_hook(post_load) on optimizer 'adam' without a hook");
}

TEST(Hooks, AHookThatOwnsItsHandleDiesWithItsOptimizerWithoutDeadlock) {
  int calls = 0;
  {
    Fixture f;
    auto handle = std::make_shared<optreg::HookHandle>();
    *handle = f.opt->add_hook(HookPoint::PreStep, [handle, &calls](Optimizer&) {
      ++calls;
      handle->remove();  // a one-shot hook
    });
    // The optimizer goes first: destroying the hook destroys the last owner of its handle.
  }
  Fixture g;
  auto handle = std::make_shared<optreg::HookHandle>();
  *handle = g.opt->add_hook(HookPoint::PreStep, [handle, &calls](Optimizer&) {
    ++calls;
    handle->remove();
  });
  g.grad(1);
  g.opt->step();
  g.opt->step();
  EXPECT_EQ(calls, 1);
}

TEST(Hooks, APostLoadHookOfACheckpointLoadSeesTheLoadedValues) {
  Fixture f;
  f.grad(1);
  f.opt->step();
  const std::vector<float> saved = f.w.value().to_vector();
  const std::string path = ::testing::TempDir() + "optreg_hooks_values.ckpt";
  optreg::save_optimizer(path, *f.opt);
  f.opt->step();
  std::vector<float> seen;
  optreg::HookHandle h = f.opt->add_hook(HookPoint::PostLoad, [&](Optimizer& o) { seen = o.parameters()[0].value().to_vector(); });
  optreg::load_optimizer(path, *f.opt);
  EXPECT_EQ(seen, saved);
  std::remove(path.c_str());
}
