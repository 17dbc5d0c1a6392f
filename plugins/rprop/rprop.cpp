// Rprop (Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation Learning: The
// RPROP Algorithm", 1993), in the variant of PyTorch's torch.optim.Rprop (single-tensor path): each
// element's step size grows by etaplus while its gradient keeps its sign and shrinks by etaminus
// when the sign flips, within step_sizes; after a flip the element does not move and its gradient
// is remembered as 0. The parameter moves by the step size against the sign of the gradient. lr is
// only the initial step size, set at a parameter's first update.
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  double lr;
  std::array<double, 2> etas, step_sizes;
  bool maximize;
};

constexpr double kEtas[] = {0.5, 1.2};
constexpr double kStepSizes[] = {1e-6, 50.0};
constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1e-2, sdk::greater_than(0.0),
                                              "initial step size of every element, taken at the parameter's first update")),
    sdk::option(&Hyper::etas, sdk::float_list_option("etas", kEtas, sdk::greater_than(0.0),
                                                     "(etaminus, etaplus): step-size factors after a sign flip and after a "
                                                     "kept sign; 0 < etaminus < 1 < etaplus")),
    sdk::option(&Hyper::step_sizes, sdk::float_list_option("step_sizes", kStepSizes, sdk::at_least(0.0),
                                                           "(minimum, maximum) step size; minimum <= maximum")),
    sdk::maximize(&Hyper::maximize));

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    // A NaN gradient is remembered as it is and counts as a zero sign: no value is wrong here.
    sdk::state_tensor("prev", sdk::any_value(), "gradient of the last update (0 where its sign flipped)"),
    sdk::state_tensor("step_size", sdk::non_negative(), "step size of each element"),
};
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kPrev = sdk::tensor_entry(kState, "prev");
constexpr auto kStepSize = sdk::tensor_entry(kState, "step_size");

/// One element's update. A NaN gradient counts as a zero sign, as in PyTorch: the step size and
/// the parameter stay.
template <typename A>
struct Rule {
  A etaminus, etaplus, lo, hi;
  bool maximize;

  explicit Rule(const Hyper& h)
      : etaminus(static_cast<A>(h.etas[0])), etaplus(static_cast<A>(h.etas[1])), lo(static_cast<A>(h.step_sizes[0])),
        hi(static_cast<A>(h.step_sizes[1])), maximize(h.maximize) {}

  void operator()(const sdk::Factors<A, 0>&, A& p, A g, A& prev, A& step_size) const {
    const A raw = maximize ? -g : g;
    const A agreement = raw * prev;
    const bool flipped = agreement < A(0);
    const A factor = agreement > A(0) ? etaplus : (flipped ? etaminus : A(1));
    A s = step_size * factor;
    s = s < lo ? lo : s;
    s = s > hi ? hi : s;
    step_size = s;
    const A grad = flipped ? A(0) : raw;
    const A sign = static_cast<A>(static_cast<int>(grad > A(0)) - static_cast<int>(grad < A(0)));
    p = p - sign * s;
    prev = grad;
  }
};

class Rprop final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;

 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    const Hyper h = kHyper.decode(o);
    if (!(h.etas[0] < 1.0 && 1.0 < h.etas[1])) {
      throw optreg::OptionError(where, "etas", "option 'etas' must satisfy 0 < etaminus < 1 < etaplus (got " +
                                o.at("etas").to_string() + ")");
    }
    if (h.step_sizes[0] > h.step_sizes[1]) {
      throw optreg::OptionError(where, "step_sizes",
                                "option 'step_sizes' must hold (minimum, maximum) with minimum <= maximum (got " +
                                    o.at("step_sizes").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_tensor("prev", sdk::state_like(p));
    s.add_tensor("step_size", sdk::state_like(p, o.at("lr").as_float()));
    s.add_scalar("step", std::int64_t{0});
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kStep);
    driver_.clear();
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      // PyTorch creates the step sizes at the parameter's first update, from the lr of that moment.
      if (sdk::count(s, kStep) == 1) sdk::get(s, kStepSize).fill(h.lr);
      driver_.add(*slot.param, {&sdk::get(s, kPrev), &sdk::get(s, kStepSize)});
    }
    driver_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<2> driver_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Rprop, "rprop", "1.0.0", "Rprop (resilient backpropagation) with maximize", kHyper.schema,
                          kState)
