// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023, Algorithm 2):
// the update is the sign of an interpolation between the momentum and the gradient, so every
// element moves by exactly lr; the weight decay is decoupled (the parameter is scaled by
// 1 - lr * weight_decay first), and the momentum is updated after the step with its own rate.
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double weight_decay;
  bool maximize;
};

constexpr double kBetas[] = {0.9, 0.99};
constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1e-4, sdk::at_least(0.0), "learning rate: the size of every element's step")),
    sdk::option(&Hyper::betas,
                sdk::float_list_option("betas", kBetas, sdk::closed(0.0, 1.0),
                                       "interpolation weight of the momentum in the update, and decay rate of the momentum")),
    sdk::weight_decay(&Hyper::weight_decay, 0.0, "decoupled weight decay: the parameter is scaled by 1 - lr * weight_decay"),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_tensor("exp_avg", sdk::not_nan(), "momentum: running average of the gradients"),
};
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");

template <typename A>
struct Rule {
  A beta1, one_minus_beta1, beta2, one_minus_beta2, neg_lr, decay;
  bool maximize;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), one_minus_beta1(static_cast<A>(1.0 - h.betas[0])),
        beta2(static_cast<A>(h.betas[1])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        neg_lr(static_cast<A>(-h.lr)), decay(static_cast<A>(1.0 - h.lr * h.weight_decay)), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& m) const {
    const A grad = maximize ? -g : g;
    const A mix = m * beta1 + one_minus_beta1 * grad;
    const A sign = static_cast<A>(mix > A(0)) - static_cast<A>(mix < A(0));
    p = p * decay + neg_lr * sign;
    m = m * beta2 + one_minus_beta2 * grad;
  }
};

class Lion final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    driver_.clear();
    for (const Slot& slot : slots) driver_.add(*slot.param, {&sdk::get(*slot.state, kExpAvg)});
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<1> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lion, "lion", "1.0.0",
                          "Lion: sign of interpolated momentum, with decoupled weight decay and maximize", kHyper.schema,
                          kState)
