// Adagrad (Duchi, Hazan & Singer, JMLR 2011) with learning-rate decay, L2 weight decay, an initial
// accumulator value and maximize, with the update rule and rounding order of PyTorch's
// torch.optim.Adagrad (single-tensor path): eps is added after the square root. With
// eps_inside_sqrt it takes MegEngine's form instead, where eps is added to the sum of squares under
// the square root.
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, lr_decay, weight_decay, initial_accumulator_value, eps;
  bool maximize, eps_inside_sqrt;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-2),
    sdk::option(&Hyper::lr_decay, sdk::float_option("lr_decay", 0.0, sdk::at_least(0.0),
                                                    "learning-rate decay: step t uses lr / (1 + (t - 1) * lr_decay)")),
    sdk::weight_decay(&Hyper::weight_decay),
    sdk::option(&Hyper::initial_accumulator_value,
                sdk::float_option("initial_accumulator_value", 0.0, sdk::at_least(0.0),
                                  "starting value of every element of the sum of squared gradients")),
    sdk::eps(&Hyper::eps, 1e-10), sdk::maximize(&Hyper::maximize),
    sdk::option(&Hyper::eps_inside_sqrt,
                sdk::bool_option("eps_inside_sqrt", false,
                                 "add eps under the square root, sqrt(sum + eps), as MegEngine does, instead of sqrt(sum) + eps")));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("sum", sdk::non_negative(), "sum of squared gradients"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kSum = sdk::tensor_entry(kState, "sum");

/// One element's update; factor: the step's lr (negated unless eps is inside the square root).
template <typename A>
struct Rule {
  A weight_decay, eps;
  bool use_decay, maximize, inside;

  explicit Rule(const Hyper& h)
      : weight_decay(static_cast<A>(h.weight_decay)), eps(static_cast<A>(h.eps)), use_decay(h.weight_decay != 0.0),
        maximize(h.maximize), inside(h.eps_inside_sqrt) {}

  void operator()(const sdk::Factors<A, 1>& f, A& p, A g, A& sum) const {
    A grad = maximize ? -g : g;
    if (use_decay) grad = grad + weight_decay * p;
    const A s = sum + grad * grad;
    sum = s;
    p = inside ? p - f[0] * (grad / std::sqrt(s + eps)) : p + f[0] * grad / (std::sqrt(s) + eps);
  }
};

class Adagrad final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_scalar("step", std::int64_t{0});
    s.add_tensor("sum", sdk::state_like(p, o.at("initial_accumulator_value").as_float()));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const double clr = h.lr / (1.0 + static_cast<double>(sdk::count(s, kStep) - 1) * h.lr_decay);
      driver_.add(*slot.param, {&sdk::get(s, kSum)}, {h.eps_inside_sqrt ? clr : -clr});
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<1, 1> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adagrad, "adagrad", "1.0.0",
                          "Adagrad with lr decay, L2 weight decay and maximize; eps outside or inside the square root",
                          kHyper.schema, kState)
