// Averaged SGD (Polyak & Juditsky, 1992; with the step-size schedule of Bottou, "Stochastic
// Gradient Descent Tricks", 2012) with L2 weight decay and maximize, with the update rule and
// rounding order of PyTorch's torch.optim.ASGD (single-tensor path), whose order of operations it
// keeps: step t shrinks the parameter by 1 - lambd * eta and moves it by -eta * gradient with the
// eta computed at the end of step t - 1 (the group's lr at the first update), then averages with
// the mu of step t - 1, and only then computes eta and mu for the next step. eta and mu are float32
// values, as PyTorch keeps them in float32 tensors. The average `ax` is state for the caller to
// read; it never feeds back into the parameter.
#include <algorithm>
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, lambd, alpha, t0, weight_decay;
  bool maximize;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1e-2, sdk::at_least(0.0), "learning rate: the step size eta before any decay")),
    sdk::option(&Hyper::lambd, sdk::float_option("lambd", 1e-4, sdk::at_least(0.0),
                                                 "decay term: shrinks the parameter and slows the decay of eta")),
    sdk::option(&Hyper::alpha, sdk::float_option("alpha", 0.75, sdk::at_least(0.0), "power of the decay of eta")),
    sdk::option(&Hyper::t0, sdk::float_option("t0", 1e6, sdk::at_least(0.0), "step after which averaging starts")),
    sdk::weight_decay(&Hyper::weight_decay), sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_float("eta", sdk::non_negative(), "step size of the next update, a float32 value"),
    sdk::state_float("mu", sdk::closed(0.0, 1.0),
                     "averaging coefficient of the next update, a float32 value (1: copy the parameter)"),
    sdk::state_tensor("ax", sdk::not_nan(), "running average of the parameter"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kEta = sdk::scalar_entry(kState, "eta");
constexpr auto kMu = sdk::scalar_entry(kState, "mu");
constexpr auto kAx = sdk::tensor_entry(kState, "ax");

/// One element's update; factors: 1 - lambd * eta, -eta and mu (eta and mu are float32 values).
template <typename A>
struct Rule {
  A weight_decay;
  bool use_decay, maximize;

  explicit Rule(const Hyper& h)
      : weight_decay(static_cast<A>(h.weight_decay)), use_decay(h.weight_decay != 0.0), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 3>& f, A& p, A g, A& ax) const {
    A grad = maximize ? -g : g;
    if (use_decay) grad = grad + weight_decay * p;
    const A next = p * f[0] + f[1] * grad;
    p = next;
    ax = f[2] != A(1) ? ax + (next - ax) * f[2] : next;
  }
};

/// x rounded to float32 and back: eta and mu are float32 values, as in PyTorch's tensors.
double single(double x) { return static_cast<double>(static_cast<float>(x)); }

class Asgd final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, eta, mu, ax
    sdk::real(s, kEta) = single(o.at("lr").as_float());
    sdk::real(s, kMu) = 1.0;
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = sdk::count(s, kStep);
      double& eta = sdk::real(s, kEta);
      double& mu = sdk::real(s, kMu);
      if (step == 1) eta = single(h.lr);
      const auto t = static_cast<double>(step);
      // The factors in double: the driver rounds them to float for float32 (and half-precision)
      // parameters, as PyTorch rounds a Python scalar for a float tensor, and keeps them for
      // float64 ones, which PyTorch multiplies by the unrounded 1 - lambd * eta.
      driver_.add(*slot.param, {&sdk::get(s, kAx)}, {1.0 - h.lambd * eta, -eta, mu});
      eta = single(h.lr / std::pow(1.0 + h.lambd * h.lr * t, h.alpha));
      mu = single(1.0 / std::max(1.0, t - h.t0));
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<1, 3> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Asgd, "asgd", "1.0.0", "Averaged SGD with L2 weight decay and maximize", kHyper.schema, kState)
