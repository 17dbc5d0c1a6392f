// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020) with
// L2 weight decay, with the update rule and rounding order of PyTorch's torch.optim.RAdam
// (single-tensor path): while the variance of the adaptive rate is intractable (rho_t <= 5) the
// step is plain momentum SGD on the bias-corrected first moment; after that, the adaptive rate
// sqrt(1 - beta2^t) / (sqrt(v) + eps) is computed as a reciprocal times a factor, as PyTorch's
// `float / tensor` does. One pass over the elements of all the group's tensors, split across
// threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.999};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed_open(0.0, 1.0),
                           "decay rates of the first and second moment estimates"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, lr;
  bool use_decay;
};

// Arrays: parameter, gradient, exp_avg, exp_avg_sq; factors: 1 - beta1^t, sqrt(1 - beta2^t),
// the rectification term, and 1 when the step is rectified (0 for the plain momentum step).
using Pieces = sdk::ElementPieces<4, 4>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
template <bool Rectified>
OPTREG_KERNEL void radam_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict m = t.data[2];
  float* __restrict v = t.data[3];
  const float beta1 = c.beta1, one_minus_beta1 = c.one_minus_beta1, beta2 = c.beta2;
  const float one_minus_beta2 = c.one_minus_beta2, eps = c.eps, weight_decay = c.weight_decay, lr = c.lr;
  const float bias_correction1 = t.factors[0], bias_correction2_sqrt = t.factors[1], rect = t.factors[2];
  const bool use_decay = c.use_decay;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float mi = m[i] * beta1 + one_minus_beta1 * grad;
    const float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    const float scaled = mi / bias_correction1 * lr;
    if (Rectified) {
      const float adaptive_lr = 1.0f / (std::sqrt(vi) + eps) * bias_correction2_sqrt;
      p[i] = pi - scaled * adaptive_lr * rect;
    } else {
      p[i] = pi - scaled;
    }
  }
}

class Radam final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double wd = o.at("weight_decay").as_float();
    const Constants c{static_cast<float>(betas[0]),
                      static_cast<float>(1.0 - betas[0]),
                      static_cast<float>(betas[1]),
                      static_cast<float>(1.0 - betas[1]),
                      static_cast<float>(o.at("eps").as_float()),
                      static_cast<float>(wd),
                      static_cast<float>(o.at("lr").as_float()),
                      wd != 0.0};
    // The maximum length of the approximated simple moving average.
    const double rho_inf = 2.0 / (1.0 - betas[1]) - 1.0;
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const double step = static_cast<double>(std::get<std::int64_t>(s.scalar(0)));
      const double beta2_power = std::pow(betas[1], step);
      const double bias_correction2 = 1.0 - beta2_power;
      const double rho_t = rho_inf - 2.0 * step * beta2_power / bias_correction2;
      const bool rectified = rho_t > 5.0;
      const double rect = rectified ? std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                                ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                                    : 0.0;
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data()},
                  slot.param->value().numel(),
                  {static_cast<float>(1.0 - std::pow(betas[0], step)), static_cast<float>(std::sqrt(bias_correction2)),
                   static_cast<float>(rect), rectified ? 1.0f : 0.0f});
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) {
      if (t.factors[3] != 0.0f) {
        radam_kernel<true>(c, t, begin, end);
      } else {
        radam_kernel<false>(c, t, begin, end);
      }
    });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Radam, "radam", "1.0.0", "RAdam (rectified Adam) with L2 weight decay", kSchema, kState)
