// NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop) with the
// momentum schedule mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)) and L2 weight decay,
// with the update rule and rounding order of PyTorch's torch.optim.NAdam (single-tensor path):
// the product of the mu_t is kept in float32, as PyTorch keeps it in a float32 tensor. One pass
// over the elements of all the group's tensors, split across threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.999};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 2e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed_open(0.0, 1.0),
                           "decay rates of the first and second moment estimates"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::float_option("momentum_decay", 4e-3, sdk::at_least(0.0), "how fast the momentum schedule mu_t approaches beta1"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_float("mu_product", sdk::closed(0.0, 1.0),
                     "product of the momentum schedule mu_1 ... mu_t, a float32 value"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay;
  bool use_decay;
};

// Arrays: parameter, gradient, exp_avg, exp_avg_sq; factors: 1 - beta2^t, the coefficient of
// the gradient and the coefficient of the first moment.
using Pieces = sdk::ElementPieces<4, 3>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
OPTREG_KERNEL void nadam_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict m = t.data[2];
  float* __restrict v = t.data[3];
  const float beta1 = c.beta1, one_minus_beta1 = c.one_minus_beta1, beta2 = c.beta2;
  const float one_minus_beta2 = c.one_minus_beta2, eps = c.eps, weight_decay = c.weight_decay;
  const float bias_correction2 = t.factors[0], grad_coef = t.factors[1], avg_coef = t.factors[2];
  const bool use_decay = c.use_decay;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float mi = m[i] * beta1 + one_minus_beta1 * grad;
    const float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi / bias_correction2) + eps;
    const float half = pi + grad_coef * grad / denom;
    p[i] = half + avg_coef * mi / denom;
  }
}

class Nadam final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, mu_product, exp_avg, exp_avg_sq
    s.scalar(1) = 1.0;               // the empty product
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const double wd = o.at("weight_decay").as_float();
    const double momentum_decay = o.at("momentum_decay").as_float();
    const Constants c{static_cast<float>(betas[0]),     static_cast<float>(1.0 - betas[0]),
                      static_cast<float>(betas[1]),     static_cast<float>(1.0 - betas[1]),
                      static_cast<float>(o.at("eps").as_float()), static_cast<float>(wd),
                      wd != 0.0};
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const double step = static_cast<double>(std::get<std::int64_t>(s.scalar(0)));
      const double mu = betas[0] * (1.0 - 0.5 * std::pow(0.96, step * momentum_decay));
      const double mu_next = betas[0] * (1.0 - 0.5 * std::pow(0.96, (step + 1.0) * momentum_decay));
      // float32 products, as PyTorch multiplies its float32 mu_product tensor by Python floats.
      double& mu_product = std::get<double>(s.scalar(1));
      const float product = static_cast<float>(mu_product) * static_cast<float>(mu);
      const float product_next = product * static_cast<float>(mu) * static_cast<float>(mu_next);
      mu_product = product;
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data()},
                  slot.param->value().numel(),
                  {static_cast<float>(1.0 - std::pow(betas[1], step)),
                   static_cast<float>(-lr * (1.0 - mu) / (1.0 - static_cast<double>(product))),
                   static_cast<float>(-lr * mu_next / (1.0 - static_cast<double>(product_next)))});
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) { nadam_kernel(c, t, begin, end); });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Nadam, "nadam", "1.0.0", "NAdam (Adam with Nesterov momentum) with L2 weight decay",
                          kSchema, kState)
