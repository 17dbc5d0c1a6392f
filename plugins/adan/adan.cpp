// Adan (Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
// Models", 2022; TPAMI 2024), Algorithm 1 with the decay rates of its reference implementation:
// with diff = g - g_prev (zero at the first step),
//   m = beta1 m + (1 - beta1) g;  d = beta2 d + (1 - beta2) diff;
//   n = beta3 n + (1 - beta3) (g + beta2 diff)^2;
//   u = (m / (1 - beta1^t) + beta2 d / (1 - beta2^t)) / (sqrt(n) / sqrt(1 - beta3^t) + eps);
//   p = (p - lr u) / (1 + lr weight_decay)   (the proximal form; no_prox: p (1 - lr wd) - lr u)
// and maximize.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 3> betas;
  double eps, weight_decay;
  bool no_prox, maximize;
};

constexpr double kBetas[] = {0.98, 0.92, 0.99};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3),
    sdk::option(&Hyper::betas, sdk::float_list_option("betas", kBetas, sdk::closed_open(0.0, 1.0),
                                                      "decay rates of the gradient's average, of the gradient "
                                                      "difference's average and of the second moment")),
    sdk::eps(&Hyper::eps),
    sdk::weight_decay(&Hyper::weight_decay, 0.0,
                      "weight decay: the parameter is divided by 1 + lr * weight_decay after the step (the proximal "
                      "form), or scaled by 1 - lr * weight_decay before it (no_prox)"),
    sdk::option(&Hyper::no_prox, sdk::bool_option("no_prox", false,
                                                  "decay the parameter before the step (AdamW's form) instead of the "
                                                  "proximal division after it")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "running average of the gradients"),
    sdk::state_tensor("exp_avg_diff", sdk::not_nan(), "running average of the differences of successive gradients"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "running average of the squared extrapolated gradients"),
    sdk::state_tensor("pre_grad", sdk::not_nan(), "the gradient of the previous update"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgDiff = sdk::tensor_entry(kState, "exp_avg_diff");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");
constexpr auto kPreGrad = sdk::tensor_entry(kState, "pre_grad");

/// One element's update; factors: 1 - beta1^t, 1 - beta2^t, sqrt(1 - beta3^t), and 1 at the
/// first step (the previous gradient is then the current one: no difference).
template <typename A>
struct Rule {
  A beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, one_minus_beta3, eps, neg_lr, decay, prox;
  bool no_prox, maximize;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), one_minus_beta1(static_cast<A>(1.0 - h.betas[0])),
        beta2(static_cast<A>(h.betas[1])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        beta3(static_cast<A>(h.betas[2])), one_minus_beta3(static_cast<A>(1.0 - h.betas[2])),
        eps(static_cast<A>(h.eps)), neg_lr(static_cast<A>(-h.lr)), decay(static_cast<A>(1.0 - h.lr * h.weight_decay)),
        prox(static_cast<A>(1.0 + h.lr * h.weight_decay)), no_prox(h.no_prox), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 4>& f, A& p, A g, A& m, A& d, A& n, A& prev) const {
    const A grad = maximize ? -g : g;
    const A diff = f[3] != A(0) ? A(0) : grad - prev;
    const A extrapolated = grad + beta2 * diff;
    m = m * beta1 + one_minus_beta1 * grad;
    d = d * beta2 + one_minus_beta2 * diff;
    n = n * beta3 + one_minus_beta3 * extrapolated * extrapolated;
    const A denom = std::sqrt(n) / f[2] + eps;
    const A u = (m / f[0] + beta2 * d / f[1]) / denom;
    p = no_prox ? p * decay + neg_lr * u : (p + neg_lr * u) / prox;
    prev = grad;
  }
};

class Adan final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    std::int64_t last_step = -1;
    std::array<double, 4> factors{};
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = sdk::count(s, kStep);
      if (step != last_step) {
        const auto t = static_cast<double>(step);
        factors = {1.0 - std::pow(h.betas[0], t), 1.0 - std::pow(h.betas[1], t), std::sqrt(1.0 - std::pow(h.betas[2], t)),
                   step == 1 ? 1.0 : 0.0};
        last_step = step;
      }
      driver_.add(*slot.param,
                  {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgDiff), &sdk::get(s, kExpAvgSq), &sdk::get(s, kPreGrad)},
                  factors);
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<4, 4> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adan, "adan", "1.0.0",
                          "Adan: adaptive Nesterov momentum from averaged gradients and gradient differences, with "
                          "proximal weight decay and maximize",
                          kHyper.schema, kState)
