#pragma once
// The conformance kit's checks of learning-rate schedulers (scheduler_checks.cpp).

#include <vector>

#include <optreg/registry.hpp>

#include "kit.hpp"

namespace optreg::kit {

/// Runs every check of the scheduler table on each of `schedulers` (the schedulers of the file
/// loaded into `registry`, in the file's order), then on the core's sequential over the
/// step-driven ones among them (when there is one), and reports each result to `report`.
void check_schedulers(const Registry& registry, const std::vector<SchedulerDescriptor>& schedulers, const TempDir& dir,
                      Reporter& report);

}  // namespace optreg::kit
