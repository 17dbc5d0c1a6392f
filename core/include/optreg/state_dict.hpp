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

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <optreg/optimizer.hpp>
#include <optreg/tensor.hpp>
#include <optreg/value.hpp>

namespace optreg {

/// An optimizer's complete state. Its tensors are its own (state_dict() copies them).
struct StateDict {
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
struct NamedTensor {
  std::string name;
  Tensor value;
};

/// What a checkpoint file holds: the optimizer's state dict, optionally the values of its
/// parameters (in id order), and metadata of the run (step, seed, ...).
struct Checkpoint {
  StateDict optimizer;
  std::vector<NamedTensor> parameters;
  Options metadata;
};

}  // namespace optreg
