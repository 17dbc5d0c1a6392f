// RMSprop (Hinton, Lecture 6e of "Neural Networks for Machine Learning", 2012) with momentum, the
// centered variant (Graves, 2013), L2 weight decay and maximize, with the update rule and rounding
// order of PyTorch's torch.optim.RMSprop (single-tensor path): eps is added after the square root.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-2),
    sdk::option(&Hyper::alpha, sdk::float_option("alpha", 0.99, sdk::closed(0.0, 1.0),
                                                 "decay rate of the running average of squared gradients")),
    sdk::eps(&Hyper::eps), sdk::weight_decay(&Hyper::weight_decay),
    sdk::option(&Hyper::momentum,
                sdk::float_option("momentum", 0.0, sdk::at_least(0.0), "momentum factor (0 disables momentum)")),
    sdk::option(&Hyper::centered, sdk::bool_option("centered", false,
                                                   "divide by an estimate of the gradient's variance instead of its "
                                                   "second moment")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("square_avg", sdk::non_negative(), "running average of squared gradients"),
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(),
                               "running momentum of the scaled gradients (momentum > 0)"),
    sdk::optional_state_tensor("grad_avg", sdk::not_nan(), "running average of the gradients (centered)"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kSquareAvg = sdk::tensor_entry(kState, "square_avg");
constexpr auto kBuffer = sdk::tensor_entry(kState, "momentum_buffer");
constexpr auto kGradAvg = sdk::tensor_entry(kState, "grad_avg");

/// The rule of one combination of the options centered and momentum. Maximize is a sign
/// (negation by multiplication is exact), so that few loop-invariant branches stay in the loop.
template <bool Centered, bool Momentum>
struct Rules {
  template <typename A>
  struct Rule {
    A alpha, one_minus_alpha, eps, weight_decay, momentum, neg_lr, grad_sign;
    bool use_decay;

    explicit Rule(const Hyper& h)
        : alpha(static_cast<A>(h.alpha)), one_minus_alpha(static_cast<A>(1.0 - h.alpha)), eps(static_cast<A>(h.eps)),
          weight_decay(static_cast<A>(h.weight_decay)), momentum(static_cast<A>(h.momentum)),
          neg_lr(static_cast<A>(-h.lr)), grad_sign(h.maximize ? A(-1) : A(1)), use_decay(h.weight_decay != 0.0) {}

    /// The denominator; with Centered, `grad_avg` is the running average of the gradients.
    A denominator(A grad, A& square_avg, A* grad_avg) const {
      if constexpr (Centered) {
        // sq - ga * ga cancels when the gradient varies little, which magnifies any difference
        // in the rounding of its terms: these three operations are fused multiply-adds, as in
        // PyTorch's CPU kernels, so that the variance matches theirs.
        const A sq = std::fma(one_minus_alpha * grad, grad, square_avg * alpha);
        const A ga = std::fma(grad, one_minus_alpha, *grad_avg * alpha);
        square_avg = sq;
        *grad_avg = ga;
        return std::sqrt(std::fma(-ga, ga, sq)) + eps;
      } else {
        const A sq = square_avg * alpha + one_minus_alpha * grad * grad;
        square_avg = sq;
        return std::sqrt(sq) + eps;
      }
    }
    A gradient(A p, A g) const {
      A grad = g * grad_sign;
      if (use_decay) grad = grad + weight_decay * p;
      return grad;
    }
    void apply(A& p, A grad, A avg, A* buf) const {
      if constexpr (Momentum) {
        const A b = *buf * momentum + grad / avg;
        *buf = b;
        p = p + neg_lr * b;
      } else {
        p = p + neg_lr * grad / avg;
      }
    }
    // Arrays: square_avg, then momentum_buffer when Momentum, then grad_avg when Centered.
    void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& sq) const {
      const A grad = gradient(p, g);
      apply(p, grad, denominator(grad, sq, nullptr), nullptr);
    }
    void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& sq, A& other) const {
      const A grad = gradient(p, g);
      apply(p, grad, denominator(grad, sq, &other), &other);
    }
    void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& sq, A& buf, A& grad_avg) const {
      const A grad = gradient(p, g);
      apply(p, grad, denominator(grad, sq, &grad_avg), &buf);
    }
  };
};

class Rmsprop final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, square_avg
    if (o.at("momentum").as_float() > 0.0) s.add_tensor(kBuffer.name, new_state(o, p, kBuffer.name));
    if (o.at("centered").as_bool()) s.add_tensor(kGradAvg.name, new_state(o, p, kGradAvg.name));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    const bool momentum = h.momentum > 0.0;
    sdk::advance_counts(slots, kStep);
    one_.clear();
    two_.clear();
    three_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      Tensor* sq = &sdk::get(s, kSquareAvg);
      Tensor* buf = momentum ? &optional(o, s, kBuffer, *slot.param) : nullptr;
      Tensor* avg = h.centered ? &optional(o, s, kGradAvg, *slot.param) : nullptr;
      if (buf != nullptr && avg != nullptr) {
        three_.add(*slot.param, {sq, buf, avg});
      } else if (buf != nullptr || avg != nullptr) {
        two_.add(*slot.param, {sq, buf != nullptr ? buf : avg});
      } else {
        one_.add(*slot.param, {sq});
      }
    }
    if (h.centered && momentum) {
      three_.run<Rules<true, true>::Rule>(h);
    } else if (h.centered) {
      two_.run<Rules<true, false>::Rule>(h);
    } else if (momentum) {
      two_.run<Rules<false, true>::Rule>(h);
    } else {
      one_.run<Rules<false, false>::Rule>(h);
    }
  }

 private:
  using Tensor = optreg::Tensor;

  /// The state tensor `e`, created (zeros) if the options did not need it when the group was added.
  Tensor& optional(const optreg::Options& o, optreg::ParamState& s, sdk::TensorEntry e, const optreg::Parameter& p) const {
    Tensor* t = sdk::find(s, e);
    return t != nullptr ? *t : s.add_tensor(e.name, new_state(o, p, e.name));
  }

  sdk::Elementwise<1> one_;
  sdk::Elementwise<2> two_;
  sdk::Elementwise<3> three_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Rmsprop, "rmsprop", "1.0.0",
                          "RMSprop with momentum, the centered variant, L2 weight decay and maximize", kHyper.schema,
                          kState)
