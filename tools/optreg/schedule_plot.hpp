#pragma once
/// \file
/// Drawing a learning-rate schedule before training: `optreg show SCHEDULER --plot FILE` and
/// `optreg check CONFIG --plot-lr FILE`.

#include <cstdint>
#include <string>

#include <optreg/config.hpp>
#include <optreg/registry.hpp>

namespace optreg::cli {

/// The most steps a schedule is drawn over.
inline constexpr std::int64_t kMaxPlotSteps = 10'000'000;

/// Steps `scheduler` (bound to `optimizer`, which is never stepped) `steps` times and draws
/// every param group's lr against the step (0: after setup, 1 to `steps`: after each of the
/// scheduler's steps) to `path` (.svg or .png), one line per group, with its data beside it
/// (PATH.dat, PATH.gp). Throws UsageError for a metric-driven scheduler, for `steps` outside
/// [1, kMaxPlotSteps], or when the scheduler refuses a step (a cycle that ends), naming the
/// step; Error when the plot cannot be drawn. Returns every group's lr at the last step.
std::vector<double> plot_schedule(Optimizer& optimizer, Scheduler& scheduler, std::int64_t steps, const std::string& path,
                                  const std::string& title);

/// An optimizer to draw a scheduler over when none is given: `groups` param groups of one
/// parameter each, at `lr`, with a float `momentum` of 0.9 (which onecycle and cyclic cycle).
/// It is never stepped.
OptimizerPtr schedule_stand_in(double lr, std::size_t groups = 1);

}  // namespace optreg::cli
