// RMSprop (Hinton, Lecture 6e of "Neural Networks for Machine Learning", 2012) with momentum, the
// centered variant (Graves, 2013), L2 weight decay and maximize, with the update rule and
// rounding order of PyTorch's torch.optim.RMSprop (single-tensor path): eps is added after the
// square root. One pass over the elements of all the group's tensors, split across threads.
#include <cmath>
#include <cstring>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-2, sdk::at_least(0.0), "learning rate"),
    sdk::float_option("alpha", 0.99, sdk::closed(0.0, 1.0), "decay rate of the running average of squared gradients"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::float_option("momentum", 0.0, sdk::at_least(0.0), "momentum factor (0 disables momentum)"),
    sdk::bool_option("centered", false, "divide by an estimate of the gradient's variance instead of its second moment"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("square_avg", sdk::non_negative(), "running average of squared gradients"),
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(),
                               "running momentum of the scaled gradients (momentum > 0)"),
    sdk::optional_state_tensor("grad_avg", sdk::not_nan(), "running average of the gradients (centered)"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float alpha, one_minus_alpha, eps, weight_decay, momentum, neg_lr;
  float grad_sign;  // -1 to maximize, else 1
};

// Arrays: parameter, gradient, square_avg, momentum_buffer (or null), grad_avg (or null).
using Pieces = sdk::ElementPieces<5>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop. The arrays come as
// restrict parameters: with five of them, restrict locals leave GCC more run-time alias checks
// than it makes, and the loop unvectorised. Weight decay is a template parameter and maximize a
// sign (negation by multiplication is exact) because loop-invariant branches left in the loop
// exceed what GCC unswitches in the largest variant.
template <bool Centered, bool Momentum, bool Decay>
OPTREG_KERNEL void rmsprop_kernel(const Constants& c, float* __restrict p, const float* __restrict g,
                                  float* __restrict square_avg, float* __restrict buf, float* __restrict grad_avg,
                                  std::size_t begin, std::size_t end) {
  const float alpha = c.alpha, one_minus_alpha = c.one_minus_alpha, eps = c.eps, weight_decay = c.weight_decay;
  const float momentum = c.momentum, neg_lr = c.neg_lr, grad_sign = c.grad_sign;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = g[i] * grad_sign;
    if (Decay) grad = grad + weight_decay * pi;
    float avg;
    if (Centered) {
      // sq - ga * ga cancels when the gradient varies little, which magnifies any difference
      // in the rounding of its terms: these three operations are fused multiply-adds, as in
      // PyTorch's CPU kernels, so that the variance matches theirs.
      const float sq = std::fma(one_minus_alpha * grad, grad, square_avg[i] * alpha);
      const float ga = std::fma(grad, one_minus_alpha, grad_avg[i] * alpha);
      square_avg[i] = sq;
      grad_avg[i] = ga;
      avg = std::sqrt(std::fma(-ga, ga, sq)) + eps;
    } else {
      const float sq = square_avg[i] * alpha + one_minus_alpha * grad * grad;
      square_avg[i] = sq;
      avg = std::sqrt(sq) + eps;
    }
    if (Momentum) {
      const float b = buf[i] * momentum + grad / avg;
      buf[i] = b;
      p[i] = pi + neg_lr * b;
    } else {
      p[i] = pi + neg_lr * grad / avg;
    }
  }
}

/// The data of the state tensor `name` of a parameter, created (zeros) if its options did not
/// need it when the group was added.
float* optional_state(optreg::ParamState& s, const char* name, const optreg::Parameter& p) {
  for (std::size_t k = 0; k < s.num_tensors(); ++k) {
    if (std::strcmp(s.tensors()[k].first.c_str(), name) == 0) return s.tensor(k).data();
  }
  return s.add_tensor(name, optreg::Tensor(p.value().shape())).data();
}

class Rmsprop final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, square_avg
    if (o.at("momentum").as_float() > 0.0) s.add_tensor("momentum_buffer", optreg::Tensor(p.value().shape()));
    if (o.at("centered").as_bool()) s.add_tensor("grad_avg", optreg::Tensor(p.value().shape()));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double alpha = o.at("alpha").as_float();
    const double wd = o.at("weight_decay").as_float();
    const double momentum = o.at("momentum").as_float();
    const bool centered = o.at("centered").as_bool();
    const bool use_momentum = momentum > 0.0;
    const Constants c{static_cast<float>(alpha),
                      static_cast<float>(1.0 - alpha),
                      static_cast<float>(o.at("eps").as_float()),
                      static_cast<float>(wd),
                      static_cast<float>(momentum),
                      static_cast<float>(-o.at("lr").as_float()),
                      o.at("maximize").as_bool() ? -1.0f : 1.0f};
    const bool use_decay = wd != 0.0;
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(),
                   use_momentum ? optional_state(s, "momentum_buffer", *slot.param) : nullptr,
                   centered ? optional_state(s, "grad_avg", *slot.param) : nullptr},
                  slot.param->value().numel());
    }
    // The kernel for this group's options: kernels[centered][momentum][decay].
    using Kernel = void (*)(const Constants&, float*, const float*, float*, float*, float*, std::size_t, std::size_t);
    static constexpr Kernel kernels[2][2][2] = {
        {{rmsprop_kernel<false, false, false>, rmsprop_kernel<false, false, true>},
         {rmsprop_kernel<false, true, false>, rmsprop_kernel<false, true, true>}},
        {{rmsprop_kernel<true, false, false>, rmsprop_kernel<true, false, true>},
         {rmsprop_kernel<true, true, false>, rmsprop_kernel<true, true, true>}}};
    const Kernel kernel = kernels[centered][use_momentum][use_decay];
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) {
      kernel(c, t.data[0], t.data[1], t.data[2], t.data[3], t.data[4], begin, end);
    });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Rmsprop, "rmsprop", "1.0.0",
                          "RMSprop with momentum, the centered variant, L2 weight decay and maximize", kSchema, kState)
