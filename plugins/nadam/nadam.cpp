// NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop) with the momentum
// schedule mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)) and L2 weight decay, with the
// update rule and rounding order of PyTorch's torch.optim.NAdam (single-tensor path): the product
// of the mu_t is kept in float32, as PyTorch keeps it in a float32 tensor.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay, momentum_decay;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 2e-3), sdk::betas(&Hyper::betas, kBetas), sdk::eps(&Hyper::eps),
    sdk::weight_decay(&Hyper::weight_decay),
    sdk::option(&Hyper::momentum_decay, sdk::float_option("momentum_decay", 4e-3, sdk::at_least(0.0),
                                                          "how fast the momentum schedule mu_t approaches beta1")));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_float("mu_product", sdk::closed(0.0, 1.0),
                     "product of the momentum schedule mu_1 ... mu_t, a float32 value"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kMuProduct = sdk::scalar_entry(kState, "mu_product");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");

/// One element's update; factors: 1 - beta2^t, the coefficient of the gradient and the
/// coefficient of the first moment.
template <typename A>
struct Rule {
  A beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
  bool use_decay;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), one_minus_beta1(static_cast<A>(1.0 - h.betas[0])),
        beta2(static_cast<A>(h.betas[1])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        eps(static_cast<A>(h.eps)), weight_decay(static_cast<A>(h.weight_decay)), use_decay(h.weight_decay != 0.0) {}

  void operator()(const sdk::Factors<A, 3>& f, A& p, A g, A& m, A& v) const {
    A grad = g;
    if (use_decay) grad = grad + weight_decay * p;
    m = m * beta1 + one_minus_beta1 * grad;
    v = v * beta2 + one_minus_beta2 * grad * grad;
    const A denom = std::sqrt(v / f[0]) + eps;
    const A half = p + f[1] * grad / denom;
    p = half + f[2] * m / denom;
  }
};

class Nadam final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, mu_product, exp_avg, exp_avg_sq
    sdk::real(s, kMuProduct) = 1.0;  // the empty product
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    const double beta1 = h.betas[0];
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const auto step = static_cast<double>(sdk::count(s, kStep));
      const double mu = beta1 * (1.0 - 0.5 * std::pow(0.96, step * h.momentum_decay));
      const double mu_next = beta1 * (1.0 - 0.5 * std::pow(0.96, (step + 1.0) * h.momentum_decay));
      // float32 products, as PyTorch multiplies its float32 mu_product tensor by Python floats.
      double& mu_product = sdk::real(s, kMuProduct);
      const float product = static_cast<float>(mu_product) * static_cast<float>(mu);
      const float product_next = product * static_cast<float>(mu) * static_cast<float>(mu_next);
      mu_product = product;
      driver_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq)},
                  {1.0 - std::pow(h.betas[1], step), -h.lr * (1.0 - mu) / (1.0 - static_cast<double>(product)),
                   -h.lr * mu_next / (1.0 - static_cast<double>(product_next))});
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<2, 3> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Nadam, "nadam", "1.0.0", "NAdam (Adam with Nesterov momentum) with L2 weight decay",
                          kHyper.schema, kState)
