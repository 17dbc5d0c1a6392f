// Averaged SGD (Polyak & Juditsky, 1992; with the step-size schedule of Bottou, "Stochastic
// Gradient Descent Tricks", 2012) with L2 weight decay and maximize, with the update rule and
// rounding order of PyTorch's torch.optim.ASGD (single-tensor path), whose order of operations
// it keeps: step t shrinks the parameter by 1 - lambd * eta and moves it by -eta * gradient with
// the eta computed at the end of step t - 1 (the group's lr at the first update), then averages
// with the mu of step t - 1, and only then computes eta and mu for the next step. eta and mu are
// float32 values, as PyTorch keeps them in float32 tensors. The average `ax` is state for the
// caller to read; it never feeds back into the parameter. One pass over the elements of all the
// group's tensors, split across threads.
#include <algorithm>
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-2, sdk::at_least(0.0), "learning rate: the step size eta before any decay"),
    sdk::float_option("lambd", 1e-4, sdk::at_least(0.0), "decay term: shrinks the parameter and slows the decay of eta"),
    sdk::float_option("alpha", 0.75, sdk::at_least(0.0), "power of the decay of eta"),
    sdk::float_option("t0", 1e6, sdk::at_least(0.0), "step after which averaging starts"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_float("eta", sdk::non_negative(), "step size of the next update, a float32 value"),
    sdk::state_float("mu", sdk::closed(0.0, 1.0),
                     "averaging coefficient of the next update, a float32 value (1: copy the parameter)"),
    sdk::state_tensor("ax", sdk::not_nan(), "running average of the parameter"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float weight_decay;
  bool use_decay, maximize;
};

// Arrays: parameter, gradient, ax; factors: 1 - lambd * eta, -eta, mu.
using Pieces = sdk::ElementPieces<3, 3>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
OPTREG_KERNEL void asgd_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict ax = t.data[2];
  const float weight_decay = c.weight_decay, shrink = t.factors[0], neg_eta = t.factors[1], mu = t.factors[2];
  const bool use_decay = c.use_decay, maximize = c.maximize, average = mu != 1.0f;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = maximize ? -g[i] : g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float next = pi * shrink + neg_eta * grad;
    p[i] = next;
    ax[i] = average ? ax[i] + (next - ax[i]) * mu : next;
  }
}

class Asgd final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    Optimizer::init_state(o, p, s);  // step, eta, mu, ax
    s.scalar(1) = static_cast<double>(static_cast<float>(o.at("lr").as_float()));
    s.scalar(2) = 1.0;
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double lr = o.at("lr").as_float();
    const double lambd = o.at("lambd").as_float();
    const double alpha = o.at("alpha").as_float();
    const double t0 = o.at("t0").as_float();
    const double wd = o.at("weight_decay").as_float();
    const Constants c{static_cast<float>(wd), wd != 0.0, o.at("maximize").as_bool()};
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = std::get<std::int64_t>(s.scalar(0));
      double& eta = std::get<double>(s.scalar(1));
      double& mu = std::get<double>(s.scalar(2));
      // PyTorch creates this state at the parameter's first update, from the lr of that moment.
      if (step == 1) eta = static_cast<double>(static_cast<float>(lr));
      const double t = static_cast<double>(step);
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data()},
                  slot.param->value().numel(),
                  {static_cast<float>(1.0 - lambd * eta), static_cast<float>(-eta), static_cast<float>(mu)});
      eta = static_cast<double>(static_cast<float>(lr / std::pow(1.0 + lambd * lr * t, alpha)));
      mu = static_cast<double>(static_cast<float>(1.0 / std::max(1.0, t - t0)));
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) { asgd_kernel(c, t, begin, end); });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Asgd, "asgd", "1.0.0", "Averaged SGD with L2 weight decay and maximize", kSchema, kState)
