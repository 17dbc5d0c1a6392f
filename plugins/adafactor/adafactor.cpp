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
//
// The passes are written once over the parameter's element type: a float64 parameter keeps
// float64 state and steps in double; a float32, bfloat16 or float16 one keeps float32 state and
// steps in float, its elements widened exactly and the results rounded back to nearest.
#include <algorithm>
#include <cmath>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;
namespace abi = optreg::abi;
using sdk::storage_t;

struct Hyper {
  double lr;
  std::array<double, 2> eps;
  double clip_threshold, decay_rate, beta1, weight_decay;
  bool scale_parameter, relative_step;
};

constexpr double kDefaultEps[] = {1e-30, 1e-3};
constexpr auto kHyper = sdk::hyperparams(
    sdk::option(&Hyper::lr, sdk::float_option("lr", 1e-2, sdk::at_least(0.0),
                                              "step size; with relative_step, the cap of the relative step size "
                                              "min(lr, 1/sqrt(t))")),
    sdk::option(&Hyper::eps, sdk::float_list_option("eps", kDefaultEps, sdk::greater_than(0.0),
                                                    "eps1, added to the squared gradient, and eps2, the least "
                                                    "parameter scale")),
    sdk::option(&Hyper::clip_threshold,
                sdk::float_option("clip_threshold", 1.0, sdk::greater_than(0.0), "largest RMS of an update (d)")),
    sdk::option(&Hyper::decay_rate, sdk::float_option("decay_rate", 0.8, sdk::closed(0.0, 1.0),
                                                      "the second moments decay with beta2 = 1 - t^-decay_rate")),
    sdk::option(&Hyper::beta1, sdk::float_option("beta1", 0.0, sdk::closed_open(0.0, 1.0),
                                                 "decay rate of a running average of the updates (0: none is kept)")),
    sdk::weight_decay(&Hyper::weight_decay, 0.0,
                      "decoupled weight decay: the parameter is scaled by 1 - alpha * weight_decay"),
    sdk::option(&Hyper::scale_parameter,
                sdk::bool_option("scale_parameter", true, "scale the step size by the parameter's RMS (at least eps2)")),
    sdk::option(&Hyper::relative_step,
                sdk::bool_option("relative_step", true, "step size min(lr, 1/sqrt(t)) instead of lr")));

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
constexpr auto kStep = sdk::scalar_entry(kState, "step");
constexpr auto kRow = sdk::tensor_entry(kState, "exp_avg_sq_row");
constexpr auto kCol = sdk::tensor_entry(kState, "exp_avg_sq_col");
constexpr auto kSq = sdk::tensor_entry(kState, "exp_avg_sq");
constexpr auto kAvg = sdk::tensor_entry(kState, "exp_avg");

bool factored(const optreg::Shape& shape) { return shape.size() >= 2; }
/// The parameter's shape without dimension `drop` (counted from the end: 1 the last, 2 the one before).
optreg::Shape without(const optreg::Shape& shape, std::size_t drop) {
  optreg::Shape out = shape;
  out.erase(out.end() - static_cast<std::ptrdiff_t>(drop));
  return out;
}

/// The state tensor `e` of `p` shaped `shape`, of the parameter's arithmetic dtype: created
/// when absent (after a state dict that lacks it); one of another shape or dtype is refused.
optreg::Tensor& need(optreg::ParamState& s, sdk::TensorEntry e, const optreg::Shape& shape, const optreg::Parameter& p) {
  const optreg::DType dtype = optreg::state_dtype_of(p.value().dtype());
  if (optreg::Tensor* t = sdk::find(s, e)) {
    if (t->shape() != shape || t->dtype() != dtype) {
      throw optreg::UsageError("adafactor: state tensor '" + std::string(e.name) + "' of parameter '" + p.name() +
                               "' is " + optreg::dtype_name(t->dtype()) + " of shape " + optreg::to_string(t->shape()) +
                               ", expected " + optreg::dtype_name(dtype) + " of shape " + optreg::to_string(shape));
    }
    return *t;
  }
  return s.add_tensor(e.name, optreg::Tensor(shape, dtype));
}

/// One tensor's arrays, geometry and factors. The arrays are of the parameter's element type
/// (p, g) or of its arithmetic type (the state); the factors are rounded to that type where a
/// pass uses them.
struct Tensors {
  void* p;
  const void* g;
  void* row;     // factored: R, one per row of the stacked matrices
  void* col;     // factored: C, one per column of each matrix
  void* v;       // unfactored: V
  void* m;       // running average of the updates, or null
  double* rmean;  // factored: mean(R) of each matrix
  std::size_t n, rows, cols;  // elements; rows of all matrices; columns of each (1 unfactored)
  std::size_t matrix_rows;    // rows of each matrix (factored)
  optreg::DType dtype;
  bool is_factored;
  double beta2, one_minus_beta2;  // step-dependent
  double clip, decay, neg_alpha;  // known after the sums
};

/// The arrays of a tensor as the passes over element type P read them.
template <typename P>
struct View {
  using A = sdk::arith_t<P>;
  storage_t<P>* p;
  const storage_t<P>* g;
  A *row, *col, *v, *m;
  A eps1, beta1, one_minus_beta1, beta2, one_minus_beta2, clip, decay, neg_alpha;

  View(const Hyper& h, const Tensors& t)
      : p(static_cast<storage_t<P>*>(t.p)), g(static_cast<const storage_t<P>*>(t.g)), row(static_cast<A*>(t.row)),
        col(static_cast<A*>(t.col)), v(static_cast<A*>(t.v)), m(static_cast<A*>(t.m)),
        eps1(static_cast<A>(h.eps[0])), beta1(static_cast<A>(h.beta1)), one_minus_beta1(static_cast<A>(1.0 - h.beta1)),
        beta2(static_cast<A>(t.beta2)), one_minus_beta2(static_cast<A>(t.one_minus_beta2)), clip(static_cast<A>(t.clip)),
        decay(static_cast<A>(t.decay)), neg_alpha(static_cast<A>(t.neg_alpha)) {}

  A grad(std::size_t i) const { return sdk::widen<A, P>(g[i]); }
  A value(std::size_t i) const { return sdk::widen<A, P>(p[i]); }
  A g2(std::size_t i) const {
    const A x = grad(i);
    return x * x + eps1;
  }
};

inline double tree(const double* s) { return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); }

/// The sum over [begin, end) of term(i) in double, with eight running sums fixed by the index.
template <typename Term>
inline double lanes(std::size_t begin, std::size_t end, Term&& term) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) lane[k] += term(i + k);
  }
  for (std::size_t k = 0; i < end; ++i, ++k) lane[k] += term(i);
  return tree(lane);
}

// Pass 1, factored: the sum of p^2 over the segment and the row means of g^2 + eps1, folded into R.
template <typename P>
OPTREG_KERNEL void rows_kernel(const View<P> t, std::size_t cols, std::size_t begin, std::size_t end, double* sums) {
  using A = sdk::arith_t<P>;
  sums[0] = lanes(begin, end, [&](std::size_t i) {
    const double x = t.value(i);
    return x * x;
  });
  for (std::size_t r = begin / cols; r < end / cols; ++r) {
    const double sum = lanes(r * cols, (r + 1) * cols, [&](std::size_t i) { return static_cast<double>(t.g2(i)); });
    t.row[r] = t.row[r] * t.beta2 + t.one_minus_beta2 * static_cast<A>(sum / static_cast<double>(cols));
  }
}

/// The most columns that pass 2 sums on one thread at a time.
constexpr std::size_t kColumnStrip = 64;

// Pass 2, factored: the column means of g^2 + eps1 of one matrix's columns [j0, j1), folded into C.
template <typename P>
OPTREG_KERNEL void columns_kernel(const View<P> t, const Tensors& geometry, std::size_t matrix, std::size_t j0,
                                  std::size_t j1) {
  using A = sdk::arith_t<P>;
  double acc[kColumnStrip] = {};
  const std::size_t cols = geometry.cols, first_row = matrix * geometry.matrix_rows;
  for (std::size_t r = first_row; r < first_row + geometry.matrix_rows; ++r) {
    for (std::size_t j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(t.g2(r * cols + j));
  }
  const auto rows = static_cast<double>(geometry.matrix_rows);
  A* col = t.col + matrix * cols;
  for (std::size_t j = j0; j < j1; ++j) col[j] = col[j] * t.beta2 + t.one_minus_beta2 * static_cast<A>(acc[j - j0] / rows);
}

/// The factored update of row r before clipping: u_j = g_j / sqrt(R_r / mean(R) * C_j).
template <typename P>
struct FactoredRow {
  using A = sdk::arith_t<P>;
  const View<P>& t;
  std::size_t at;
  const A* col;
  A row_factor;
  FactoredRow(const View<P>& view, const Tensors& geometry, std::size_t r)
      : t(view), at(r * geometry.cols), col(view.col + (r / geometry.matrix_rows) * geometry.cols),
        row_factor(view.row[r] / static_cast<A>(geometry.rmean[r / geometry.matrix_rows])) {}
  A operator()(std::size_t j) const { return t.grad(at + j) / std::sqrt(row_factor * col[j]); }
};

// Pass 3, factored: the sum of u^2 over the segment's rows.
template <typename P>
OPTREG_KERNEL void factored_rms_kernel(const View<P> t, const Tensors& geometry, std::size_t begin, std::size_t end,
                                       double* sums) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t r = begin / geometry.cols; r < end / geometry.cols; ++r) {
    const FactoredRow<P> u(t, geometry, r);
    std::size_t j = 0;
    for (; j + 8 <= geometry.cols; j += 8) {
      for (std::size_t k = 0; k < 8; ++k) {
        const double x = u(j + k);
        lane[k] += x * x;
      }
    }
    for (std::size_t k = 0; j < geometry.cols; ++j, ++k) {
      const double x = u(j);
      lane[k] += x * x;
    }
  }
  sums[1] = tree(lane);
}

/// The last step of every update: clip, average (beta1), decay and apply element i.
template <bool FirstMoment, typename P>
inline void apply(const View<P>& t, std::size_t i, sdk::arith_t<P> u) {
  auto x = u / t.clip;
  if (FirstMoment) {
    x = t.m[i] * t.beta1 + t.one_minus_beta1 * x;
    t.m[i] = x;
  }
  t.p[i] = sdk::narrow<P>(t.value(i) * t.decay + t.neg_alpha * x);
}

// Pass 4, factored: the update of the segment's rows.
template <bool FirstMoment, typename P>
OPTREG_KERNEL void factored_update_kernel(const View<P> t, const Tensors& geometry, std::size_t begin, std::size_t end) {
  for (std::size_t r = begin / geometry.cols; r < end / geometry.cols; ++r) {
    const FactoredRow<P> u(t, geometry, r);
    for (std::size_t j = 0; j < geometry.cols; ++j) apply<FirstMoment>(t, u.at + j, u(j));
  }
}

// Pass 1, unfactored: V, and the sums of p^2 and u^2 over the segment. The arrays come as
// restrict parameters so that the loop vectorises.
template <typename P, typename A = sdk::arith_t<P>>
OPTREG_KERNEL void vector_moments_loop(const View<P> t, const storage_t<P>* __restrict p, const storage_t<P>* __restrict g,
                                       A* __restrict v, std::size_t begin, std::size_t end, double* sums) {
  double pp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double uu[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const auto one = [&](std::size_t i, std::size_t k) {
    const A gi = sdk::widen<A, P>(g[i]);
    const A vi = v[i] * t.beta2 + t.one_minus_beta2 * (gi * gi + t.eps1);
    v[i] = vi;
    const double u = gi / std::sqrt(vi), x = sdk::widen<A, P>(p[i]);
    pp[k] += x * x;
    uu[k] += u * u;
  };
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) one(i + k, k);
  }
  for (std::size_t k = 0; i < end; ++i, ++k) one(i, k);
  sums[0] = tree(pp);
  sums[1] = tree(uu);
}

// Pass 2, unfactored: the update.
template <bool FirstMoment, typename P, typename A = sdk::arith_t<P>>
OPTREG_KERNEL void vector_update_loop(const View<P> t, storage_t<P>* __restrict p, const storage_t<P>* __restrict g,
                                      const A* __restrict v, A* __restrict m, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) {
    A x = sdk::widen<A, P>(g[i]) / std::sqrt(v[i]) / t.clip;
    if (FirstMoment) {
      x = m[i] * t.beta1 + t.one_minus_beta1 * x;
      m[i] = x;
    }
    p[i] = sdk::narrow<P>(sdk::widen<A, P>(p[i]) * t.decay + t.neg_alpha * x);
  }
}

/// Calls `f(View<P>)` with the view of tensor `t` for its element type P.
template <typename F>
void with_view(const Hyper& h, const Tensors& t, F&& f) {
  optreg::visit_dtype(t.dtype, [&](auto tag) { f(View<decltype(tag)>(h, t)); });
}

/// A strip of columns of one matrix of a factored tensor, for pass 2.
struct Strip {
  std::size_t tensor, matrix, j0, j1;
};

class Adafactor final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = sdk::kElementwiseDTypes;
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerWholeTensors;  // factored moments, per-tensor RMS

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    s.add_scalar(kStep.name, std::int64_t{0});
    const optreg::Shape& shape = p.value().shape();
    const optreg::DType dtype = optreg::state_dtype_of(p.value().dtype());
    if (factored(shape)) {
      s.add_tensor(kRow.name, optreg::Tensor(without(shape, 1), dtype));
      s.add_tensor(kCol.name, optreg::Tensor(without(shape, 2), dtype));
    } else {
      s.add_tensor(kSq.name, optreg::Tensor(shape, dtype));
    }
    if (o.at("beta1").as_float() > 0.0) s.add_tensor(kAvg.name, optreg::Tensor(shape, dtype));
  }

  void update_group(const optreg::Options& o, const std::vector<Slot>& slots) override {
    const Hyper h = kHyper.decode(o);
    const bool first_moment = h.beta1 > 0.0;

    // Every state tensor is looked up (and any missing one created) before anything changes.
    tensors_.clear();  // keeps its capacity: no allocation after the first step
    std::size_t matrices = 0;
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const optreg::Tensor& value = slot.param->value();
      const optreg::Shape& shape = value.shape();
      Tensors t{};
      t.p = slot.param->value().raw();
      t.g = slot.param->grad().raw();
      t.n = value.numel();
      t.dtype = value.dtype();
      t.is_factored = factored(shape);
      if (t.is_factored) {
        t.cols = static_cast<std::size_t>(shape.back());
        t.matrix_rows = static_cast<std::size_t>(shape[shape.size() - 2]);
        t.rows = t.cols == 0 ? 0 : t.n / t.cols;
        t.row = need(s, kRow, without(shape, 1), *slot.param).raw();
        t.col = need(s, kCol, without(shape, 2), *slot.param).raw();
        matrices += t.matrix_rows == 0 ? 0 : t.rows / t.matrix_rows;
      } else {
        t.cols = 1;
        t.v = need(s, kSq, shape, *slot.param).raw();
      }
      if (first_moment) t.m = need(s, kAvg, shape, *slot.param).raw();
      tensors_.push_back(t);
    }
    rmean_.resize(matrices);
    strips_.clear();
    sdk::advance_counts(slots, kStep);
    for (std::size_t i = 0, at = 0; i < tensors_.size(); ++i) {
      Tensors& t = tensors_[i];
      const auto step = static_cast<double>(sdk::count(*slots[i].state, kStep));
      const double decay = std::pow(step, -h.decay_rate);
      // Rounded to the arithmetic type where the passes use them, as 1 - decay and decay.
      t.beta2 = 1.0 - decay;
      t.one_minus_beta2 = decay;
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
      const Tensors& t = tensors_[i];
      with_view(h, t, [&](const auto& view) {
        if (t.is_factored) {
          rows_kernel(view, t.cols, begin, end, &sums_[2 * s]);
        } else {
          vector_moments_loop(view, view.p, view.g, view.v, begin, end, &sums_[2 * s]);
        }
      });
    });
    if (!strips_.empty()) {
      // Pass 2: C, each strip of columns on one thread.
      std::size_t elements = 0;
      for (const Strip& s : strips_) elements += (s.j1 - s.j0) * tensors_[s.tensor].matrix_rows;
      const std::size_t grain = std::max<std::size_t>(1, sdk::Segments::kLength * strips_.size() / std::max<std::size_t>(1, elements));
      optreg::parallel_for(strips_.size(), grain, [&](std::size_t begin, std::size_t end) {
        for (std::size_t k = begin; k < end; ++k) {
          const Strip& s = strips_[k];
          const Tensors& t = tensors_[s.tensor];
          with_view(h, t, [&](const auto& view) { columns_kernel(view, t, s.matrix, s.j0, s.j1); });
        }
      });
      for (const Tensors& t : tensors_) {
        if (!t.is_factored || t.n == 0) continue;
        with_view(h, t, [&](const auto& view) {
          using A = std::remove_pointer_t<decltype(view.row)>;
          for (std::size_t b = 0; b < t.rows / t.matrix_rows; ++b) {
            double sum = 0.0;
            for (std::size_t r = b * t.matrix_rows; r < (b + 1) * t.matrix_rows; ++r) sum += view.row[r];
            // mean(R) in the arithmetic type, kept as a double that holds it exactly
            t.rmean[b] = static_cast<A>(sum / static_cast<double>(t.matrix_rows));
          }
        });
      }
      // Pass 3: the sums of u^2 of factored tensors.
      segments_.run([&](std::size_t s, std::size_t i, std::size_t begin, std::size_t end) {
        const Tensors& t = tensors_[i];
        if (!t.is_factored) return;
        with_view(h, t, [&](const auto& view) { factored_rms_kernel(view, t, begin, end, &sums_[2 * s]); });
      });
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      Tensors& t = tensors_[i];
      if (t.n == 0) continue;
      const auto step = static_cast<double>(sdk::count(*slots[i].state, kStep));
      const auto n = static_cast<double>(t.n);
      const double rho = h.relative_step ? std::min(h.lr, 1.0 / std::sqrt(step)) : h.lr;
      const double alpha =
          h.scale_parameter ? std::max(h.eps[1], std::sqrt(segments_.sum(sums_, i, 2, 0) / n)) * rho : rho;
      const double rms = std::sqrt(segments_.sum(sums_, i, 2, 1) / n);
      t.clip = std::max(1.0, rms / h.clip_threshold);
      t.decay = 1.0 - alpha * h.weight_decay;
      t.neg_alpha = -alpha;
    }
    // Pass 4 (pass 2 unfactored): the update.
    segments_.run([&](std::size_t, std::size_t i, std::size_t begin, std::size_t end) {
      const Tensors& t = tensors_[i];
      with_view(h, t, [&](const auto& view) {
        if (t.is_factored) {
          first_moment ? factored_update_kernel<true>(view, t, begin, end)
                       : factored_update_kernel<false>(view, t, begin, end);
        } else {
          first_moment ? vector_update_loop<true>(view, view.p, view.g, view.v, view.m, begin, end)
                       : vector_update_loop<false>(view, view.p, view.g, view.v, view.m, begin, end);
        }
      });
    });
  }

 private:
  std::vector<Tensors> tensors_;  // the tensors of one step, reused by every step
  std::vector<Strip> strips_;     // the column strips of pass 2
  std::vector<double> rmean_;     // mean(R) of every matrix of the factored tensors
  std::vector<double> sums_;      // per segment: the sums of p^2 and u^2
  sdk::Segments segments_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Adafactor, "adafactor", "1.0.0",
                          "Adafactor: factored second moments, relative step size and update clipping", kHyper.schema,
                          kState)
