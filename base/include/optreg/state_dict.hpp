#pragma once
/// \file
/// optreg::StateDict: an optimizer's complete state as plain data, and optreg::Checkpoint,
/// a state dict together with parameter values and run metadata.
///
/// Layout (the same as PyTorch's and MegEngine's state dicts, typed):
///   optimizer, plugin_version   which optimizer produced it
///   param_groups                per group: every option and the parameter ids
///   state                       per parameter id: named tensors and exact scalars
/// Parameter ids are positions by first appearance across the groups.

#include <optreg/export.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <optreg/optimizer.hpp>
#include <optreg/tensor.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// An optimizer's complete state. Its tensors are its own (state_dict() copies them).
struct OPTREG_API StateDict {
  struct Group {
    /// Every option of the group.
    Options options;
    /// Ids of the group's parameters, in the group's order.
    std::vector<std::uint64_t> params;
  };

  std::string optimizer;
  std::string plugin_version;
  std::vector<Group> param_groups;
  /// Per parameter id.
  std::map<std::uint64_t, ParamState> state;
};

/// A tensor with a name (a parameter's value in a checkpoint).
struct OPTREG_API NamedTensor {
  std::string name;
  Tensor value;
};

/// A learning-rate scheduler's state (Scheduler::state()) with who produced it.
struct OPTREG_API SchedulerState {
  std::string scheduler;
  std::string plugin_version;
  Options state;
};

/// The state of something a host keeps beside the optimizer (a weight average, a gradient
/// accumulation), in a section of a checkpoint of its own: exact scalars and named tensors.
struct OPTREG_API CheckpointSection {
  /// What it is the state of ("average", "accumulate"); unique in a checkpoint.
  std::string name;
  Options scalars;
  std::vector<NamedTensor> tensors;
};

/// What a checkpoint file holds: the optimizer's state dict, optionally the values of its
/// parameters (in id order), metadata of the run (step, seed, ...), optionally the state of
/// the learning-rate scheduler that drives the optimizer, and the sections of what else the
/// host keeps (CheckpointComponent, <optreg/checkpoint.hpp>).
struct OPTREG_API Checkpoint {
  StateDict optimizer;
  std::vector<NamedTensor> parameters;
  Options metadata;
  std::optional<SchedulerState> scheduler;
  std::vector<CheckpointSection> sections;
};

}  // namespace optreg
