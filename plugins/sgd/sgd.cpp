// SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize, with the
// update rule and rounding order of PyTorch's torch.optim.SGD (single-tensor path). One pass
// over the elements of all the group's tensors, split across the threads.
#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_option("momentum", 0.0, sdk::at_least(0.0), "momentum factor (0 disables momentum)"),
    sdk::float_option("dampening", 0.0, sdk::closed(0.0, 1.0), "dampening of the gradient added to the momentum"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::bool_option("nesterov", false, "use Nesterov momentum (needs momentum > 0 and dampening = 0)"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
};

constexpr sdk::State kState[] = {
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(), "running momentum (present once momentum is used)"),
    sdk::state_int("momentum_updates", sdk::count(), "updates that used the momentum buffer"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, use_decay;
};

/// One tensor's pointers; `first` when its momentum buffer is filled for the first time.
struct Tensors {
  float* p;
  const float* g;
  float* buf;
  bool first;
  std::size_t n;  // elements

  /// Whether `t` continues this range in every array.
  bool continued_by(const Tensors& t) const noexcept {
    return sdk::follows(p, n, t.p) && sdk::follows(g, n, t.g) &&
           (buf == nullptr ? t.buf == nullptr : sdk::follows(buf, n, t.buf)) && first == t.first;
  }
};

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
OPTREG_KERNEL void plain_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  const float neg_lr = c.neg_lr, weight_decay = c.weight_decay;
  const bool use_decay = c.use_decay, maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    float d = maximize ? -g[i] : g[i];
    if (use_decay) d = d + weight_decay * p[i];
    p[i] = p[i] + neg_lr * d;
  }
}

OPTREG_KERNEL void momentum_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict buf = t.buf;
  const float neg_lr = c.neg_lr, momentum = c.momentum, one_minus_dampening = c.one_minus_dampening;
  const float weight_decay = c.weight_decay;
  const bool use_decay = c.use_decay, maximize = c.maximize, nesterov = c.nesterov, first = t.first;
  for (std::size_t i = begin; i < end; ++i) {
    float d = maximize ? -g[i] : g[i];
    if (use_decay) d = d + weight_decay * p[i];
    const float b = first ? d : buf[i] * momentum + one_minus_dampening * d;
    buf[i] = b;
    d = nesterov ? d + momentum * b : b;
    p[i] = p[i] + neg_lr * d;
  }
}

class Sgd final : public optreg::Optimizer {
 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    if (o.at("nesterov").as_bool() &&
        (o.at("momentum").as_float() <= 0.0 || o.at("dampening").as_float() != 0.0)) {
      throw optreg::OptionError(where, "nesterov", "option 'nesterov' = true needs momentum > 0 and dampening = 0 (got momentum = " +
                                o.at("momentum").to_string() + ", dampening = " + o.at("dampening").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    if (o.at("momentum").as_float() != 0.0) s.add_tensor("momentum_buffer", optreg::Tensor(p.value().shape()));
    s.add_scalar("momentum_updates", std::int64_t{0});
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double momentum = o.at("momentum").as_float();
    const double wd = o.at("weight_decay").as_float();
    const Constants c{static_cast<float>(-o.at("lr").as_float()),
                      static_cast<float>(momentum),
                      static_cast<float>(1.0 - o.at("dampening").as_float()),
                      static_cast<float>(wd),
                      o.at("nesterov").as_bool(),
                      o.at("maximize").as_bool(),
                      wd != 0.0};
    const bool use_momentum = momentum != 0.0;
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    if (use_momentum) sdk::advance_counts(slots, 0);  // momentum_updates
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      Tensors t{slot.param->value().data(), slot.param->grad().data(), nullptr, false, slot.param->value().numel()};
      if (use_momentum) {
        if (s.num_tensors() == 0) s.add_tensor("momentum_buffer", optreg::Tensor(slot.param->value().shape()));
        t.buf = s.tensor(0).data();
        t.first = std::get<std::int64_t>(s.scalar(0)) == 1;
      }
      sdk::append_range(tensors_, t);  // one range over tensors that lie back to back
    }
    ranges_.run(
        tensors_.size(), [&](std::size_t i) { return tensors_[i].n; },
        [&](std::size_t i, std::size_t begin, std::size_t end) {
          if (use_momentum) {
            momentum_kernel(c, tensors_[i], begin, end);
          } else {
            plain_kernel(c, tensors_[i], begin, end);
          }
        });
  }

 private:
  std::vector<Tensors> tensors_;  // the ranges of one step, reused by every step
  sdk::ElementRanges ranges_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Sgd, "sgd", "1.0.0",
                          "Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay",
                          kSchema, kState)
