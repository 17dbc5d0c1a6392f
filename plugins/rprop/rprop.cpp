// Rprop (Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation Learning: The
// RPROP Algorithm", 1993), in the variant of PyTorch's torch.optim.Rprop (single-tensor path):
// each element's step size grows by etaplus while its gradient keeps its sign and shrinks by
// etaminus when the sign flips, within step_sizes; after a flip the element does not move and
// its gradient is remembered as 0. The parameter moves by the step size against the sign of the
// gradient. lr is only the initial step size, set at a parameter's first update. One pass over
// the elements of all the group's tensors, split across threads.
#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultEtas[] = {0.5, 1.2};
constexpr double kDefaultStepSizes[] = {1e-6, 50.0};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-2, sdk::greater_than(0.0),
                      "initial step size of every element, taken at the parameter's first update"),
    sdk::float_list_option("etas", kDefaultEtas, sdk::greater_than(0.0),
                           "(etaminus, etaplus): step-size factors after a sign flip and after a kept sign; "
                           "0 < etaminus < 1 < etaplus"),
    sdk::float_list_option("step_sizes", kDefaultStepSizes, sdk::at_least(0.0),
                           "(minimum, maximum) step size; minimum <= maximum"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    // A NaN gradient is remembered as it is and counts as a zero sign: no value is wrong here.
    sdk::state_tensor("prev", sdk::any_value(), "gradient of the last update (0 where its sign flipped)"),
    sdk::state_tensor("step_size", sdk::non_negative(), "step size of each element"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float etaminus, etaplus, step_size_min, step_size_max;
  bool maximize;
};

// Arrays: parameter, gradient, prev, step_size.
using Pieces = sdk::ElementPieces<4>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop. A NaN gradient
// counts as a zero sign, as in PyTorch: the step size and the parameter stay.
OPTREG_KERNEL void rprop_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict prev = t.data[2];
  float* __restrict step_size = t.data[3];
  const float etaminus = c.etaminus, etaplus = c.etaplus, lo = c.step_size_min, hi = c.step_size_max;
  const bool maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    const float gi = g[i];
    const float raw = maximize ? -gi : gi;
    const float agreement = raw * prev[i];
    const bool flipped = agreement < 0.0f;
    const float factor = agreement > 0.0f ? etaplus : (flipped ? etaminus : 1.0f);
    float s = step_size[i] * factor;
    s = s < lo ? lo : s;
    s = s > hi ? hi : s;
    step_size[i] = s;
    const float grad = flipped ? 0.0f : raw;
    const float sign = static_cast<float>(static_cast<int>(grad > 0.0f) - static_cast<int>(grad < 0.0f));
    p[i] = p[i] - sign * s;
    prev[i] = grad;
  }
}

class Rprop final : public optreg::Optimizer {
 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    const auto& etas = o.at("etas").as_float_list();
    if (!(etas[0] < 1.0 && 1.0 < etas[1])) {
      throw optreg::OptionError(where, "etas", "option 'etas' must satisfy 0 < etaminus < 1 < etaplus (got " +
                                o.at("etas").to_string() + ")");
    }
    const auto& sizes = o.at("step_sizes").as_float_list();
    if (sizes[0] > sizes[1]) {
      throw optreg::OptionError(where, "step_sizes", "option 'step_sizes' must hold (minimum, maximum) with minimum <= maximum (got " +
                                o.at("step_sizes").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_tensor("prev", optreg::Tensor(p.value().shape()));
    s.add_tensor("step_size", optreg::Tensor(p.value().shape(), static_cast<float>(o.at("lr").as_float())));
    s.add_scalar("step", std::int64_t{0});
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& etas = o.at("etas").as_float_list();
    const auto& sizes = o.at("step_sizes").as_float_list();
    const Constants c{static_cast<float>(etas[0]), static_cast<float>(etas[1]), static_cast<float>(sizes[0]),
                      static_cast<float>(sizes[1]), o.at("maximize").as_bool()};
    const float lr = static_cast<float>(o.at("lr").as_float());
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      // PyTorch creates the step sizes at the parameter's first update, from the lr of that moment.
      if (std::get<std::int64_t>(s.scalar(0)) == 1) s.tensor(1).fill(lr);
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data()},
                  slot.param->value().numel());
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) { rprop_kernel(c, t, begin, end); });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Rprop, "rprop", "1.0.0", "Rprop (resilient backpropagation) with maximize", kSchema, kState)
