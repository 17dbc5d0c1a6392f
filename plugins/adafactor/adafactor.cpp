// Adafactor (Shazeer and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
// ICML 2018, Algorithms 4 and 5 with the relative step size of section 8 and update clipping of
// section 6). A parameter of two or more dimensions, seen as a stack of matrices over its last two
// dimensions, keeps running means of the squared gradient of each row and each column instead of
// a full second moment; a vector or scalar keeps the full one. The update is clipped to an RMS
// of at most clip_threshold and scaled by the parameter's own RMS (scale_parameter).
//
// Per tensor and step t (see docs/optimizers.md):
//   rho   = relative_step ? min(lr, 1 / sqrt(t)) : lr
//   alpha = scale_parameter ? max(eps2, RMS(p)) * rho : rho
//   beta2 = 1 - t^-decay_rate
//   factored:   R = beta2 R + (1 - beta2) mean_cols(g^2 + eps1);  C likewise over the rows
//               u = g / sqrt(R / mean(R) * C)
//   unfactored: V = beta2 V + (1 - beta2) (g^2 + eps1);           u = g / sqrt(V)
//   u = u / max(1, RMS(u) / clip_threshold);  m = beta1 m + (1 - beta1) u, u = m (beta1 > 0)
//   p = p * (1 - alpha * weight_decay) - alpha * u
//
// Every sum (RMS(p), RMS(u), the row, column and R means) is taken in double in an order fixed by
// the shapes alone, so the result has the same bits with any thread count. A vector takes two
// passes over its elements; a factored tensor four (row means and RMS(p), column means, RMS(u),
// the update), of which the middle two only read the gradient.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <optreg/plugin.hpp>
#include <optreg/segments.hpp>

namespace {

namespace sdk = optreg::sdk;
namespace abi = optreg::abi;

constexpr double kDefaultEps[] = {1e-30, 1e-3};

constexpr abi::HyperparamSpec kSchema[] = {
    sdk::float_option("lr", 1e-2, sdk::at_least(0.0),
                      "step size; with relative_step, the cap of the relative step size min(lr, 1/sqrt(t))"),
    sdk::float_list_option("eps", kDefaultEps, sdk::greater_than(0.0),
                           "eps1, added to the squared gradient, and eps2, the least parameter scale"),
    sdk::float_option("clip_threshold", 1.0, sdk::greater_than(0.0), "largest RMS of an update (d)"),
    sdk::float_option("decay_rate", 0.8, sdk::closed(0.0, 1.0),
                      "the second moments decay with beta2 = 1 - t^-decay_rate"),
    sdk::float_option("beta1", 0.0, sdk::closed_open(0.0, 1.0),
                      "decay rate of a running average of the updates (0: none is kept)"),
    sdk::float_option("weight_decay", 0.0, sdk::at_least(0.0),
                      "decoupled weight decay: the parameter is scaled by 1 - alpha * weight_decay"),
    sdk::bool_option("scale_parameter", true, "scale the step size by the parameter's RMS (at least eps2)"),
    sdk::bool_option("relative_step", true, "step size min(lr, 1/sqrt(t)) instead of lr"),
};

constexpr std::uint32_t kOptionalShaped = abi::kStateOptional | abi::kStateCustomShape;

constexpr sdk::State kState[] = {
    sdk::state_int("step", sdk::count(), "updates applied to this parameter"),
    {abi::StateSpec{"exp_avg_sq_row", abi::StateKind::Tensor, kOptionalShaped,
                    "running mean of each row's squared gradient, shaped like the parameter without its last "
                    "dimension (parameters of 2 or more dimensions)"},
     sdk::non_negative()},
    {abi::StateSpec{"exp_avg_sq_col", abi::StateKind::Tensor, kOptionalShaped,
                    "running mean of each column's squared gradient, shaped like the parameter without its "
                    "second-to-last dimension (parameters of 2 or more dimensions)"},
     sdk::non_negative()},
    sdk::optional_state_tensor("exp_avg_sq", sdk::non_negative(),
                               "second moment estimate (parameters of fewer than 2 dimensions)"),
    sdk::optional_state_tensor("exp_avg", sdk::not_nan(), "running average of the updates (beta1 > 0)"),
};

bool factored(const optreg::Shape& shape) { return shape.size() >= 2; }
/// The parameter's shape without dimension `drop` (counted from the end: 1 the last, 2 the one before).
optreg::Shape without(const optreg::Shape& shape, std::size_t drop) {
  optreg::Shape out = shape;
  out.erase(out.end() - static_cast<std::ptrdiff_t>(drop));
  return out;
}

/// The state tensor named `name`, or null; compares without allocating.
optreg::Tensor* find(optreg::ParamState& s, const char* name) {
  for (std::size_t k = 0; k < s.num_tensors(); ++k) {
    if (std::strcmp(s.tensors()[k].first.c_str(), name) == 0) return &s.tensor(k);
  }
  return nullptr;
}

/// The state tensor named `name` shaped `shape`: created when absent (after a state dict that
/// lacks it); a state tensor of another shape is refused.
optreg::Tensor& need(optreg::ParamState& s, const char* name, const optreg::Shape& shape, const optreg::Parameter& p) {
  if (optreg::Tensor* t = find(s, name)) {
    if (t->shape() != shape) {
      throw optreg::UsageError("adafactor: state tensor '" + std::string(name) + "' of parameter '" + p.name() +
                               "' has shape " + optreg::to_string(t->shape()) + ", expected " +
                               optreg::to_string(shape));
    }
    return *t;
  }
  return s.add_tensor(name, optreg::Tensor(shape));
}

/// The group's constants, as float32.
struct Constants {
  float eps1, beta1, one_minus_beta1;
  bool use_first_moment;
};

/// One tensor's pointers, geometry and factors.
struct Tensors {
  float* p;
  const float* g;
  float* row;    // factored: R, one per row of the stacked matrices
  float* col;    // factored: C, one per column of each matrix
  float* v;      // unfactored: V
  float* m;      // running average of the updates, or null
  float* rmean;  // factored: mean(R) of each matrix (scratch)
  std::size_t n, rows, cols;  // elements; rows of all matrices; columns of each (1 unfactored)
  std::size_t matrix_rows;    // rows of each matrix (factored)
  bool is_factored;
  float beta2, one_minus_beta2;  // step-dependent
  float clip, decay, neg_alpha;  // known after the sums
};

/// Sum over [begin, end) of (g^2 + eps1), each term rounded to float as the update uses it, in
/// double with eight running sums fixed by the index.
inline double sum_of_g2(const float* __restrict g, float eps1, std::size_t begin, std::size_t end) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) lane[k] += static_cast<double>(g[i + k] * g[i + k] + eps1);
  }
  for (std::size_t k = 0; i < end; ++i, ++k) lane[k] += static_cast<double>(g[i] * g[i] + eps1);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

inline double tree(const double* s) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }

// Pass 1, factored: the sum of p^2 over the segment and the row means of g^2 + eps1, folded into R.
OPTREG_KERNEL void rows_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end, double* sums) {
  sums[0] = sdk::sum_of_squares(t.p, begin, end);
  const auto cols = static_cast<double>(t.cols);
  for (std::size_t r = begin / t.cols; r < end / t.cols; ++r) {
    const auto mean = static_cast<float>(sum_of_g2(t.g, c.eps1, r * t.cols, (r + 1) * t.cols) / cols);
    t.row[r] = t.row[r] * t.beta2 + t.one_minus_beta2 * mean;
  }
}

/// The most columns that pass 2 sums on one thread at a time.
constexpr std::size_t kColumnStrip = 64;

// Pass 2, factored: the column means of g^2 + eps1 of one matrix's columns [j0, j1), folded into C.
OPTREG_KERNEL void columns_kernel(const Constants& c, const Tensors& t, std::size_t matrix, std::size_t j0,
                                  std::size_t j1) {
  double acc[kColumnStrip] = {};
  const float eps1 = c.eps1;
  const std::size_t first_row = matrix * t.matrix_rows;
  for (std::size_t r = first_row; r < first_row + t.matrix_rows; ++r) {
    const float* __restrict g = t.g + r * t.cols;
    for (std::size_t j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(g[j] * g[j] + eps1);
  }
  const auto rows = static_cast<double>(t.matrix_rows);
  float* col = t.col + matrix * t.cols;
  for (std::size_t j = j0; j < j1; ++j) {
    col[j] = col[j] * t.beta2 + t.one_minus_beta2 * static_cast<float>(acc[j - j0] / rows);
  }
}

/// The factored update of row r before clipping: u_j = g_j / sqrt(R_r / mean(R) * C_j).
struct FactoredRow {
  const float* __restrict g;
  const float* __restrict col;
  float row_factor;
  FactoredRow(const Tensors& t, std::size_t r)
      : g(t.g + r * t.cols), col(t.col + (r / t.matrix_rows) * t.cols), row_factor(t.row[r] / t.rmean[r / t.matrix_rows]) {}
  float operator()(std::size_t j) const { return g[j] / std::sqrt(row_factor * col[j]); }
};

// Pass 3, factored: the sum of u^2 over the segment's rows.
OPTREG_KERNEL void factored_rms_kernel(const Tensors& t, std::size_t begin, std::size_t end, double* sums) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t r = begin / t.cols; r < end / t.cols; ++r) {
    const FactoredRow u(t, r);
    std::size_t j = 0;
    for (; j + 8 <= t.cols; j += 8) {
      for (std::size_t k = 0; k < 8; ++k) {
        const double x = u(j + k);
        lane[k] += x * x;
      }
    }
    for (std::size_t k = 0; j < t.cols; ++j, ++k) {
      const double x = u(j);
      lane[k] += x * x;
    }
  }
  sums[1] = tree(lane);
}

/// The last step of every update: clip, average (beta1), decay and apply element i.
template <bool FirstMoment>
inline void apply(const Constants& c, const Tensors& t, float* __restrict p, float* __restrict m, std::size_t i, float u) {
  float x = u / t.clip;
  if (FirstMoment) {
    x = m[i] * c.beta1 + c.one_minus_beta1 * x;
    m[i] = x;
  }
  p[i] = p[i] * t.decay + t.neg_alpha * x;
}

// Pass 4, factored: the update of the segment's rows.
template <bool FirstMoment>
OPTREG_KERNEL void factored_update_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  float* __restrict m = t.m;
  for (std::size_t r = begin / t.cols; r < end / t.cols; ++r) {
    const FactoredRow u(t, r);
    const std::size_t at = r * t.cols;
    for (std::size_t j = 0; j < t.cols; ++j) apply<FirstMoment>(c, t, p, m, at + j, u(j));
  }
}

// Pass 1, unfactored: V, and the sums of p^2 and u^2 over the segment.
OPTREG_KERNEL void vector_moments_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end,
                                         double* sums) {
  const float* __restrict p = t.p;
  const float* __restrict g = t.g;
  float* __restrict v = t.v;
  const float eps1 = c.eps1, beta2 = t.beta2, one_minus_beta2 = t.one_minus_beta2;
  double pp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double uu[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t i = begin; i < end; ++i) {
    const float vi = v[i] * beta2 + one_minus_beta2 * (g[i] * g[i] + eps1);
    v[i] = vi;
    const double u = g[i] / std::sqrt(vi), x = p[i];
    pp[(i - begin) % 8] += x * x;
    uu[(i - begin) % 8] += u * u;
  }
  sums[0] = tree(pp);
  sums[1] = tree(uu);
}

// Pass 2, unfactored: the update.
template <bool FirstMoment>
OPTREG_KERNEL void vector_update_kernel(const Constants& c, const Tensors& t, std::size_t begin, std::size_t end) {
  float* __restrict p = t.p;
  float* __restrict m = t.m;
  const float* __restrict g = t.g;
  const float* __restrict v = t.v;
  for (std::size_t i = begin; i < end; ++i) apply<FirstMoment>(c, t, p, m, i, g[i] / std::sqrt(v[i]));
}

/// A strip of columns of one matrix of a factored tensor, for pass 2.
struct Strip {
  std::size_t tensor, matrix, j0, j1;
};

class Adafactor final : public optreg::Optimizer {
 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_scalar("step", std::int64_t{0});
    const optreg::Shape& shape = p.value().shape();
    if (factored(shape)) {
      s.add_tensor("exp_avg_sq_row", optreg::Tensor(without(shape, 1)));
      s.add_tensor("exp_avg_sq_col", optreg::Tensor(without(shape, 2)));
    } else {
      s.add_tensor("exp_avg_sq", optreg::Tensor(shape));
    }
    if (o.at("beta1").as_float() > 0.0) s.add_tensor("exp_avg", optreg::Tensor(shape));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const double lr = o.at("lr").as_float();
    const auto& eps = o.at("eps").as_float_list();
    const double clip_threshold = o.at("clip_threshold").as_float();
    const double decay_rate = o.at("decay_rate").as_float();
    const double beta1 = o.at("beta1").as_float();
    const double wd = o.at("weight_decay").as_float();
    const bool scale_parameter = o.at("scale_parameter").as_bool();
    const bool relative_step = o.at("relative_step").as_bool();
    const bool first_moment = beta1 > 0.0;
    const Constants c{static_cast<float>(eps[0]), static_cast<float>(beta1), static_cast<float>(1.0 - beta1),
                      first_moment};

    // Every state tensor is looked up (and any missing one created) before anything changes.
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    std::size_t matrices = 0;
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const optreg::Shape& shape = slot.param->value().shape();
      Tensors t{};
      t.p = slot.param->value().data();
      t.g = slot.param->grad().data();
      t.n = slot.param->value().numel();
      t.is_factored = factored(shape);
      if (t.is_factored) {
        t.cols = static_cast<std::size_t>(shape.back());
        t.matrix_rows = static_cast<std::size_t>(shape[shape.size() - 2]);
        t.rows = t.cols == 0 ? 0 : t.n / t.cols;
        t.row = need(s, "exp_avg_sq_row", without(shape, 1), *slot.param).data();
        t.col = need(s, "exp_avg_sq_col", without(shape, 2), *slot.param).data();
        matrices += t.matrix_rows == 0 ? 0 : t.rows / t.matrix_rows;
      } else {
        t.cols = 1;
        t.v = need(s, "exp_avg_sq", shape, *slot.param).data();
      }
      if (first_moment) t.m = need(s, "exp_avg", shape, *slot.param).data();
      tensors_.push_back(t);
    }
    rmean_.resize(matrices);
    strips_.clear();
    sdk::advance_counts(slots, 0);  // step
    for (std::size_t i = 0, at = 0; i < tensors_.size(); ++i) {
      Tensors& t = tensors_[i];
      const auto step = static_cast<double>(std::get<std::int64_t>(slots[i].state->scalar(0)));
      const double decay = std::pow(step, -decay_rate);
      t.beta2 = static_cast<float>(1.0 - decay);
      t.one_minus_beta2 = static_cast<float>(decay);
      if (!t.is_factored || t.n == 0) continue;
      t.rmean = rmean_.data() + at;
      const std::size_t count = t.rows / t.matrix_rows;
      at += count;
      for (std::size_t b = 0; b < count; ++b) {
        for (std::size_t j = 0; j < t.cols; j += kColumnStrip) strips_.push_back({i, b, j, std::min(t.cols, j + kColumnStrip)});
      }
    }

    // Pass 1: R or V, and the sums of p^2 (and of u^2 unfactored), per segment of whole rows.
    segments_.plan(
        tensors_.size(), [&](std::size_t i) { return tensors_[i].n; },
        [&](std::size_t i) {
          const Tensors& t = tensors_[i];
          if (!t.is_factored || t.cols == 0) return sdk::Segments::kLength;
          return std::max<std::size_t>(1, sdk::Segments::kLength / t.cols) * t.cols;  // whole rows
        });
    sums_.resize(2 * segments_.size());
    segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
      if (tensors_[i].is_factored) {
        rows_kernel(c, tensors_[i], begin, end, &sums_[2 * s]);
      } else {
        vector_moments_kernel(c, tensors_[i], begin, end, &sums_[2 * s]);
      }
    });
    if (!strips_.empty()) {
      // Pass 2: C, each strip of columns on one thread.
      std::size_t elements = 0;
      for (const Strip& s : strips_) elements += (s.j1 - s.j0) * tensors_[s.tensor].matrix_rows;
      const std::size_t grain = std::max<std::size_t>(1, sdk::Segments::kLength * strips_.size() / std::max<std::size_t>(1, elements));
      optreg::parallel_for(strips_.size(), grain, [&](std::size_t begin, std::size_t end) {
        for (std::size_t k = begin; k < end; ++k) {
          const Strip& s = strips_[k];
          columns_kernel(c, tensors_[s.tensor], s.matrix, s.j0, s.j1);
        }
      });
      for (const Tensors& t : tensors_) {
        if (!t.is_factored || t.n == 0) continue;
        for (std::size_t b = 0; b < t.rows / t.matrix_rows; ++b) {
          double sum = 0.0;
          for (std::size_t r = b * t.matrix_rows; r < (b + 1) * t.matrix_rows; ++r) sum += t.row[r];
          t.rmean[b] = static_cast<float>(sum / static_cast<double>(t.matrix_rows));
        }
      }
      // Pass 3: the sums of u^2 of factored tensors.
      segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
        if (tensors_[i].is_factored) factored_rms_kernel(tensors_[i], begin, end, &sums_[2 * s]);
      });
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      Tensors& t = tensors_[i];
      if (t.n == 0) continue;
      const auto step = static_cast<double>(std::get<std::int64_t>(slots[i].state->scalar(0)));
      const auto n = static_cast<double>(t.n);
      const double rho = relative_step ? std::min(lr, 1.0 / std::sqrt(step)) : lr;
      const double alpha = scale_parameter ? std::max(eps[1], std::sqrt(segments_.sum(sums_, i, 2, 0) / n)) * rho : rho;
      const double rms = std::sqrt(segments_.sum(sums_, i, 2, 1) / n);
      t.clip = static_cast<float>(std::max(1.0, rms / clip_threshold));
      t.decay = static_cast<float>(1.0 - alpha * wd);
      t.neg_alpha = static_cast<float>(-alpha);
    }
    // Pass 4 (pass 2 unfactored): the update.
    segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
      const Tensors& t = tensors_[i];
      if (t.is_factored) {
        first_moment ? factored_update_kernel<true>(c, t, begin, end) : factored_update_kernel<false>(c, t, begin, end);
      } else {
        first_moment ? vector_update_kernel<true>(c, t, begin, end) : vector_update_kernel<false>(c, t, begin, end);
      }
    });
  }

 private:
  std::vector<Tensors> tensors_;  // the tensors of one step, reused by every step
  std::vector<Strip> strips_;     // the column strips of pass 2
  std::vector<float> rmean_;      // mean(R) of every matrix of the factored tensors
  std::vector<double> sums_;      // per segment: the sums of p^2 and u^2
  sdk::Segments segments_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adafactor, "adafactor", "1.0.0",
                          "Adafactor: factored second moments, relative step size and update clipping", kSchema,
                          kState)
