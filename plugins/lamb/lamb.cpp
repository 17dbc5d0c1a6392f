// LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
// ICLR 2020, Algorithm 2) as MegEngine's megengine.optimizer.LAMB defines it: the Adam direction
// r = m_hat / (sqrt(v_hat) + eps) plus weight_decay * p, scaled per parameter tensor by the trust
// ratio ||p|| / ||r|| (the paper's scaling function phi is the identity). The ratio is 1 when
// either norm is 0, and also when weight_decay is 0 unless always_adapt is set.
//
// Two passes over each tensor: the first updates the moments and sums p^2 and r^2 in double per
// fixed segment (sdk::Segments), so the norms have the same bits with any thread count; the
// second recomputes r from the stored moments and applies it. Without adaptation (ratio 1) one
// pass does both.
#include <cmath>

#include <optreg/plugin.hpp>
#include <optreg/segments.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kDefaultBetas[] = {0.9, 0.999};

constexpr optreg::abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-3, sdk::at_least(0.0), "learning rate"),
    sdk::float_list_option("betas", kDefaultBetas, sdk::closed_open(0.0, 1.0),
                           "decay rates of the first and second moment estimates"),
    sdk::float_option("eps", 1e-8, sdk::greater_than(0.0), "term added to the denominator for numerical stability"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0),
                      "weight decay: weight_decay * p is added to the Adam direction before the trust ratio"),
    sdk::bool_option("bias_correction", true, "divide the moments by 1 - beta^t"),
    sdk::bool_option("always_adapt", false, "apply the trust ratio also when weight_decay is 0"),
};

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    sdk::state_tensor("exp_avg", sdk::not_nan(), "first moment estimate"),
    sdk::state_tensor("exp_avg_sq", sdk::non_negative(), "second moment estimate"),
};

/// The group's constants, as float32.
struct Constants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  bool use_decay;
};

/// One tensor's pointers and its factors.
struct Tensors {
  float* p;
  const float* g;
  float* m;
  float* v;
  float bias_correction1, bias_correction2;
  float neg_step;  // -lr * trust ratio, known after the first pass
  std::size_t n;
};

/// Local copies of the constants and pointers of one kernel call, so that the stores through
/// the tensors cannot alias the constants (which would keep the loops from vectorising).
struct Local {
  float* __restrict p;
  const float* __restrict g;
  float* __restrict m;
  float* __restrict v;
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, bc1, bc2;
  bool use_decay;

  Local(const Constants& c, const Tensors& t)
      : p(t.p), g(t.g), m(t.m), v(t.v), beta1(c.beta1), beta2(c.beta2), one_minus_beta1(c.one_minus_beta1),
        one_minus_beta2(c.one_minus_beta2), eps(c.eps), weight_decay(c.weight_decay), bc1(t.bias_correction1),
        bc2(t.bias_correction2), use_decay(c.use_decay) {}

  /// Updates the moments of element i and returns its direction r.
  float moments(std::size_t i) const {
    const float grad = g[i];
    const float mi = m[i] * beta1 + one_minus_beta1 * grad;
    const float vi = v[i] * beta2 + one_minus_beta2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    return direction(i, mi, vi);
  }
  /// The direction of element i from its updated moments.
  float direction(std::size_t i, float mi, float vi) const {
    float r = (mi / bc1) / (std::sqrt(vi / bc2) + eps);
    if (use_decay) r = r + weight_decay * p[i];
    return r;
  }
};

// First pass: updates the moments and returns the sums of p^2 and r^2 over [begin, end), each
// in eight running sums in double fixed by the index (see sdk::sum_of_squares).
OPTREG_KERNEL void moments_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end,
                                  double* sums) {
  const Local l(c, t);
  double pp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double rr[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    float r[8];
    for (std::size_t k = 0; k < 8; ++k) r[k] = l.moments(i + k);
    for (std::size_t k = 0; k < 8; ++k) {
      const double pk = l.p[i + k], rk = r[k];
      pp[k] += pk * pk;
      rr[k] += rk * rk;
    }
  }
  for (std::size_t k = 0; i < end; ++i, ++k) {
    const double pk = l.p[i], rk = l.moments(i);
    pp[k] += pk * pk;
    rr[k] += rk * rk;
  }
  const auto tree = [](const double* s) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); };
  sums[0] = tree(pp);
  sums[1] = tree(rr);
}

// Second pass: applies the direction recomputed from the stored moments.
OPTREG_KERNEL void apply_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  const Local l(c, t);
  const float neg_step = t.neg_step;
  for (std::size_t i = begin; i < end; ++i) l.p[i] = l.p[i] + neg_step * l.direction(i, l.m[i], l.v[i]);
}

// The single pass when the trust ratio is 1.
OPTREG_KERNEL void fused_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  const Local l(c, t);
  const float neg_step = t.neg_step;
  for (std::size_t i = begin; i < end; ++i) {
    const float r = l.moments(i);
    l.p[i] = l.p[i] + neg_step * r;
  }
}

class Lamb final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const auto& betas = o.at("betas").as_float_list();
    const double lr = o.at("lr").as_float();
    const double wd = o.at("weight_decay").as_float();
    const bool bias_correction = o.at("bias_correction").as_bool();
    const bool adapt = o.at("always_adapt").as_bool() || wd > 0.0;
    const Constants c{static_cast<float>(betas[0]),       static_cast<float>(betas[1]),
                      static_cast<float>(1.0 - betas[0]), static_cast<float>(1.0 - betas[1]),
                      static_cast<float>(o.at("eps").as_float()), static_cast<float>(wd),
                      wd != 0.0};
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    sdk::advance_counts(slots, 0);  // step
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const auto step = static_cast<double>(std::get<std::int64_t>(s.scalar(0)));
      const double bc1 = bias_correction ? 1.0 - std::pow(betas[0], step) : 1.0;
      const double bc2 = bias_correction ? 1.0 - std::pow(betas[1], step) : 1.0;
      tensors_.push_back(Tensors{slot.param->value().data(), slot.param->grad().data(), s.tensor(0).data(),
                                 s.tensor(1).data(), static_cast<float>(bc1), static_cast<float>(bc2),
                                 static_cast<float>(-lr), slot.param->value().numel()});
    }
    segments_.plan(tensors_.size(), [&](std::size_t i) { return tensors_[i].n; });
    if (!adapt) {
      segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
        fused_kernel(c, tensors_[i], begin, end);
      });
      return;
    }
    sums_.resize(2 * segments_.size());
    segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
      moments_kernel(c, tensors_[i], begin, end, &sums_[2 * s]);
    });
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const double p_norm = std::sqrt(segments_.sum(sums_, i, 2, 0));
      const double r_norm = std::sqrt(segments_.sum(sums_, i, 2, 1));
      const double trust = p_norm > 0.0 && r_norm > 0.0 ? p_norm / r_norm : 1.0;
      tensors_[i].neg_step = static_cast<float>(-(lr * trust));
    }
    segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
      apply_kernel(c, tensors_[i], begin, end);
    });
  }

 private:
  std::vector<Tensors> tensors_;  // the tensors of one step, reused by every step
  std::vector<double> sums_;      // per segment: the sums of p^2 and r^2
  sdk::Segments segments_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lamb, "lamb", "1.0.0",
                          "LAMB: Adam directions scaled per tensor by the trust ratio ||p|| / ||r|| (as MegEngine)",
                          kSchema, kState)
