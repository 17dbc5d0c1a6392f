// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023, Algorithm 2):
// the update is the sign of an interpolation between the momentum and the gradient, so every
// element moves by exactly lr; the weight decay is decoupled (the parameter is scaled by
// 1 - lr * weight_decay first), and the momentum is updated after the step with its own rate.
// One pass over the elements of all the group's tensors, split across threads.
#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.99};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-4, sdk::at_least(0.0), "learning rate: the size of every element's step"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed(0.0, 1.0),
                           "interpolation weight of the momentum in the update, and decay rate of the momentum"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0),
                      "decoupled weight decay: the parameter is scaled by 1 - lr * weight_decay"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_tensor("exp_avg", sdk::not_nan(), "momentum: running average of the gradients"),
};

/// The group's constants, as float32.
struct Constants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, neg_lr, decay;
  bool maximize;
};

/// One range of tensors that lie back to back in every array.
struct Tensors {
  float* p;
  const float* g;
  float* m;
  std::size_t n;  // elements

  bool continued_by(const Tensors& t) const noexcept {
    return sdk::follows(p, n, t.p) && sdk::follows(g, n, t.g) && sdk::follows(m, n, t.m);
  }
};

// Constants are copied to locals so that the stores through the tensors cannot alias them.
OPTREG_KERNEL void lion_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict m = t.m;
  const float beta1 = c.beta1, one_minus_beta1 = c.one_minus_beta1, beta2 = c.beta2;
  const float one_minus_beta2 = c.one_minus_beta2, neg_lr = c.neg_lr, decay = c.decay;
  const bool maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    const float grad = maximize ? -g[i] : g[i];
    const float mi = m[i];
    const float mix = mi * beta1 + one_minus_beta1 * grad;
    const float sign = static_cast<float>(mix > 0.0F) - static_cast<float>(mix < 0.0F);
    p[i] = p[i] * decay + neg_lr * sign;
    m[i] = mi * beta2 + one_minus_beta2 * grad;
  }
}

class Lion final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const Constants c{static_cast<float>(betas[0]),
                      static_cast<float>(1.0 - betas[0]),
                      static_cast<float>(betas[1]),
                      static_cast<float>(1.0 - betas[1]),
                      static_cast<float>(-lr),
                      static_cast<float>(1.0 - lr * o.at("weight_decay").as_float()),
                      o.at("maximize").as_bool()};
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    for (const Slot& slot : slots) {
      const Tensors t{slot.param->value().data(), slot.param->grad().data(), slot.state->tensor(0).data(),
                      slot.param->value().numel()};
      sdk::append_range(tensors_, t);  // one range over tensors that lie back to back
    }
    ranges_.run(
        tensors_.size(), [&](std::size_t i) { return tensors_[i].n; },
        [&](std::size_t i, std::size_t begin, std::size_t end) { lion_kernel(c, tensors_[i], begin, end); });
  }

 private:
  std::vector<Tensors> tensors_;  // the ranges of one step, reused by every step
  sdk::ElementRanges ranges_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lion, "lion", "1.0.0",
                          "Lion: sign of interpolated momentum, with decoupled weight decay and maximize", kSchema,
                          kState)
