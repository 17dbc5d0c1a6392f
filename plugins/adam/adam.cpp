// Adam (Kingma & Ba, 2015) with L2 weight decay, AMSGrad and maximize, with the update rule
// and rounding order of PyTorch's torch.optim.Adam (single-tensor path): eps is added outside
// the square root, after the bias correction. Built with OPTREG_ADAMW it is AdamW (Loshchilov &
// Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) as torch.optim.AdamW: the weight
// decay scales the parameter by 1 - lr * weight_decay before the Adam update instead of adding
// to the gradient.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

#ifdef OPTREG_ADAMW
constexpr bool kDecoupled = true;
constexpr const char* kDecayMeaning = "decoupled weight decay: the parameter is scaled by 1 - lr * weight_decay";
#else
constexpr bool kDecoupled = false;
constexpr const char* kDecayMeaning = "L2 penalty added to the gradient";
#endif

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
  bool amsgrad, maximize;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3), sdk::betas(&Hyper::betas, kBetas), sdk::eps(&Hyper::eps),
    sdk::weight_decay(&Hyper::weight_decay, kDecoupled ? 1e-2 : 0.0, kDecayMeaning),
    sdk::option(&Hyper::amsgrad, sdk::bool_option("amsgrad", false, "use the maximum of past second moments (AMSGrad)")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
    sdk::optional_state_tensor("max_exp_avg_sq", sdk::non_negative(), "maximum of past second moments (amsgrad)"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");
constexpr auto kMaxExpAvgSq = sdk::tensor_entry(kState, "max_exp_avg_sq");

/// One element's update; factors: -lr / (1 - beta1^t) and sqrt(1 - beta2^t). With a fourth
/// array (amsgrad) the denominator uses the running maximum of the second moments.
template <typename A>
struct Rule {
  A beta1, beta2, one_minus_beta1, one_minus_beta2, weight_decay, eps, decay;
  bool use_decay, maximize;

  explicit Rule(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), beta2(static_cast<A>(h.betas[1])),
        one_minus_beta1(static_cast<A>(1.0 - h.betas[0])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        weight_decay(static_cast<A>(h.weight_decay)), eps(static_cast<A>(h.eps)),
        decay(static_cast<A>(1.0 - h.lr * h.weight_decay)), use_decay(h.weight_decay != 0.0), maximize(h.maximize) {}

  A second(A& /*vmax*/, A v, std::false_type) const { return v; }
  A second(A& vmax, A v, std::true_type) const { return vmax = vmax < v ? v : vmax; }

  template <typename... Max>
  void operator()(const sdk::Factors<A, 2>& f, A& p, A g, A& m, A& v, Max&... vmax) const {
    const A pi = kDecoupled ? p * decay : p;
    A grad = maximize ? -g : g;
    if (!kDecoupled && use_decay) grad = grad + weight_decay * pi;
    m = m * beta1 + one_minus_beta1 * grad;
    v = v * beta2 + one_minus_beta2 * grad * grad;
    A s = v;
    ((s = second(vmax, v, std::true_type{})), ...);
    const A denom = std::sqrt(s) / f[1] + eps;
    p = pi + f[0] * m / denom;
  }
};

class Adam final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, exp_avg, exp_avg_sq
    if (o.at("amsgrad").as_bool()) s.add_tensor(kMaxExpAvgSq.name, new_state(o, p, kMaxExpAvgSq.name));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    plain_.clear();
    amsgrad_.clear();
    std::int64_t last_step = -1;  // the parameters of a group usually share their step count
    std::array<double, 2> factors{};
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = sdk::count(s, kStep);
      if (step != last_step) {
        const auto t = static_cast<double>(step);
        factors = {-(h.lr / (1.0 - std::pow(h.betas[0], t))), std::sqrt(1.0 - std::pow(h.betas[1], t))};
        last_step = step;
      }
      if (!h.amsgrad) {
        plain_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq)}, factors);
        continue;
      }
      if (sdk::find(s, kMaxExpAvgSq) == nullptr) s.add_tensor(kMaxExpAvgSq.name, new_state(o, *slot.param, kMaxExpAvgSq.name));
      amsgrad_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq), &sdk::get(s, kMaxExpAvgSq)}, factors);
    }
    plain_.run<Rule>(h);
    amsgrad_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<2, 2> plain_;
  sdk::Elementwise<3, 2> amsgrad_;
};

}  // namespace

#ifdef OPTREG_ADAMW
OPTREG_REGISTER_OPTIMIZER(Adam, "adamw", "1.0.0", "AdamW: Adam with decoupled weight decay, AMSGrad and maximize",
                          kHyper.schema, kState)
#else
OPTREG_REGISTER_OPTIMIZER(Adam, "adam", "1.0.0",
                          "Adam with L2 weight decay, AMSGrad and maximize (eps outside the square root)", kHyper.schema,
                          kState)
#endif
