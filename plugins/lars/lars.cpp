// LARS (You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
// Algorithm 1): each parameter tensor gets its own local learning rate
//     local = trust_coefficient * ||p|| / (||g|| + weight_decay * ||p|| + eps)
// (1 when ||p|| or ||g|| is 0), which scales the gradient with its L2 weight decay,
// g' = local * (g + weight_decay * p), before a momentum SGD step with the global lr, in
// PyTorch's SGD form (lr outside the momentum buffer; optional Nesterov momentum).
//
// Two passes over each tensor: the first sums p^2 and g^2 in double per fixed segment
// (sdk::Elementwise::reduce), so the norms have the same bits with any thread count; the second
// updates.
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr, momentum, weight_decay, trust_coefficient, eps;
  bool nesterov;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1.0, sdk::at_least(0.0),
                                              "global learning rate, multiplied by each tensor's local rate")),
    sdk::option(&Hyper::momentum,
                sdk::float_option("momentum", 0.9, sdk::at_least(0.0), "momentum factor (0 disables momentum)")),
    sdk::weight_decay(&Hyper::weight_decay),
    sdk::option(&Hyper::trust_coefficient,
                sdk::float_option("trust_coefficient", 1e-3, sdk::greater_than(0.0),
                                  "trust coefficient eta: the local rate is eta * ||p|| / (||g|| + weight_decay * ||p|| + eps)")),
    sdk::option(&Hyper::eps, sdk::float_option("eps", 1e-8, sdk::at_least(0.0), "term added to the local rate's denominator")),
    sdk::option(&Hyper::nesterov, sdk::bool_option("nesterov", false, "use Nesterov momentum (needs momentum > 0)")));

constexpr sdk::State kState[] = {
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(), "running momentum (present once momentum is used)"),
};
constexpr auto kBuffer = sdk::tensor_entry(kState, "momentum_buffer");

/// The norms phase sums p^2 and g^2 of each tensor; the update phase applies the tensor's local
/// rate (factor 0), with or without the momentum buffer.
template <typename A>
struct Rule {
  A neg_lr, momentum, weight_decay;
  bool use_decay, nesterov;

  explicit Rule(const Hyper& h)
      : neg_lr(static_cast<A>(-h.lr)), momentum(static_cast<A>(h.momentum)),
        weight_decay(static_cast<A>(h.weight_decay)), use_decay(h.weight_decay != 0.0), nesterov(h.nesterov) {}

  template <typename... Buffer>
  std::array<double, 2> terms(const sdk::Factors<A, 1>&, A p, A g, Buffer&...) const {
    const double pd = p, gd = g;
    return {pd * pd, gd * gd};
  }
  A direction(const sdk::Factors<A, 1>& f, A p, A g) const {
    A d = g;
    if (use_decay) d = d + weight_decay * p;
    return d * f[0];
  }
  void operator()(const sdk::Factors<A, 1>& f, A& p, A g) const { p = p + neg_lr * direction(f, p, g); }
  void operator()(const sdk::Factors<A, 1>& f, A& p, A g, A& buf) const {
    A d = direction(f, p, g);
    const A b = buf * momentum + d;
    buf = b;
    d = nesterov ? d + momentum * b : b;
    p = p + neg_lr * d;
  }
};

class Lars final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerWholeTensors;  // per-tensor norms

 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    const Hyper h = kHyper.decode(o);
    if (h.nesterov && h.momentum <= 0.0) {
      throw optreg::OptionError(where, "nesterov", "option 'nesterov' = true needs momentum > 0 (got momentum = " +
                                o.at("momentum").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    if (o.at("momentum").as_float() != 0.0) s.add_tensor("momentum_buffer", sdk::state_like(p));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    if (h.momentum != 0.0) {
      for (const Slot& slot : slots) {
        if (sdk::find(*slot.state, kBuffer) == nullptr) slot.state->add_tensor("momentum_buffer", sdk::state_like(*slot.param));
      }
      step(h, slots, momentum_);
    } else {
      step(h, slots, plain_);
    }
  }

 private:
  /// The two phases with `driver`: the norms of every tensor, then the update at its local rate.
  template <std::size_t K>
  void step(const Hyper& h, const std::vector<Slot>& slots, sdk::Elementwise<K, 1>& driver) {
    driver.clear();
    for (const Slot& slot : slots) {
      std::array<optreg::Tensor*, K> state{};
      if constexpr (K == 1) state[0] = &sdk::get(*slot.state, kBuffer);
      driver.add(*slot.param, state, {1.0});
    }
    driver.template reduce<2, Rule>(h, sums_);
    for (std::size_t i = 0; i < sums_.size(); ++i) {
      const double p_norm = std::sqrt(sums_[i][0]);
      const double g_norm = std::sqrt(sums_[i][1]);
      if (p_norm > 0.0 && g_norm > 0.0) {
        driver.set_factor(i, 0, h.trust_coefficient * p_norm / (g_norm + h.weight_decay * p_norm + h.eps));
      }
    }
    driver.template run_tensors<Rule>(h);
  }

  std::vector<std::array<double, 2>> sums_;  // per tensor: the sums of p^2 and g^2
  sdk::Elementwise<0, 1> plain_;
  sdk::Elementwise<1, 1> momentum_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lars, "lars", "1.0.0",
                          "LARS: momentum SGD with a per-tensor local learning rate from ||p|| / ||g||", kHyper.schema,
                          kState)
