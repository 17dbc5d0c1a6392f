// LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
// ICLR 2020, Algorithm 2) as MegEngine's megengine.optimizer.LAMB defines it: the Adam direction
// r = m_hat / (sqrt(v_hat) + eps) plus weight_decay * p, scaled per parameter tensor by the trust
// ratio ||p|| / ||r|| (the paper's scaling function phi is the identity). The ratio is 1 when
// either norm is 0, and also when weight_decay is 0 unless always_adapt is set.
//
// Two passes over each tensor: the first updates the moments and sums p^2 and r^2 in double per
// fixed segment (sdk::Elementwise::reduce), so the norms have the same bits with any thread count; the
// second recomputes r from the stored moments and applies it. Without adaptation (ratio 1) one
// pass does both.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> betas;
  double eps, weight_decay;
  bool bias_correction, always_adapt;
};

constexpr double kBetas[] = {0.9, 0.999};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3), sdk::betas(&Hyper::betas, kBetas), sdk::eps(&Hyper::eps),
    sdk::weight_decay(&Hyper::weight_decay, 0.0,
                      "weight decay: weight_decay * p is added to the Adam direction before the trust ratio"),
    sdk::option(&Hyper::bias_correction, sdk::bool_option("bias_correction", true, "divide the moments by 1 - beta^t")),
    sdk::option(&Hyper::always_adapt,
                sdk::bool_option("always_adapt", false, "apply the trust ratio also when weight_decay is 0")));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kExpAvg = sdk::tensor_entry(kState, "exp_avg");
constexpr auto kExpAvgSq = sdk::tensor_entry(kState, "exp_avg_sq");

/// The moments and the direction of one element; factors: 1 - beta1^t, 1 - beta2^t (1 without
/// bias correction) and -lr times the tensor's trust ratio.
template <typename A>
struct Moments {
  A beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  bool use_decay;

  explicit Moments(const Hyper& h)
      : beta1(static_cast<A>(h.betas[0])), beta2(static_cast<A>(h.betas[1])),
        one_minus_beta1(static_cast<A>(1.0 - h.betas[0])), one_minus_beta2(static_cast<A>(1.0 - h.betas[1])),
        eps(static_cast<A>(h.eps)), weight_decay(static_cast<A>(h.weight_decay)), use_decay(h.weight_decay != 0.0) {}

  /// Updates the moments and returns the direction r.
  A update(const sdk::Factors<A, 3>& f, A p, A g, A& m, A& v) const {
    m = m * beta1 + one_minus_beta1 * g;
    v = v * beta2 + one_minus_beta2 * g * g;
    return direction(f, p, m, v);
  }
  A direction(const sdk::Factors<A, 3>& f, A p, A m, A v) const {
    A r = (m / f[0]) / (std::sqrt(v / f[1]) + eps);
    if (use_decay) r = r + weight_decay * p;
    return r;
  }
  /// The first phase: the moments, and the terms p^2 and r^2 of the norms.
  std::array<double, 2> terms(const sdk::Factors<A, 3>& f, A p, A g, A& m, A& v) const {
    const double pd = p, rd = update(f, p, g, m, v);
    return {pd * pd, rd * rd};
  }
};

/// The second phase: the direction recomputed from the stored moments, applied.
template <typename A>
struct Apply : Moments<A> {
  using Moments<A>::Moments;
  void operator()(const sdk::Factors<A, 3>& f, A& p, A, A& m, A& v) const { p = p + f[2] * this->direction(f, p, m, v); }
};

/// The single pass when the trust ratio is 1.
template <typename A>
struct Fused : Moments<A> {
  using Moments<A>::Moments;
  void operator()(const sdk::Factors<A, 3>& f, A& p, A g, A& m, A& v) const { p = p + f[2] * this->update(f, p, g, m, v); }
};

class Lamb final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerWholeTensors;  // per-tensor norms

 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const auto t = static_cast<double>(sdk::count(s, kStep));
      const double bc1 = h.bias_correction ? 1.0 - std::pow(h.betas[0], t) : 1.0;
      const double bc2 = h.bias_correction ? 1.0 - std::pow(h.betas[1], t) : 1.0;
      driver_.add(*slot.param, {&sdk::get(s, kExpAvg), &sdk::get(s, kExpAvgSq)}, {bc1, bc2, -h.lr});
    }
    if (!(h.always_adapt || h.weight_decay > 0.0)) {
      driver_.run_tensors<Fused>(h);
      return;
    }
    driver_.reduce<2, Moments>(h, sums_);
    for (std::size_t i = 0; i < sums_.size(); ++i) {
      const double p_norm = std::sqrt(sums_[i][0]);
      const double r_norm = std::sqrt(sums_[i][1]);
      const double trust = p_norm > 0.0 && r_norm > 0.0 ? p_norm / r_norm : 1.0;
      driver_.set_factor(i, 2, -(h.lr * trust));
    }
    driver_.run_tensors<Apply>(h);
  }

 private:
  std::vector<std::array<double, 2>> sums_;  // per tensor: the sums of p^2 and r^2
  sdk::Elementwise<2, 3> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lamb, "lamb", "1.0.0",
                          "LAMB: Adam directions scaled per tensor by the trust ratio ||p|| / ||r|| (as MegEngine)",
                          kHyper.schema, kState)
