// Schedule-free AdamW (Defazio et al., "The Road Less Scheduled", NeurIPS 2024; the memory-
// efficient form of the authors' AdamWScheduleFree). Three sequences replace a learning-rate
// schedule: z takes Adam-normalized gradient steps, x is a weighted average of the z's, and the
// parameter holds y = (1 - beta1) z + beta1 x, where the gradient is taken. At update k of a
// parameter (k = 1, 2, ...):
//   lr_k = lr * min(1, k / warmup_steps) * sqrt(1 - beta2^k);  lr_max = max(lr_max, lr_k)
//   w_k = k^r * lr_max^weight_lr_power;  weight_sum += w_k;  c = w_k / weight_sum (0 if 0)
//   v = beta2 v + (1 - beta2) g^2;  u = g / (sqrt(v) + eps) + weight_decay * y
//   y = lerp(y, z, c) + lr_k (beta1 (1 - c) - 1) u;  z = z - lr_k u
// z starts as the parameter's value at its first update. The model is evaluated at x =
// lerp(y, z, 1 - 1/beta1), which eval_weights() writes (optreg::EvalWeights, optreg train).
#include <algorithm>
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;
using sdk::lerp;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
  std::int64_t warmup_steps;
  double r, weight_lr_power;
  bool maximize;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 0.0025),
    sdk::betas(&Hyper::betas, kBetas,
               "interpolation between the average and the iterate where the gradient is taken (beta1 > 0), and the "
               "decay rate of the second moment"),
    sdk::option(&Hyper::eps, sdk::float_option("eps", 1e-8, sdk::at_least(0.0),
                                               "term added to sqrt(v) in the denominator")),
    sdk::weight_decay(&Hyper::weight_decay, 0.0, "weight decay, an L2 term taken at y and added to the normalized gradient"),
    sdk::option(&Hyper::warmup_steps, sdk::int_option("warmup_steps", 0, sdk::at_least(0.0),
                                                      "updates over which the step size rises linearly to lr")),
    sdk::option(&Hyper::r, sdk::float_option("r", 0.0, sdk::at_least(0.0),
                                             "power of the update count in the averaging weights")),
    sdk::option(&Hyper::weight_lr_power,
                sdk::float_option("weight_lr_power", 2.0, sdk::at_least(0.0),
                                  "power of the largest step size so far in the averaging weights")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_float("lr_max", sdk::non_negative(), "the largest step size lr_k so far"),
    sdk::state_float("weight_sum", sdk::non_negative(), "sum of the averaging weights so far"),
    sdk::state_tensor("z", sdk::not_nan(), "the iterate that takes the gradient steps (the parameter's value until the "
                                           "first update)"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "running average of the squared gradients"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kLrMax = sdk::scalar_entry(kState, "lr_max");
constexpr auto kWeightSum = sdk::scalar_entry(kState, "weight_sum");
constexpr auto kZ = sdk::tensor_entry(kState, "z");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");

/// One update; factors: c (the averaging weight), lr_k, lr_k (beta1 (1 - c) - 1), and 1 at the
/// parameter's first update (z then starts from it).
template <typename A>
struct Rule {
  A beta2, one_minus_beta2, eps, weight_decay;
  bool maximize;

  explicit Rule(const Hyper& h)
      : beta2(static_cast<A>(h.betas[1])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])), eps(static_cast<A>(h.eps)),
        weight_decay(static_cast<A>(h.weight_decay)), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 4>& f, A& y, A g, A& z, A& v) const {
    const A grad = maximize ? -g : g;
    if (f[3] != A(0)) z = y;
    v = v * beta2 + one_minus_beta2 * grad * grad;
    A u = grad / (std::sqrt(v) + eps);
    if (weight_decay != A(0)) u = u + weight_decay * y;
    y = lerp(y, z, f[0]) + f[2] * u;
    z = z - f[1] * u;
  }
};

/// x = lerp(y, z, 1 - 1/beta1) over n elements of type T (float or double).
template <typename T>
void average(T* y, const T* z, std::size_t n, double beta1) {
  const T weight = static_cast<T>(1.0 - 1.0 / beta1);
  for (std::size_t i = 0; i < n; ++i) y[i] = lerp(y[i], z[i], weight);
}

class ScheduleFreeAdamW final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerEvalWeights;

 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    const Hyper h = kHyper.decode(o);
    if (!(h.betas[0] > 0.0)) {
      throw optreg::OptionError(where, "betas",
                                "option 'betas' needs beta1 > 0 (got " + o.at("betas").to_string() +
                                    "): the evaluation weights x = (y - (1 - beta1) z) / beta1 divide by it");
    }
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t k = sdk::count(s, kStep);
      const double kd = static_cast<double>(k);
      const double warmup = k < h.warmup_steps ? kd / static_cast<double>(h.warmup_steps) : 1.0;
      const double lr = h.lr * warmup * std::sqrt(1.0 - std::pow(h.betas[1], kd));
      double& lr_max = sdk::real(s, kLrMax);
      double& weight_sum = sdk::real(s, kWeightSum);
      lr_max = std::max(lr, lr_max);
      const double weight = std::pow(kd, h.r) * std::pow(lr_max, h.weight_lr_power);
      weight_sum += weight;
      const double c = weight_sum > 0.0 ? weight / weight_sum : 0.0;
      driver_.add(*slot.param, {&sdk::get(s, kZ), &sdk::get(s, kExpAvgSq)},
                  {c, lr, lr * (h.betas[0] * (1.0 - c) - 1.0), k == 1 ? 1.0 : 0.0});
    }
    driver_.run<Rule>(h);
  }

  void eval_weights(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      if (sdk::count(s, kStep) == 0) continue;  // never updated: x is the parameter itself
      optreg::Tensor& y = slot.param->value();
      const optreg::Tensor& z = sdk::get(s, kZ);
      if (y.dtype() == optreg::DType::Float64) {
        average(y.data_as<double>(), z.data_as<double>(), y.numel(), h.betas[0]);
      } else {
        average(y.data_as<float>(), z.data_as<float>(), y.numel(), h.betas[0]);
      }
    }
  }

 private:
  sdk::Elementwise<2, 4> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(ScheduleFreeAdamW, "schedulefree_adamw", "1.0.0",
                          "schedule-free AdamW: Adam-normalized steps of an iterate z, evaluated at their weighted "
                          "average x, with warm-up, weight decay and maximize; no learning-rate schedule",
                          kHyper.schema, kState)
