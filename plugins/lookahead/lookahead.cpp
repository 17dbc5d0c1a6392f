// Lookahead (Zhang, Lucas, Hinton and Ba, 2019), a wrapper: the inner optimizer takes the fast
// steps; every k of them the slow weights move alpha of the way to the fast ones, and the fast
// weights restart from there.
#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;

struct Hyper {
  std::int64_t k;
  double alpha;
};

constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::k, sdk::int_option("k", 5, sdk::closed(1.0, 1e9), "fast steps between two slow updates")),
    sdk::option(&Hyper::alpha, sdk::float_option("alpha", 0.5, sdk::closed(0.0, 1.0),
                                                 "the step of the slow weights towards the fast ones")));

constexpr sdk::State kState[] = {
    sdk::state_tensor("slow_weights", sdk::not_nan(), "the slow weights (the parameter's value at the last sync)"),
    sdk::state_int("lookahead_steps", sdk::count(), "fast steps the parameter took"),
};
constexpr auto kSlow = sdk::tensor_entry(kState, "slow_weights");
constexpr auto kSteps = sdk::scalar_entry(kState, "lookahead_steps");

/// The sync of one element: slow += alpha (fast - slow), fast = slow (as torch-optimizer's and
/// the paper's reference implementations compute it).
template <typename A>
struct Rule {
  A alpha;
  explicit Rule(const Hyper& h) : alpha(static_cast<A>(h.alpha)) {}
  void operator()(const sdk::Factors<A, 0>&, A& p, A /*g*/, A& slow) const {
    slow = slow + alpha * (p - slow);
    p = slow;
  }
};

class Lookahead final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kStateDTypes = sdk::kElementwiseStateDTypes;
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerWrapper;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    optreg::Tensor slow = new_state(o, p, kSlow.name);
    slow.copy_from(p.value().to(slow.dtype()));  // the slow weights start at the parameter
    s.add_tensor(kSlow.name, slow);
    s.add_scalar(kSteps.name, std::int64_t{0});
  }

  // Runs after the inner optimizer's update of the same slots.
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    sdk::advance_counts(slots, kSteps);
    sync_.clear();
    for (const Slot& slot : slots) {
      if (sdk::count(*slot.state, kSteps) % h.k != 0) continue;
      sync_.add(*slot.param, {&sdk::get(*slot.state, kSlow)});
    }
    sync_.run<Rule>(h);
  }

 private:
  sdk::Elementwise<1> sync_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lookahead, "lookahead", "1.0.0",
                          "Lookahead: a wrapper whose slow weights follow the inner optimizer's every k steps",
                          kHyper.schema, kState)
