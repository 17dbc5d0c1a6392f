// Signum: SGD on the sign of the momentum (Bernstein et al., "signSGD: Compressed
// Optimisation for Non-Convex Problems", ICML 2018), with decoupled weight decay.
//
//   m = momentum * m + (1 - momentum) * g
//   p = p - lr * (sign(m) + weight_decay * p)
#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

// The hyperparameters: name, default, allowed range, one line of meaning.
constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_option("momentum", 0.9, sdk::closed_open(0.0, 1.0), "decay of the gradient average whose sign is taken"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "decoupled weight decay"),
};

// The state kept per parameter, in the order it is created, with the values it may hold.
constexpr sdk::State kState[] = {
    sdk::state_tensor("momentum_buffer", sdk::not_nan(), "exponential average of the gradients"),
};

// The hyperparameters of one group, decoded once per step.
struct Hyper {
  float lr, momentum, one_minus_momentum, weight_decay;

  explicit Hyper(const optreg::Options& o)
      : lr(static_cast<float>(o.at("lr").as_float())),
        momentum(static_cast<float>(o.at("momentum").as_float())),
        one_minus_momentum(static_cast<float>(1.0 - o.at("momentum").as_float())),
        weight_decay(static_cast<float>(o.at("weight_decay").as_float())) {}
};

class Signum final : public sdk::TensorOptimizer<Hyper> {
 protected:
  void update(const Hyper& h, optreg::Tensor& value, const optreg::Tensor& grad, optreg::ParamState& state) override {
    float* p = value.data();
    const float* g = grad.data();
    float* m = state.tensor(0).data();  // momentum_buffer: created by the base from kState
    for (std::size_t i = 0; i < value.numel(); ++i) {
      m[i] = h.momentum * m[i] + h.one_minus_momentum * g[i];
      const float sign = static_cast<float>((m[i] > 0.0F) - (m[i] < 0.0F));
      p[i] = p[i] - h.lr * (sign + h.weight_decay * p[i]);
    }
  }
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Signum, "signum", "1.0.0", "SGD on the sign of the momentum, with decoupled weight decay",
                          kSchema, kState)
