// Adamax (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.1):
// Adam with the infinity norm in place of the second moment, with L2 weight decay and maximize,
// with the update rule and rounding order of PyTorch's torch.optim.Adamax (single-tensor path):
// eps is added to |gradient| before the maximum is taken. One pass over the elements of all the
// group's tensors, split across threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.999};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 2e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed_open(0.0, 1.0),
                           "decay rates of the first moment estimate and of the infinity norm"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to |gradient| for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_inf", sdk::non_negative(), "exponentially weighted infinity norm of the gradients"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float beta1, one_minus_beta1, beta2, eps, weight_decay;
  bool use_decay, maximize;
};

// Arrays: parameter, gradient, exp_avg, exp_inf; factor: -lr / (1 - beta1^step).
using Pieces = sdk::ElementPieces<4, 1>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
OPTREG_KERNEL void adamax_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict m = t.data[2];
  float* __restrict u = t.data[3];
  const float beta1 = c.beta1, one_minus_beta1 = c.one_minus_beta1, beta2 = c.beta2, eps = c.eps;
  const float weight_decay = c.weight_decay, neg_clr = t.factors[0];
  const bool use_decay = c.use_decay, maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = maximize ? -g[i] : g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float mi = m[i] * beta1 + one_minus_beta1 * grad;
    m[i] = mi;
    // The larger of the decayed norm and |grad| + eps; a NaN in either wins, as in PyTorch.
    const float decayed = u[i] * beta2, fresh = std::fabs(grad) + eps;
    const float ui = (decayed >= fresh || decayed != decayed) ? decayed : fresh;
    u[i] = ui;
    p[i] = pi + neg_clr * mi / ui;
  }
}

class Adamax final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const double wd = o.at("weight_decay").as_float();
    const Constants c{static_cast<float>(betas[0]),
                      static_cast<float>(1.0 - betas[0]),
                      static_cast<float>(betas[1]),
                      static_cast<float>(o.at("eps").as_float()),
                      static_cast<float>(wd),
                      wd != 0.0,
                      o.at("maximize").as_bool()};
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = std::get<std::int64_t>(s.scalar(0));
      const double clr = lr / (1.0 - std::pow(betas[0], static_cast<double>(step)));
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data()},
                  slot.param->value().numel(), {static_cast<float>(-clr)});
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) { adamax_kernel(c, t, begin, end); });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adamax, "adamax", "1.0.0", "Adamax (Adam with the infinity norm) with L2 weight decay and maximize",
                          kSchema, kState)
