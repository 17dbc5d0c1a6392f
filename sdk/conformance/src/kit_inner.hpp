#pragma once
// The optimizer the kit wraps a wrapper around (abi::kOptimizerWrapper: lookahead), so that a
// file of wrappers alone can be checked and no other plugin's faults show up as its: momentum
// descent over every parameter dtype and every state dtype the core keeps, computed in the
// parameter's arithmetic dtype. Internal to the kit; the kit's resume process makes the same.

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/registry.hpp>

namespace optreg::kit {

class KitInner final : public Optimizer {
 protected:
  void update_group(const Options& o, const std::vector<Slot>& slots) override {
    const double lr = o.at("lr").as_float();
    const double momentum = o.at("momentum").as_float();
    for (const Slot& slot : slots) {
      Tensor& value = slot.param->value();
      Tensor& buffer = slot.state->tensor("momentum_buffer");
      const DType arith = state_dtype_of(value.dtype());
      Tensor p = value.to(arith);
      const Tensor g = slot.param->grad().to(arith);
      Tensor b = buffer.to(arith);
      if (arith == DType::Float64) {
        descend(p.data_as<double>(), g.data_as<double>(), b.data_as<double>(), p.numel(), lr, momentum);
      } else {
        descend(p.data(), g.data(), b.data(), p.numel(), lr, momentum);
      }
      value.copy_from(p.to(value.dtype()));
      buffer.copy_from(b.to(buffer.dtype()));
    }
  }

 private:
  template <typename A>
  static void descend(A* p, const A* g, A* b, std::size_t n, double lr, double momentum) {
    const A m = static_cast<A>(momentum);
    const A step = static_cast<A>(lr);
    for (std::size_t i = 0; i < n; ++i) {
      b[i] = m * b[i] + g[i];
      p[i] = p[i] - step * b[i];
    }
  }
};

/// The kit's inner optimizer, set up without groups.
inline OptimizerPtr make_kit_inner() {
  std::vector<Hyperparameter> options{
      {"lr", ValueType::Float, Value(0.01), Range{0.0, HUGE_VAL, false, true}, 0, {}, "learning rate"},
      {"momentum", ValueType::Float, Value(0.9), Range{0.0, 1.0, false, false}, 0, {}, "momentum factor"},
  };
  for (Hyperparameter& h : precision_options()) options.push_back(std::move(h));
  StateSchema state{{"momentum_buffer", StateKind::Tensor, false, false, "running sum of the gradients", std::nullopt}};
  for (StateEntry& e : precision_state()) state.push_back(std::move(e));
  OptimizerInfo info{"conformance_inner", "1.0.0", std::make_shared<const Schema>(std::move(options)),
                     std::make_shared<const StateSchema>(std::move(state))};
  info.param_dtypes = kAllDTypes;
  info.state_dtypes = abi::kStateBFloat16 | abi::kStateInt8;
  OptimizerPtr inner(new KitInner, OptimizerDeleter{});
  inner->setup(std::move(info), {}, {});
  return inner;
}

/// The optimizer `name` of `registry` over `groups` at `options`: as Registry::create() makes
/// it, or for a wrapper, the wrapper around the kit's inner optimizer, `options` applying to
/// every group (they may set the wrapper's options and the inner one's `lr` and `momentum`).
inline OptimizerPtr make_subject(const Registry& registry, const std::string& name, std::vector<ParamGroupSpec> groups,
                                 const Options& options) {
  const auto d = registry.find(name);
  if (!d || (d->flags & abi::kOptimizerWrapper) == 0) return registry.create(name, std::move(groups), options);
  OptimizerPtr wrapped = make_wrapped(registry.create(name, std::vector<ParamGroupSpec>{}), make_kit_inner());
  for (ParamGroupSpec& g : groups) {
    Options o = options;
    for (const auto& [key, value] : g.options) o[key] = value;
    wrapped->add_param_group(std::move(g.params), o);
  }
  return wrapped;
}

}  // namespace optreg::kit
