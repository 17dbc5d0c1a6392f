// Adam (Kingma & Ba, 2015) with L2 weight decay, AMSGrad and maximize, with the update rule
// and rounding order of PyTorch's torch.optim.Adam (single-tensor path): eps is added outside
// the square root, after the bias correction.
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
    sdk::bool_option("amsgrad", false, "use the maximum of past second moments (AMSGrad)"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr optreg::abi::StateSpec kState[] = {
    sdk::state_int("step", "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", "second moment estimate"),
    sdk::optional_state_tensor("max_exp_avg_sq", "maximum of past second moments (amsgrad)"),
};

// State: tensors "exp_avg", "exp_avg_sq" and, with amsgrad, "max_exp_avg_sq"; scalar "step".
class Adam final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, exp_avg, exp_avg_sq
    if (o.at("amsgrad").as_bool()) s.add_tensor("max_exp_avg_sq", optreg::Tensor(p.value().shape()));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const double beta1 = betas[0];
    const double beta2 = betas[1];
    const double wd = o.at("weight_decay").as_float();
    const bool amsgrad = o.at("amsgrad").as_bool();
    Kernel k;
    k.beta1 = static_cast<float>(beta1);
    k.beta2 = static_cast<float>(beta2);
    k.one_minus_beta1 = static_cast<float>(1.0 - beta1);
    k.one_minus_beta2 = static_cast<float>(1.0 - beta2);
    k.weight_decay = static_cast<float>(wd);
    k.eps = static_cast<float>(o.at("eps").as_float());
    k.use_decay = wd != 0.0;
    k.maximize = o.at("maximize").as_bool();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      if (amsgrad && s.num_tensors() < 3) s.add_tensor("max_exp_avg_sq", optreg::Tensor(slot.param->value().shape()));
      auto& step = std::get<std::int64_t>(s.scalar(0));
      ++step;
      const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
      const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
      k.neg_step_size = static_cast<float>(-(lr / bias_correction1));
      k.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
      k.run(slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data(),
            amsgrad ? s.tensor(2).data() : nullptr, slot.param->value().numel());
    }
  }

 private:
  struct Kernel {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, weight_decay, eps, neg_step_size, bias_correction2_sqrt;
    bool use_decay, maximize;

    void run(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
             float* __restrict vmax, std::size_t n) const {
      for (std::size_t i = 0; i < n; ++i) {
        float grad = maximize ? -g[i] : g[i];
        if (use_decay) grad = grad + weight_decay * p[i];
        const float mi = m[i] * beta1 + one_minus_beta1 * grad;
        const float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
        m[i] = mi;
        v[i] = vi;
        float second = vi;
        if (vmax != nullptr) {
          second = vmax[i] < vi ? vi : vmax[i];
          vmax[i] = second;
        }
        const float denom = std::sqrt(second) / bias_correction2_sqrt + eps;
        p[i] = p[i] + neg_step_size * mi / denom;
      }
    }
  };
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adam, "adam", "1.0.0",
                          "Adam with L2 weight decay, AMSGrad and maximize (eps outside the square root)", kSchema, kState)
