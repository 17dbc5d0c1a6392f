// ADOPT (Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
// Rate", NeurIPS 2024, the clipped algorithm): the second moment of the *previous* gradients
// normalizes the current one before it enters the momentum, so that the update does not depend
// on the current gradient's own scale. The first step only fills the second moment with the
// squared gradient; each later step t (t = 1, 2, ... counting updates) does
//   m = beta1 m + (1 - beta1) clip(g / max(sqrt(v), eps), t^(1/4));  p = p - lr m;
//   v = beta2 v + (1 - beta2) g^2
// with L2 weight decay added to the gradient, or decoupled (the parameter scaled by
// 1 - lr * weight_decay before each update), and maximize.
#include <algorithm>
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
  bool decoupled_weight_decay, clip, maximize;
};

constexpr double kBetas[] = {0.9, 0.9999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3),
    sdk::betas(&Hyper::betas, kBetas, "decay rates of the momentum of normalized gradients and of the second moment"),
    sdk::option(&Hyper::eps, sdk::float_option("eps", 1e-6, sdk::greater_than(0.0),
                                               "least value of sqrt(v) a gradient is divided by")),
    sdk::weight_decay(&Hyper::weight_decay, 0.0, "weight decay: an L2 penalty, or decoupled (decoupled_weight_decay)"),
    sdk::option(&Hyper::decoupled_weight_decay,
                sdk::bool_option("decoupled_weight_decay", false,
                                 "scale the parameter by 1 - lr * weight_decay before each update instead of adding an L2 "
                                 "penalty to the gradient")),
    sdk::option(&Hyper::clip, sdk::bool_option("clip", true,
                                               "clip each normalized gradient to [-t^(1/4), t^(1/4)] at update t")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "gradients seen by this parameter (the first fills exp_avg_sq only)"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "momentum of the normalized gradients"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate of the previous gradients"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");

/// The gradient an update uses: negated under maximize, with the L2 penalty unless decoupled.
template <typename A>
struct Gradient {
  A weight_decay;
  bool use_decay, maximize;

  explicit Gradient(const Hyper& h)
      : weight_decay(static_cast<A>(h.weight_decay)), use_decay(h.weight_decay != 0.0 && !h.decoupled_weight_decay),
        maximize(h.maximize) {}
  A operator()(A p, A g) const {
    const A grad = maximize ? -g : g;
    return use_decay ? grad + weight_decay * p : grad;
  }
};

/// The first step: the second moment becomes the squared gradient; the parameter stays.
template <typename A>
struct FirstRule {
  Gradient<A> gradient;
  explicit FirstRule(const Hyper& h) : gradient(h) {}
  void operator()(const sdk::Factors<A, 1>&, A& p, A g, A& /*m*/, A& v) const {
    const A grad = gradient(p, g);
    v = grad * grad;
  }
};

/// An update; factor: the clip bound t^(1/4) (infinite without clipping).
template <typename A>
struct Rule {
  Gradient<A> gradient;
  A beta1_weight, beta2, one_minus_beta2, eps, neg_lr, decay;
  bool decoupled;

  explicit Rule(const Hyper& h)
      : gradient(h), beta1_weight(static_cast<A>(1.0 - h.betas[0])), beta2(static_cast<A>(h.betas[1])),
        one_minus_beta2(static_cast<A>(1.0 - h.betas[1])), eps(static_cast<A>(h.eps)), neg_lr(static_cast<A>(-h.lr)),
        decay(static_cast<A>(1.0 - h.lr * h.weight_decay)), decoupled(h.decoupled_weight_decay && h.weight_decay != 0.0) {}

  void operator()(const sdk::Factors<A, 1>& f, A& p, A g, A& m, A& v) const {
    const A grad = gradient(p, g);
    const A pi = decoupled ? p * decay : p;
    const A root = std::sqrt(v);
    const A denom = root < eps ? eps : root;  // max(sqrt(v), eps); a NaN stays NaN
    A normed = grad / denom;
    normed = normed < -f[0] ? -f[0] : normed;
    normed = normed > f[0] ? f[0] : normed;
    // m moved towards the normalized gradient by 1 - beta1, as torch's lerp computes it.
    m = beta1_weight < A(0.5) ? m + beta1_weight * (normed - m) : normed - (normed - m) * (A(1) - beta1_weight);
    p = pi + neg_lr * m;
    v = v * beta2 + one_minus_beta2 * grad * grad;
  }
};

class Adopt final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    // The parameters at their first step, then the others, through one driver (whose storage,
    // sized at the first step, serves every later one).
    for (const bool first : {true, false}) {
      driver_.clear();
      for (const Slot& slot : slots) {
        optreg::ParamState& s = *slot.state;
        const std::int64_t step = sdk::count(s, kStep);
        if ((step == 1) != first) continue;
        const double bound = h.clip && !first ? std::pow(static_cast<double>(step - 1), 0.25) : HUGE_VAL;
        driver_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq)}, {bound});
      }
      if (first) {
        driver_.run<FirstRule>(h);
      } else {
        driver_.run<Rule>(h);
      }
    }
  }

 private:
  sdk::Elementwise<2, 1> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adopt, "adopt", "1.0.0",
                          "ADOPT: momentum of gradients normalized by the previous second moment, clipped, with weight "
                          "decay (L2 or decoupled) and maximize",
                          kHyper.schema, kState)
