// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020) with L2
// weight decay, with the update rule and rounding order of PyTorch's torch.optim.RAdam
// (single-tensor path): while the variance of the adaptive rate is intractable (rho_t <= 5) the
// step is plain momentum SGD on the bias-corrected first moment; after that, the adaptive rate
// sqrt(1 - beta2^t) / (sqrt(v) + eps) is computed as a reciprocal times a factor, as PyTorch's
// `float / tensor` does.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(sdk::lr(&Hyper::lr, 1e-3), sdk::betas(&Hyper::betas, kBetas),
                                         sdk::eps(&Hyper::eps), sdk::weight_decay(&Hyper::weight_decay));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");

/// One element's update; factors: 1 - beta1^t, sqrt(1 - beta2^t), the rectification term, and
/// 1 once the variance is tractable (else 0: plain momentum).
template <typename A>
struct Rule {
  A beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, lr;
  bool use_decay;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), one_minus_beta1(static_cast<A>(1.0 - h.betas[0])),
        beta2(static_cast<A>(h.betas[1])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        eps(static_cast<A>(h.eps)), weight_decay(static_cast<A>(h.weight_decay)), lr(static_cast<A>(h.lr)),
        use_decay(h.weight_decay != 0.0) {}

  void operator()(const sdk::Factors<A, 4>& f, A& p, A g, A& m, A& v) const {
    A grad = g;
    if (use_decay) grad = grad + weight_decay * p;
    m = m * beta1 + one_minus_beta1 * grad;
    v = v * beta2 + one_minus_beta2 * grad * grad;
    const A scaled = m / f[0] * lr;
    if (f[3] != A(0)) {
      const A adaptive_lr = A(1) / (std::sqrt(v) + eps) * f[1];
      p = p - scaled * adaptive_lr * f[2];
    } else {
      p = p - scaled;
    }
  }
};

class Radam final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    const double rho_inf = 2.0 / (1.0 - h.betas[1]) - 1.0;
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const auto step = static_cast<double>(sdk::count(s, kStep));
      const double beta2_power = std::pow(h.betas[1], step);
      const double bias_correction2 = 1.0 - beta2_power;
      const double rho_t = rho_inf - 2.0 * step * beta2_power / bias_correction2;
      const bool rectified = rho_t > 5.0;
      const double rect = rectified ? std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                                ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                                    : 0.0;
      driver_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq)},
                  {1.0 - std::pow(h.betas[0], step), std::sqrt(bias_correction2), rect, rectified ? 1.0 : 0.0});
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<2, 4> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Radam, "radam", "1.0.0", "RAdam (rectified Adam) with L2 weight decay", kHyper.schema, kState)
