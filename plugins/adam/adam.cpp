// Adam (Kingma & Ba, 2015) with L2 weight decay, AMSGrad and maximize, with the update rule
// and rounding order of PyTorch's torch.optim.Adam (single-tensor path): eps is added outside
// the square root, after the bias correction. Built with OPTREG_ADAMW it is AdamW (Loshchilov &
// Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) as torch.optim.AdamW: the weight
// decay scales the parameter by 1 - lr * weight_decay before the Adam update instead of adding
// to the gradient. One pass over the elements of all the group's tensors, split across threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.999};

#ifdef OPTREG_ADAMW
constexpr bool kDecoupled = true;
#else
constexpr bool kDecoupled = false;
#endif

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed_open(0.0, 1.0),
                           "decay rates of the first and second moment estimates"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    kDecoupled ? sdk::float_option("weight_decay", 1e-2, sdk::at_least(0.0),
                                   "decoupled weight decay: the parameter is scaled by 1 - lr * weight_decay")
               : sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::bool_option("amsgrad", false, "use the maximum of past second moments (AMSGrad)"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
    sdk::optional_state_tensor("max_exp_avg_sq", sdk::non_negative(), "maximum of past second moments (amsgrad)"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, weight_decay, eps;
  bool use_decay, maximize;
  float decay;  // AdamW: the factor 1 - lr * weight_decay applied to the parameter first
};

/// One tensor's pointers and step-dependent factors.
struct Tensors {
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;  // null without amsgrad
  float neg_step_size, bias_correction2_sqrt;
  std::size_t n;  // elements

  /// Whether `t` continues this range in every array with the same factors.
  bool continued_by(const Tensors& t) const noexcept {
    return sdk::follows(p, n, t.p) && sdk::follows(g, n, t.g) && sdk::follows(m, n, t.m) && sdk::follows(v, n, t.v) &&
           (vmax == nullptr ? t.vmax == nullptr : sdk::follows(vmax, n, t.vmax)) && neg_step_size == t.neg_step_size &&
           bias_correction2_sqrt == t.bias_correction2_sqrt;
  }
};

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop. With `Amsgrad` the
// denominator uses the running maximum of the second moments.
template <bool Amsgrad>
OPTREG_KERNEL void adam_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict m = t.m;
  float* __restrict v = t.v;
  float* __restrict vmax = t.vmax;
  const float beta1 = c.beta1, beta2 = c.beta2, one_minus_beta1 = c.one_minus_beta1;
  const float one_minus_beta2 = c.one_minus_beta2, weight_decay = c.weight_decay, eps = c.eps;
  const float neg_step_size = t.neg_step_size, bias_correction2_sqrt = t.bias_correction2_sqrt;
  const bool use_decay = c.use_decay, maximize = c.maximize;
  const float decay = c.decay;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = kDecoupled ? p[i] * decay : p[i];
    float grad = maximize ? -g[i] : g[i];
    if (!kDecoupled && use_decay) grad = grad + weight_decay * pi;
    const float mi = m[i] * beta1 + one_minus_beta1 * grad;
    const float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    float second = vi;
    if (Amsgrad) {
      second = vmax[i] < vi ? vi : vmax[i];
      vmax[i] = second;
    }
    const float denom = std::sqrt(second) / bias_correction2_sqrt + eps;
    p[i] = pi + neg_step_size * mi / denom;
  }
}

class Adam final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, exp_avg, exp_avg_sq
    if (o.at("amsgrad").as_bool()) s.add_tensor("max_exp_avg_sq", optreg::Tensor(p.value().shape()));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const double wd = o.at("weight_decay").as_float();
    const bool amsgrad = o.at("amsgrad").as_bool();
    const Constants c{static_cast<float>(betas[0]),        static_cast<float>(betas[1]),
                      static_cast<float>(1.0 - betas[0]),  static_cast<float>(1.0 - betas[1]),
                      static_cast<float>(wd),              static_cast<float>(o.at("eps").as_float()),
                      wd != 0.0,                           o.at("maximize").as_bool(),
                      static_cast<float>(1.0 - lr * wd)};
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    sdk::advance_counts(slots, 0);  // step
    std::int64_t last_step = -1;  // the parameters of a group usually share their step count
    float neg_step_size = 0, bias_correction2_sqrt = 0;
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      if (amsgrad && s.num_tensors() < 3) s.add_tensor("max_exp_avg_sq", optreg::Tensor(slot.param->value().shape()));
      const std::int64_t step = std::get<std::int64_t>(s.scalar(0));
      if (step != last_step) {
        const double bias_correction1 = 1.0 - std::pow(betas[0], static_cast<double>(step));
        const double bias_correction2 = 1.0 - std::pow(betas[1], static_cast<double>(step));
        neg_step_size = static_cast<float>(-(lr / bias_correction1));
        bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
        last_step = step;
      }
      const Tensors t{slot.param->value().data(),
                      slot.param->grad().data(),
                      s.tensor(0).data(),
                      s.tensor(1).data(),
                      amsgrad ? s.tensor(2).data() : nullptr,
                      neg_step_size,
                      bias_correction2_sqrt,
                      slot.param->value().numel()};
      sdk::append_range(tensors_, t);  // one range over tensors that lie back to back
    }
    ranges_.run(
        tensors_.size(), [&](std::size_t i) { return tensors_[i].n; },
        [&](std::size_t i, std::size_t begin, std::size_t end) {
          if (amsgrad) {
            adam_kernel<true>(c, tensors_[i], begin, end);
          } else {
            adam_kernel<false>(c, tensors_[i], begin, end);
          }
        });
  }

 private:
  std::vector<Tensors> tensors_;  // the ranges of one step, reused by every step
  sdk::ElementRanges ranges_;
};

}  // namespace

#ifdef OPTREG_ADAMW
OPTREG_REGISTER_OPTIMIZER(Adam, "adamw", "1.0.0",
                          "AdamW: Adam with decoupled weight decay, AMSGrad and maximize", kSchema, kState)
#else
OPTREG_REGISTER_OPTIMIZER(Adam, "adam", "1.0.0",
                          "Adam with L2 weight decay, AMSGrad and maximize (eps outside the square root)", kSchema,
                          kState)
#endif
