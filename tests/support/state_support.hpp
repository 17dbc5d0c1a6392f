#pragma once
// Bit-exact comparisons of tensors, values, state dicts and checkpoints, and a deterministic
// gradient, shared by the state dict, checkpoint file, resume and training tests.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/state_dict.hpp>

namespace optreg_test {

/// Same shape, dtype and bytes (NaNs compare by their bits, -0.0 differs from 0.0).
inline ::testing::AssertionResult same_bits(const optreg::Tensor& a, const optreg::Tensor& b) {
  if (a.shape() != b.shape()) {
    return ::testing::AssertionFailure() << "shapes differ: " << optreg::to_string(a.shape()) << " vs "
                                         << optreg::to_string(b.shape());
  }
  if (a.dtype() != b.dtype()) {
    return ::testing::AssertionFailure() << "dtypes differ: " << optreg::dtype_name(a.dtype()) << " vs "
                                         << optreg::dtype_name(b.dtype());
  }
  const std::size_t size = a.element_size();
  const auto* pa = static_cast<const unsigned char*>(a.raw());
  const auto* pb = static_cast<const unsigned char*>(b.raw());
  if (a.numel() != 0 && std::memcmp(pa, pb, a.nbytes()) != 0) {
    for (std::size_t i = 0; i < a.numel(); ++i) {
      if (std::memcmp(pa + i * size, pb + i * size, size) != 0) {
        return ::testing::AssertionFailure() << "element " << i << " differs: " << a.element(i) << " vs " << b.element(i);
      }
    }
  }
  return ::testing::AssertionSuccess();
}

inline bool same_double_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

/// Equal values, floats and list elements compared by their bits.
inline ::testing::AssertionResult same_bits(const optreg::Value& a, const optreg::Value& b) {
  const auto fail = [&] { return ::testing::AssertionFailure() << a.to_string() << " vs " << b.to_string(); };
  if (a.type() != b.type()) return fail() << " (types differ)";
  switch (a.type()) {
    case optreg::ValueType::Float:
      return same_double_bits(a.as_float(), b.as_float()) ? ::testing::AssertionSuccess() : fail();
    case optreg::ValueType::FloatList: {
      const auto& x = a.as_float_list();
      const auto& y = b.as_float_list();
      if (x.size() != y.size()) return fail();
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!same_double_bits(x[i], y[i])) return fail() << " (element " << i << ")";
      }
      return ::testing::AssertionSuccess();
    }
    default:
      return a == b ? ::testing::AssertionSuccess() : fail();
  }
}

inline ::testing::AssertionResult same_bits(const optreg::Options& a, const optreg::Options& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " entries";
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first) return ::testing::AssertionFailure() << "'" << i->first << "' vs '" << j->first << "'";
    if (auto r = same_bits(i->second, j->second); !r) return r << " (option '" << i->first << "')";
  }
  return ::testing::AssertionSuccess();
}

/// The same entries in the same order, tensors and scalars bit for bit, scalars of the same kind.
inline ::testing::AssertionResult same_bits(const optreg::ParamState& a, const optreg::ParamState& b) {
  if (a.num_tensors() != b.num_tensors() || a.num_scalars() != b.num_scalars()) {
    return ::testing::AssertionFailure() << "entry counts differ: " << a.num_tensors() << "+" << a.num_scalars()
                                         << " vs " << b.num_tensors() << "+" << b.num_scalars();
  }
  for (std::size_t i = 0; i < a.num_tensors(); ++i) {
    if (a.tensors()[i].first != b.tensors()[i].first) {
      return ::testing::AssertionFailure() << "tensor '" << a.tensors()[i].first << "' vs '" << b.tensors()[i].first << "'";
    }
    if (auto r = same_bits(a.tensor(i), b.tensor(i)); !r) return r << " (tensor '" << a.tensors()[i].first << "')";
  }
  for (std::size_t i = 0; i < a.num_scalars(); ++i) {
    const auto& [name, x] = a.scalars()[i];
    const auto& y = b.scalar(i);
    if (name != b.scalars()[i].first) {
      return ::testing::AssertionFailure() << "scalar '" << name << "' vs '" << b.scalars()[i].first << "'";
    }
    if (x.index() != y.index()) return ::testing::AssertionFailure() << "scalar '" << name << "' changed kind";
    const bool same = x.index() == 0 ? std::get<std::int64_t>(x) == std::get<std::int64_t>(y)
                                     : same_double_bits(std::get<double>(x), std::get<double>(y));
    if (!same) return ::testing::AssertionFailure() << "scalar '" << name << "' differs";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult same_bits(const optreg::StateDict& a, const optreg::StateDict& b) {
  if (a.optimizer != b.optimizer || a.plugin_version != b.plugin_version) {
    return ::testing::AssertionFailure() << a.optimizer << " " << a.plugin_version << " vs " << b.optimizer << " "
                                         << b.plugin_version;
  }
  if (a.param_groups.size() != b.param_groups.size()) return ::testing::AssertionFailure() << "group counts differ";
  for (std::size_t g = 0; g < a.param_groups.size(); ++g) {
    if (auto r = same_bits(a.param_groups[g].options, b.param_groups[g].options); !r) return r << " (group " << g << ")";
    if (a.param_groups[g].params != b.param_groups[g].params) {
      return ::testing::AssertionFailure() << "parameter ids of group " << g << " differ";
    }
  }
  if (a.state.size() != b.state.size()) return ::testing::AssertionFailure() << "state counts differ";
  for (auto i = a.state.begin(), j = b.state.begin(); i != a.state.end(); ++i, ++j) {
    if (i->first != j->first) return ::testing::AssertionFailure() << "state ids differ";
    if (auto r = same_bits(i->second, j->second); !r) return r << " (parameter id " << i->first << ")";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult same_bits(const optreg::Checkpoint& a, const optreg::Checkpoint& b) {
  if (auto r = same_bits(a.optimizer, b.optimizer); !r) return r;
  if (a.parameters.size() != b.parameters.size()) return ::testing::AssertionFailure() << "parameter counts differ";
  for (std::size_t i = 0; i < a.parameters.size(); ++i) {
    if (a.parameters[i].name != b.parameters[i].name) return ::testing::AssertionFailure() << "parameter names differ";
    if (auto r = same_bits(a.parameters[i].value, b.parameters[i].value); !r) {
      return r << " (parameter '" << a.parameters[i].name << "')";
    }
  }
  if (auto r = same_bits(a.metadata, b.metadata); !r) return r << " (metadata)";
  if (a.scheduler.has_value() != b.scheduler.has_value()) return ::testing::AssertionFailure() << "one has a scheduler state";
  if (a.scheduler) {
    if (a.scheduler->scheduler != b.scheduler->scheduler) return ::testing::AssertionFailure() << "schedulers differ";
    if (auto r = same_bits(a.scheduler->state, b.scheduler->state); !r) return r << " (scheduler state)";
  }
  if (a.sections.size() != b.sections.size()) return ::testing::AssertionFailure() << "section counts differ";
  for (std::size_t s = 0; s < a.sections.size(); ++s) {
    const optreg::CheckpointSection& x = a.sections[s];
    const optreg::CheckpointSection& y = b.sections[s];
    if (x.name != y.name || x.tensors.size() != y.tensors.size()) {
      return ::testing::AssertionFailure() << "section " << s << " differs: '" << x.name << "' and '" << y.name << "'";
    }
    if (auto r = same_bits(x.scalars, y.scalars); !r) return r << " (section '" << x.name << "')";
    for (std::size_t t = 0; t < x.tensors.size(); ++t) {
      if (x.tensors[t].name != y.tensors[t].name) return ::testing::AssertionFailure() << "section tensor names differ";
      if (auto r = same_bits(x.tensors[t].value, y.tensors[t].value); !r) {
        return r << " (section '" << x.name << "', tensor '" << x.tensors[t].name << "')";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

/// Everything an optimizer holds and steps with: its state dict (options and state) and its
/// parameters' values, deep-copied.
inline optreg::Checkpoint snapshot(const optreg::Optimizer& opt) {
  optreg::Checkpoint c;
  c.optimizer = opt.state_dict();
  for (const optreg::Parameter& p : opt.parameters()) c.parameters.push_back({p.name(), p.value().clone()});
  return c;
}

/// The gradient of sum(0.5 * (1 + i % 3) * x^2 + 0.25 * sin(3x + i)) at the parameter's
/// value: deterministic, and dependent on the trajectory.
inline optreg::Tensor gradient_at(const optreg::Tensor& x) {
  optreg::Tensor g(x.shape());
  for (std::size_t i = 0; i < x.numel(); ++i) {
    const double v = x[i];
    g[i] = static_cast<float>((1.0 + static_cast<double>(i % 3)) * v + 0.75 * std::cos(3.0 * v + static_cast<double>(i)));
  }
  return g;
}

/// Sets the gradient of every parameter except `frozen` (by name) from its value, and steps.
inline void step_with_gradients(optreg::Optimizer& opt, const std::string& frozen = "") {
  for (optreg::Parameter& p : opt.parameters()) {
    p.clear_grad();
    if (p.name() != frozen) p.accumulate_grad(gradient_at(p.value()));
  }
  opt.step();
}

}  // namespace optreg_test
