// Adamax (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.1): Adam
// with the infinity norm in place of the second moment, with L2 weight decay and maximize, with the
// update rule and rounding order of PyTorch's torch.optim.Adamax (single-tensor path): eps is added
// to |gradient| before the maximum is taken.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
  bool maximize;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 2e-3),
    sdk::betas(&Hyper::betas, kBetas, "decay rates of the first moment estimate and of the infinity norm"),
    sdk::option(&Hyper::eps,
                sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to |gradient| for numerical stability")),
    sdk::weight_decay(&Hyper::weight_decay), sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_inf", sdk::non_negative(), "exponentially weighted infinity norm of the gradients"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpInf = sdk::tensor_entry(kState, "exp_inf");

/// One element's update; factor: -lr / (1 - beta1^t).
template <typename A>
struct Rule {
  A beta1, one_minus_beta1, beta2, eps, weight_decay;
  bool use_decay, maximize;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), one_minus_beta1(static_cast<A>(1.0 - h.betas[0])),
        beta2(static_cast<A>(h.betas[1])), eps(static_cast<A>(h.eps)), weight_decay(static_cast<A>(h.weight_decay)),
        use_decay(h.weight_decay != 0.0), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 1>& f, A& p, A g, A& m, A& u) const {
    A grad = maximize ? -g : g;
    if (use_decay) grad = grad + weight_decay * p;
    m = m * beta1 + one_minus_beta1 * grad;
    const A decayed = u * beta2, fresh = std::fabs(grad) + eps;
    u = (decayed >= fresh || decayed != decayed) ? decayed : fresh;  // a NaN in either wins, as in PyTorch
    p = p + f[0] * m / u;
  }
};

class Adamax final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const double clr = h.lr / (1.0 - std::pow(h.betas[0], static_cast<double>(sdk::count(s, kStep))));
      driver_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpInf)}, {-clr});
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<2, 1> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adamax, "adamax", "1.0.0", "Adamax (Adam with the infinity norm) with L2 weight decay and maximize",
                          kHyper.schema, kState)
