// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012) with L2 weight decay and
// maximize, with the update rule and rounding order of PyTorch's torch.optim.Adadelta
// (single-tensor path). One pass over the elements of all the group's tensors, split across
// threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1.0, sdk::at_least(0.0), "coefficient that scales the update before it is applied"),
    sdk::float_option("rho", 0.9, sdk::closed(0.0, 1.0),
                      "decay rate of the running averages of squared gradients and squared updates"),
    sdk::float_option("eps", 1e-6, sdk::greater_than(0.0), "term added under both square roots for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("square_avg", sdk::non_negative(), "running average of squared gradients"),
    sdk::state_tensor("acc_delta", sdk::non_negative(), "running average of squared updates"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float rho, one_minus_rho, eps, weight_decay, neg_lr;
  bool use_decay, maximize;
};

// Arrays: parameter, gradient, square_avg, acc_delta.
using Pieces = sdk::ElementPieces<4>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
OPTREG_KERNEL void adadelta_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict square_avg = t.data[2];
  float* __restrict acc_delta = t.data[3];
  const float rho = c.rho, one_minus_rho = c.one_minus_rho, eps = c.eps, weight_decay = c.weight_decay;
  const float neg_lr = c.neg_lr;
  const bool use_decay = c.use_decay, maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = maximize ? -g[i] : g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float sq = square_avg[i] * rho + one_minus_rho * grad * grad;
    square_avg[i] = sq;
    const float delta = std::sqrt(acc_delta[i] + eps) / std::sqrt(sq + eps) * grad;
    acc_delta[i] = acc_delta[i] * rho + one_minus_rho * delta * delta;
    p[i] = pi + neg_lr * delta;
  }
}

class Adadelta final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double rho = o.at("rho").as_float();
    const double wd = o.at("weight_decay").as_float();
    const Constants c{static_cast<float>(rho),
                      static_cast<float>(1.0 - rho),
                      static_cast<float>(o.at("eps").as_float()),
                      static_cast<float>(wd),
                      static_cast<float>(-o.at("lr").as_float()),
                      wd != 0.0,
                      o.at("maximize").as_bool()};
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(), s.tensor(1).data()},
                  slot.param->value().numel());
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) { adadelta_kernel(c, t, begin, end); });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adadelta, "adadelta", "1.0.0", "Adadelta with L2 weight decay and maximize", kSchema, kState)
