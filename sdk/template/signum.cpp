// Signum: SGD on the sign of the momentum (Bernstein et al., "signSGD: Compressed
// Optimisation for Non-Convex Problems", ICML 2018), with decoupled weight decay.
//
//   m = momentum * m + (1 - momentum) * g
//   p = p - lr * (sign(m) + weight_decay * p)
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

// The hyperparameters of one group, decoded from its options once per step.
struct Hyper {
  double lr, momentum, weight_decay;
};

// Each hyperparameter: the member it decodes into, its name, default, allowed range and one line
// of meaning. kHyper.schema is what OPTREG_REGISTER_OPTIMIZER takes.
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3),
    sdk::option(&Hyper::momentum, sdk::float_option("momentum", 0.9, sdk::closed_open(0.0, 1.0),
                                                    "decay of the gradient average whose sign is taken")),
    sdk::weight_decay(&Hyper::weight_decay, 0.0, "decoupled weight decay"));

// The state kept per parameter, in the order it is created, with the values it may hold; the
// base creates it (zeros shaped like the parameter) when a group is added.
constexpr sdk::State kState[] = {
    sdk::state_tensor("momentum_buffer", sdk::not_nan(), "exponential average of the gradients"),
};
constexpr auto kMomentumBuffer = sdk::tensor_entry(kState, "momentum_buffer");

// The update of one element, written once for the arithmetic type A: float for float32, bfloat16
// and float16 parameters, double for float64 ones.
template <typename A>
struct Rule {
  A lr, momentum, one_minus_momentum, weight_decay;

  explicit Rule(const Hyper& h)
      : lr(static_cast<A>(h.lr)), momentum(static_cast<A>(h.momentum)),
        one_minus_momentum(static_cast<A>(1.0 - h.momentum)), weight_decay(static_cast<A>(h.weight_decay)) {}

  void operator()(const sdk::Factors<A, 0>& /*factors*/, A& p, A g, A& m) const {
    m = momentum * m + one_minus_momentum * g;
    const A sign = static_cast<A>((m > A(0)) - (m < A(0)));
    p = p - lr * (sign + weight_decay * p);
  }
};

class Signum final : public optreg::Optimizer {
 public:
  // The rule is elementwise, so it steps parameters of every dtype.
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void update_group(const optreg::Options& options, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(options);
    driver_.clear();
    for (const Slot& slot : slots) driver_.add(*slot.param, {&sdk::get(*slot.state, kMomentumBuffer)});
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<1> driver_;  // one state tensor, no per-tensor factors
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Signum, "signum", "1.0.0", "SGD on the sign of the momentum, with decoupled weight decay",
                          kHyper.schema, kState)
