// A run resumed from a checkpoint with its scheduler continues the schedule, and the parameters,
// exactly as the run that never stopped; a checkpoint whose scheduler state does not fit is
// refused before anything changes.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

const char* kConfig =
    "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n"
    "scheduler:\n"
    "  name: sequential\n"
    "  schedulers: [{name: linear, start_factor: 0.1, total_iters: 4}, {name: cosine, T_max: 12, eta_min: 0.001}]\n"
    "  milestones: [4]\n"
    "clip: {max_norm: 0.5}\n";

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

/// A model, its optimizer and its scheduler, all from kConfig.
struct TrainingRun {
  std::vector<optreg::Parameter> params = {optreg::Parameter("w", optreg::Tensor({4})),
                                           optreg::Parameter("b", optreg::Tensor({2}))};
  optreg::OptimizerConfig config = optreg::parse_config(kConfig, "resume.yaml");
  optreg::OptimizerPtr opt;
  optreg::SchedulerPtr sched;

  TrainingRun() {
    for (auto& p : params) {
      for (std::size_t i = 0; i < p.value().numel(); ++i) p.value()[i] = 0.25F * static_cast<float>(i + 1);
    }
    opt = optreg::build_optimizer(config, params, registry());
    sched = optreg::build_scheduler(config, *opt, registry());
  }

  /// Steps with gradients of 0.5 |x - 3|^2 (clipped), then the scheduler.
  void steps(int n) {
    for (int k = 0; k < n; ++k) {
      for (auto& p : params) {
        optreg::Tensor g(p.value().shape());
        for (std::size_t i = 0; i < g.numel(); ++i) g[i] = p.value()[i] - 3.0F;
        p.set_grad(g);
      }
      optreg::apply_clip(config, params);
      opt->step();
      sched->step();
    }
  }
};

std::string temp_file(const std::string& name) {
  return (fs::temp_directory_path() / ("optreg-sched-" + std::to_string(::getpid()) + "-" + name)).string();
}

}  // namespace

TEST(SchedulerResume, ResumedRunContinuesTheScheduleAndTheParametersExactly) {
  const std::string file = temp_file("resume.ckpt");
  TrainingRun straight;
  straight.steps(20);

  TrainingRun first;
  first.steps(7);  // inside the cosine phase, past the milestone
  optreg::save_optimizer(file, *first.opt, *first.sched, {{"step", 7}});
  TrainingRun resumed;
  const optreg::Options meta = optreg::load_optimizer(file, *resumed.opt, *resumed.sched);
  EXPECT_EQ(meta.at("step").as_int(), 7);
  EXPECT_EQ(resumed.sched->state(), first.sched->state());
  resumed.steps(13);
  fs::remove(file);

  EXPECT_EQ(resumed.sched->last_step(), straight.sched->last_step());
  EXPECT_EQ(resumed.sched->last_lr(), straight.sched->last_lr());
  EXPECT_EQ(resumed.sched->state(), straight.sched->state());
  for (std::size_t k = 0; k < straight.params.size(); ++k) {
    for (std::size_t i = 0; i < straight.params[k].value().numel(); ++i) {
      EXPECT_EQ(resumed.params[k].value()[i], straight.params[k].value()[i]) << straight.params[k].name() << "[" << i << "]";
    }
  }
}

TEST(SchedulerResume, CheckpointWithoutOrWithAnotherSchedulerIsRefusedAndChangesNothing) {
  const std::string plain = temp_file("plain.ckpt");
  const std::string other = temp_file("other.ckpt");
  TrainingRun saved;
  saved.steps(3);
  optreg::save_optimizer(plain, *saved.opt);
  auto cosine = registry().create_scheduler("cosine", *saved.opt, {{"T_max", 5}});
  optreg::save_optimizer(other, *saved.opt, *cosine);

  TrainingRun live;
  live.steps(1);
  const optreg::Options before = live.sched->state();
  const float w0 = live.params[0].value()[0];
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { optreg::load_optimizer(plain, *live.opt, *live.sched); }),
            "checkpoint " + plain + ": it holds no scheduler state, but scheduler 'sequential' is to be resumed");
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { optreg::load_optimizer(other, *live.opt, *live.sched); }),
            "checkpoint " + other + ": its scheduler state is of scheduler 'cosine', but this scheduler is 'sequential'");
  EXPECT_EQ(live.sched->state(), before);
  EXPECT_EQ(live.params[0].value()[0], w0);
  EXPECT_FALSE(optreg::read_checkpoint(plain).scheduler.has_value());
  EXPECT_EQ(optreg::read_checkpoint(other).scheduler->scheduler, "cosine");
  fs::remove(plain);
  fs::remove(other);
}
