#include "schedule_plot.hpp"

#include <cmath>
#include <utility>
#include <vector>

#include <optreg/train/plot.hpp>

namespace optreg::cli {

namespace {

/// The stand-in: a schema of `lr` and `momentum`, and an update never run.
class ScheduleStandIn final : public Optimizer {
 protected:
  void update_group(const Options& /*options*/, const std::vector<Slot>& /*slots*/) override {
    throw UsageError("the schedule stand-in is not stepped");
  }
};

OptimizerInfo stand_in_info() {
  static const auto schema = std::make_shared<const Schema>(std::vector<Hyperparameter>{
      {"lr", ValueType::Float, Value(0.1), Range{0.0, HUGE_VAL, false, true}, 0, {}, "learning rate"},
      {"momentum", ValueType::Float, Value(0.9), Range{0.0, 1.0, false, false}, 0, {}, "momentum factor"},
  });
  return OptimizerInfo{"schedule_stand_in", "1.0.0", schema, std::make_shared<const StateSchema>()};
}

}  // namespace

OptimizerPtr schedule_stand_in(double lr, std::size_t groups) {
  OptimizerPtr opt(new ScheduleStandIn, OptimizerDeleter{});
  std::vector<ParamGroupSpec> specs(groups);
  for (std::size_t g = 0; g < groups; ++g) specs[g].params = {Parameter("p" + std::to_string(g), Tensor({1}))};
  opt->setup(stand_in_info(), {{"lr", lr}}, std::move(specs));
  return opt;
}

std::vector<double> plot_schedule(Optimizer& optimizer, Scheduler& scheduler, std::int64_t steps, const std::string& path,
                                  const std::string& title) {
  const std::string who = "scheduler '" + scheduler.name() + "'";
  if (scheduler.needs_metric()) {
    throw UsageError(who + " is driven by a metric (step(metric)): its schedule follows a run's metrics and cannot "
                     "be drawn without one");
  }
  if (steps < 1 || steps > kMaxPlotSteps) {
    throw UsageError("the schedule is drawn over 1 to " + std::to_string(kMaxPlotSteps) + " steps, not " +
                     std::to_string(steps));
  }
  train::check_plot_path(path);
  const std::size_t groups = optimizer.param_groups().size();
  std::vector<std::vector<double>> lrs(groups);
  const auto record = [&] {
    for (std::size_t g = 0; g < groups; ++g) lrs[g].push_back(optimizer.param_groups()[g].option("lr").as_float());
  };
  record();
  for (std::int64_t k = 1; k <= steps; ++k) {
    try {
      scheduler.step();
    } catch (const UsageError& e) {
      throw UsageError(who + " refused step " + std::to_string(k) + " of the " + std::to_string(steps) +
                       " to draw (draw fewer steps): " + e.what());
    }
    record();
  }
  train::LossPlot plot(path, train::PlotText{title, "step", "learning rate", false, "lr"});
  for (std::size_t g = 0; g < groups; ++g) {
    plot.begin_run(groups == 1 ? "lr" : "param group " + std::to_string(g));
    for (std::size_t k = 0; k < lrs[g].size(); ++k) plot.add(static_cast<std::int64_t>(k), lrs[g][k]);
  }
  plot.draw();
  std::vector<double> last;
  for (const auto& l : lrs) last.push_back(l.back());
  return last;
}

}  // namespace optreg::cli
