// SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize, with the
// update rule and rounding order of PyTorch's torch.optim.SGD (single-tensor path).
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

constexpr optreg::abi::StateSpec kState[] = {
    sdk::optional_state_tensor("momentum_buffer", "running momentum (present once momentum is used)"),
    sdk::state_int("momentum_updates", "updates that used the momentum buffer"),
};

struct Hyper {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, use_momentum, use_decay;

  explicit Hyper(const optreg::Options& o) {
    const double m = o.at("momentum").as_float();
    const double wd = o.at("weight_decay").as_float();
    lr = static_cast<float>(o.at("lr").as_float());
    momentum = static_cast<float>(m);
    one_minus_dampening = static_cast<float>(1.0 - o.at("dampening").as_float());
    weight_decay = static_cast<float>(wd);
    nesterov = o.at("nesterov").as_bool();
    maximize = o.at("maximize").as_bool();
    use_momentum = m != 0.0;
    use_decay = wd != 0.0;
  }
};

// State: tensor 0 "momentum_buffer" (when momentum is used), scalar 0 "momentum_updates" (the
// number of updates that used the buffer; the first one copies the gradient into it).
class Sgd final : public optreg::Optimizer {
 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    if (o.at("nesterov").as_bool() &&
        (o.at("momentum").as_float() <= 0.0 || o.at("dampening").as_float() != 0.0)) {
      throw optreg::OptionError(where + ": option 'nesterov' = true needs momentum > 0 and dampening = 0 (got momentum = " +
                                o.at("momentum").to_string() + ", dampening = " + o.at("dampening").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    if (o.at("momentum").as_float() != 0.0) s.add_tensor("momentum_buffer", optreg::Tensor(p.value().shape()));
    s.add_scalar("momentum_updates", std::int64_t{0});
  }

  void update_group(const optreg::Options& options, const std::vector<Slot>& slots) override {
    const Hyper h(options);
    for (const Slot& slot : slots) {
      optreg::Tensor& value = slot.param->value();
      const std::size_t n = value.numel();
      float* __restrict p = value.data();
      const float* __restrict g = slot.param->grad().data();
      if (!h.use_momentum) {
        update_plain(h, p, g, n);
        continue;
      }
      optreg::ParamState& s = *slot.state;
      if (s.num_tensors() == 0) s.add_tensor("momentum_buffer", optreg::Tensor(value.shape()));
      auto& updates = std::get<std::int64_t>(s.scalar(0));
      update_momentum(h, p, g, s.tensor(0).data(), n, updates == 0);
      ++updates;
    }
  }

 private:
  static void update_plain(const Hyper& h, float* __restrict p, const float* __restrict g, std::size_t n) {
    const float neg_lr = -h.lr;
    for (std::size_t i = 0; i < n; ++i) {
      float d = h.maximize ? -g[i] : g[i];
      if (h.use_decay) d = d + h.weight_decay * p[i];
      p[i] = p[i] + neg_lr * d;
    }
  }

  static void update_momentum(const Hyper& h, float* __restrict p, const float* __restrict g, float* __restrict buf,
                              std::size_t n, bool first) {
    const float neg_lr = -h.lr;
    for (std::size_t i = 0; i < n; ++i) {
      float d = h.maximize ? -g[i] : g[i];
      if (h.use_decay) d = d + h.weight_decay * p[i];
      const float b = first ? d : buf[i] * h.momentum + h.one_minus_dampening * d;
      buf[i] = b;
      d = h.nesterov ? d + h.momentum * b : b;
      p[i] = p[i] + neg_lr * d;
    }
  }
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Sgd, "sgd", "1.0.0",
                          "Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay",
                          kSchema, kState)
