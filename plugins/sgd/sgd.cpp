// SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize, with the
// update rule and rounding order of PyTorch's torch.optim.SGD (single-tensor path).
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1e-3),
    sdk::option(&Hyper::momentum, sdk::float_option("momentum", 0.0, sdk::at_least(0.0),
                                                    "momentum factor (0 disables momentum)")),
    sdk::option(&Hyper::dampening, sdk::float_option("dampening", 0.0, sdk::closed(0.0, 1.0),
                                                     "dampening of the gradient added to the momentum")),
    sdk::weight_decay(&Hyper::weight_decay),
    sdk::option(&Hyper::nesterov,
                sdk::bool_option("nesterov", false, "use Nesterov momentum (needs momentum > 0 and dampening = 0)")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(), "running momentum (present once momentum is used)"),
    sdk::state_int("momentum_updates", sdk::count(), "updates that used the momentum buffer"),
};
constexpr auto kBuffer = sdk::tensor_entry(kState, "momentum_buffer");
constexpr auto kUpdates = sdk::scalar_entry(kState, "momentum_updates");

/// One element's update, without momentum or with its buffer; factor: 1 when the buffer is
/// filled for the first time (it then takes the gradient as it is).
template <typename A>
struct Rule {
  A neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, use_decay;

  explicit Rule(const Hyper& h)
      : neg_lr(static_cast<A>(-h.lr)), momentum(static_cast<A>(h.momentum)),
        one_minus_dampening(static_cast<A>(1.0 - h.dampening)), weight_decay(static_cast<A>(h.weight_decay)),
        nesterov(h.nesterov), maximize(h.maximize), use_decay(h.weight_decay != 0.0) {}

  A direction(A p, A g) const {
    A d = maximize ? -g : g;
    if (use_decay) d = d + weight_decay * p;
    return d;
  }
  void operator()(const sdk::Factors<A, 0>&, A& p, A g) const { p = p + neg_lr * direction(p, g); }
  void operator()(const sdk::Factors<A, 1>& f, A& p, A g, A& buf) const {
    A d = direction(p, g);
    const A b = f[0] != 0 ? d : buf * momentum + one_minus_dampening * d;
    buf = b;
    d = nesterov ? d + momentum * b : b;
    p = p + neg_lr * d;
  }
};

class Sgd final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;

 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    const Hyper h = kHyper.decode(o);
    if (h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0)) {
      throw optreg::OptionError(where, "nesterov",
                                "option 'nesterov' = true needs momentum > 0 and dampening = 0 (got momentum = " +
                                    o.at("momentum").to_string() + ", dampening = " + o.at("dampening").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    if (o.at("momentum").as_float() != 0.0) s.add_tensor(kBuffer.name, new_state(o, p, kBuffer.name));
    s.add_scalar("momentum_updates", std::int64_t{0});
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    if (h.momentum == 0.0) {
      plain_.clear();
      for (const Slot& slot : slots) plain_.add(*slot.param, {});
      plain_.run<Rule>(h);
      return;
    }
    sdk::advance_counts(slots, kUpdates);
    momentum_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      if (sdk::find(s, kBuffer) == nullptr) s.add_tensor(kBuffer.name, new_state(o, *slot.param, kBuffer.name));
      momentum_.add(*slot.param, {&sdk::get(s, kBuffer)}, {sdk::count(s, kUpdates) == 1 ? 1.0 : 0.0});
    }
    momentum_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<0> plain_;
  sdk::Elementwise<1, 1> momentum_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Sgd, "sgd", "1.0.0",
                          "Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay",
                          kHyper.schema, kState)
