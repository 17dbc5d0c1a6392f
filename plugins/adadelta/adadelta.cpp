// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012) with L2 weight decay and
// maximize, with the update rule and rounding order of PyTorch's torch.optim.Adadelta
// (single-tensor path).
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, rho, eps, weight_decay;
  bool maximize;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1.0, sdk::at_least(0.0),
                                              "coefficient that scales the update before it is applied")),
    sdk::option(&Hyper::rho, sdk::float_option("rho", 0.9, sdk::closed(0.0, 1.0),
                                               "decay rate of the running averages of squared gradients and squared updates")),
    sdk::option(&Hyper::eps, sdk::float_option("eps", 1e-6, sdk::greater_than(0.0),
                                               "term added under both square roots for numerical stability")),
    sdk::weight_decay(&Hyper::weight_decay), sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("square_avg", sdk::non_negative(), "running average of squared gradients"),
    sdk::state_tensor("acc_delta", sdk::non_negative(), "running average of squared updates"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kSquareAvg = sdk::tensor_entry(kState, "square_avg");
constexpr auto kAccDelta = sdk::tensor_entry(kState, "acc_delta");

template <typename A>
struct Rule {
  A rho, one_minus_rho, eps, weight_decay, neg_lr;
  bool use_decay, maximize;

  explicit Rule(const Hyper& h)
      : rho(static_cast<A>(h.rho)), one_minus_rho(static_cast<A>(1.0 - h.rho)), eps(static_cast<A>(h.eps)),
        weight_decay(static_cast<A>(h.weight_decay)), neg_lr(static_cast<A>(-h.lr)), use_decay(h.weight_decay != 0.0),
        maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& square_avg, A& acc_delta) const {
    A grad = maximize ? -g : g;
    if (use_decay) grad = grad + weight_decay * p;
    const A sq = square_avg * rho + one_minus_rho * grad * grad;
    square_avg = sq;
    const A delta = std::sqrt(acc_delta + eps) / std::sqrt(sq + eps) * grad;
    acc_delta = acc_delta * rho + one_minus_rho * delta * delta;
    p = p + neg_lr * delta;
  }
};

class Adadelta final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) driver_.add(*slot.param, {&sdk::get(*slot.state, kSquareAvg), &sdk::get(*slot.state, kAccDelta)});
    driver_.run<Rule>(kHyper.decode(o));
  }

 private:
  sdk::Elementwise<2> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adadelta, "adadelta", "1.0.0", "Adadelta with L2 weight decay and maximize", kHyper.schema,
                          kState)
