// Adagrad (Duchi, Hazan & Singer, JMLR 2011) with learning-rate decay, L2 weight decay, an
// initial accumulator value and maximize, with the update rule and rounding order of PyTorch's
// torch.optim.Adagrad (single-tensor path): eps is added after the square root. With
// eps_inside_sqrt it takes MegEngine's form instead, where eps is added to the sum of squares
// under the square root. One pass over the elements of all the group's tensors, split across
// threads.
#include <cmath>

#include <optreg/plugin.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-2, sdk::at_least(0.0), "learning rate"),
    sdk::float_option("lr_decay", 0.0, sdk::at_least(0.0),
                      "learning-rate decay: step t uses lr / (1 + (t - 1) * lr_decay)"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0), "L2 penalty added to the gradient"),
    sdk::float_option("initial_accumulator_value", 0.0, sdk::at_least(0.0),
                      "starting value of every element of the sum of squared gradients"),
    sdk::float_option("eps", 1e-10, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    sdk::bool_option("maximize", false, "maximize the objective instead of minimizing it"),
    sdk::bool_option("eps_inside_sqrt", false,
                     "add eps under the square root, sqrt(sum + eps), as MegEngine does, instead of sqrt(sum) + eps"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("sum", sdk::non_negative(), "sum of squared gradients"),
};

/// The group's constants, as float32 like PyTorch's kernels use them.
struct Constants {
  float weight_decay, eps;
  bool use_decay, maximize;
};

// Arrays: parameter, gradient, sum; factor: the step's learning rate, negated for the PyTorch
// form (which scales the gradient before dividing) and as is for MegEngine's (which subtracts
// lr times the quotient).
using Pieces = sdk::ElementPieces<3, 1>;

// Every constant is copied to a local first: the stores through the tensors' pointers could
// otherwise alias them, which keeps the compiler from vectorising the loop.
template <bool EpsInsideSqrt>
OPTREG_KERNEL void adagrad_kernel(const Constants& c, const Pieces::Piece& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.data[0];
  const float* __restrict g = t.data[1];
  float* __restrict sum = t.data[2];
  const float weight_decay = c.weight_decay, eps = c.eps, lr = t.factors[0];
  const bool use_decay = c.use_decay, maximize = c.maximize;
  for (std::size_t i = begin; i < end; ++i) {
    const float pi = p[i];
    float grad = maximize ? -g[i] : g[i];
    if (use_decay) grad = grad + weight_decay * pi;
    const float s = sum[i] + grad * grad;
    sum[i] = s;
    if (EpsInsideSqrt) {
      p[i] = pi - lr * (grad / std::sqrt(s + eps));
    } else {
      p[i] = pi + lr * grad / (std::sqrt(s) + eps);
    }
  }
}

class Adagrad final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_scalar("step", std::int64_t{0});
    s.add_tensor("sum", optreg::Tensor(p.value().shape(), static_cast<float>(o.at("initial_accumulator_value").as_float())));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double lr = o.at("lr").as_float();
    const double lr_decay = o.at("lr_decay").as_float();
    const double wd = o.at("weight_decay").as_float();
    const bool inside = o.at("eps_inside_sqrt").as_bool();
    const Constants c{static_cast<float>(wd), static_cast<float>(o.at("eps").as_float()), wd != 0.0,
                      o.at("maximize").as_bool()};
    pieces_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::int64_t step = std::get<std::int64_t>(s.scalar(0));
      const double clr = lr / (1.0 + static_cast<double>(step - 1) * lr_decay);
      pieces_.add({slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data()},
                  slot.param->value().numel(), {static_cast<float>(inside ? clr : -clr)});
    }
    pieces_.run([&](const Pieces::Piece& t, std::size_t begin, std::size_t end) {
      if (inside) {
        adagrad_kernel<true>(c, t, begin, end);
      } else {
        adagrad_kernel<false>(c, t, begin, end);
      }
    });
  }

 private:
  Pieces pieces_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adagrad, "adagrad", "1.0.0",
                          "Adagrad with lr decay, L2 weight decay and maximize; eps outside or inside the square root",
                          kSchema, kState)
