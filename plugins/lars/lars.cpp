// LARS (You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
// Algorithm 1): each parameter tensor gets its own local learning rate
//     local = trust_coefficient * ||p|| / (||g|| + weight_decay * ||p|| + eps)
// (1 when ||p|| or ||g|| is 0), which scales the gradient with its L2 weight decay,
// g' = local * (g + weight_decay * p), before a momentum SGD step with the global lr, in
// PyTorch's SGD form (lr outside the momentum buffer; optional Nesterov momentum).
//
// Two passes over each tensor: the first sums p^2 and g^2 in double per fixed segment
// (sdk::Segments), so the norms have the same bits with any thread count; the second updates.
#include <cmath>
#include <string>

#include <optreg/plugin.hpp>
#include <optreg/segments.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1.0, sdk::at_least(0.0), "global learning rate, multiplied by each tensor's local rate"),
    sdk::float_option("momentum", 0.9, sdk::at_least(0.0), "momentum factor (0 disables momentum)"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::float_option("trust_coefficient", 1e-3, sdk::greater_than(0.0),
                      "trust coefficient eta: the local rate is eta * ||p|| / (||g|| + weight_decay * ||p|| + eps)"),
    sdk::float_option("eps", 1e-8, sdk::at_least(0.0), "term added to the local rate's denominator"),
    sdk::bool_option("nesterov", false, "use Nesterov momentum (needs momentum > 0)"),
};

constexpr sdk::State kState[] = {
    sdk::optional_state_tensor("momentum_buffer", sdk::not_nan(), "running momentum (present once momentum is used)"),
};

/// The group's constants, as float32.
struct Constants {
  float neg_lr, momentum, weight_decay;
  bool use_decay, nesterov;
};

/// One tensor's pointers and its local learning rate.
struct Tensors {
  float* p;
  const float* g;
  float* buf;   // null without momentum
  float local;  // known after the first pass
  std::size_t n;
};

// First pass: the sums of p^2 and g^2 over [begin, end).
OPTREG_KERNEL void norms_kernel(const Tensors& t, std::size_t begin, std::size_t end, double* sums) {
  sums[0] = sdk::sum_of_squares(t.p, begin, end);
  sums[1] = sdk::sum_of_squares(t.g, begin, end);
}

// Second pass; constants are copied to locals so that the stores cannot alias them.
template <bool Momentum>
OPTREG_KERNEL void update_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict buf = t.buf;
  const float neg_lr = c.neg_lr, momentum = c.momentum, weight_decay = c.weight_decay, local = t.local;
  const bool use_decay = c.use_decay, nesterov = c.nesterov;
  for (std::size_t i = begin; i < end; ++i) {
    float d = g[i];
    if (use_decay) d = d + weight_decay * p[i];
    d = d * local;
    if (Momentum) {
      const float b = buf[i] * momentum + d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = p[i] + neg_lr * d;
  }
}

class Lars final : public optreg::Optimizer {
 protected:
  void validate(const optreg::Options& o, const std::string& where) const override {
    if (o.at("nesterov").as_bool() && o.at("momentum").as_float() <= 0.0) {
      throw optreg::OptionError(where, "nesterov", "option 'nesterov' = true needs momentum > 0 (got momentum = " +
                                o.at("momentum").to_string() + ")");
    }
  }

  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    if (o.at("momentum").as_float() != 0.0) s.add_tensor("momentum_buffer", optreg::Tensor(p.value().shape()));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double momentum = o.at("momentum").as_float();
    const double wd = o.at("weight_decay").as_float();
    static const std::string kTrustCoefficient = "trust_coefficient";  // too long for a string without allocation
    const double eta = o.at(kTrustCoefficient).as_float();
    const double eps = o.at("eps").as_float();
    const Constants c{static_cast<float>(-o.at("lr").as_float()), static_cast<float>(momentum), static_cast<float>(wd),
                      wd != 0.0, o.at("nesterov").as_bool()};
    const bool use_momentum = momentum != 0.0;
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      if (use_momentum && s.num_tensors() == 0) {
        s.add_tensor("momentum_buffer", optreg::Tensor(slot.param->value().shape()));
      }
      tensors_.push_back(Tensors{slot.param->value().data(), slot.param->grad().data(),
                                 use_momentum ? s.tensor(0).data() : nullptr, 1.0F, slot.param->value().numel()});
    }
    segments_.plan(tensors_.size(), [&](std::size_t i) { return tensors_[i].n; });
    sums_.resize(2 * segments_.size());
    segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
      norms_kernel(tensors_[i], begin, end, &sums_[2 * s]);
    });
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const double p_norm = std::sqrt(segments_.sum(sums_, i, 2, 0));
      const double g_norm = std::sqrt(segments_.sum(sums_, i, 2, 1));
      if (p_norm > 0.0 && g_norm > 0.0) tensors_[i].local = static_cast<float>(eta * p_norm / (g_norm + wd * p_norm + eps));
    }
    segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
      if (use_momentum) {
        update_kernel<true>(c, tensors_[i], begin, end);
      } else {
        update_kernel<false>(c, tensors_[i], begin, end);
      }
    });
  }

 private:
  std::vector<Tensors> tensors_;  // the tensors of one step, reused by every step
  std::vector<double> sums_;      // per segment: the sums of p^2 and g^2
  sdk::Segments segments_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lars, "lars", "1.0.0",
                          "LARS: momentum SGD with a per-tensor local learning rate from ||p|| / ||g||", kSchema, kState)
