// L-BFGS (Nocedal 1980; Liu and Nocedal 1989), as torch 1.13's torch.optim.LBFGS (after
// minFunc): each step evaluates the loss through the closure, then takes up to max_iter
// quasi-Newton iterations over all parameters as one flat vector. Each iteration's direction
// comes from the two-loop recursion over the last history_size pairs (s, y) of steps and
// gradient changes, scaled by h_diag = y.s / y.y; its length is lr (min(1, 1/|g|_1) lr at the
// very first iteration), or the strong Wolfe line search's (cubic interpolation, c1 = 1e-4,
// c2 = 0.9, 25 evaluations at most). It stops early when the gradient's largest element is at
// most tolerance_grad, when the loss or the step changes by less than tolerance_change, or
// after max_eval evaluations.
//
// Every parameter's state holds its slice of the flat vectors (d, prev_grad, the history) and
// the same copy of the scalars. Dot products are accumulated in double.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;
using optreg::DType;
using optreg::Tensor;

struct Hyper {
  double lr;
  std::int64_t max_iter, max_eval;
  double tolerance_grad, tolerance_change;
  std::int64_t history_size;
  std::string line_search;
};

constexpr const char* kLineSearches[] = {"none", "strong_wolfe", nullptr};
constexpr auto kHyper = sdk::hyperparams(
    sdk::lr(&Hyper::lr, 1.0),
    sdk::option(&Hyper::max_iter, sdk::int_option("max_iter", 20, sdk::closed(1.0, 1e9), "iterations per step")),
    sdk::option(&Hyper::max_eval, sdk::int_option("max_eval", 0, sdk::closed(0.0, 1e9),
                                                  "most loss evaluations per step; 0: max_iter * 5 / 4")),
    sdk::option(&Hyper::tolerance_grad,
                sdk::float_option("tolerance_grad", 1e-7, sdk::at_least(0.0),
                                  "stop when the gradient's largest element is at most this")),
    sdk::option(&Hyper::tolerance_change,
                sdk::float_option("tolerance_change", 1e-9, sdk::at_least(0.0),
                                  "stop when the loss or the step changes by less than this")),
    sdk::option(&Hyper::history_size, sdk::int_option("history_size", 100, sdk::closed(1.0, 1e6),
                                                      "pairs (s, y) the inverse Hessian is estimated from")),
    sdk::option(&Hyper::line_search, sdk::string_option("line_search", "none", kLineSearches,
                                                        "step length: lr (none), or a strong Wolfe line search")));

constexpr sdk::State kState[] = {
    sdk::state_int("n_iter", sdk::count(), "iterations taken, over all steps"),
    sdk::state_int("func_evals", sdk::count(), "loss evaluations, over all steps"),
    sdk::state_int("history", sdk::count(), "pairs (s, y) held in the history"),
    sdk::state_float("t", sdk::non_negative(), "length of the last step"),
    sdk::state_float("h_diag", sdk::non_negative(), "scale of the initial inverse Hessian, y.s / y.y"),
    sdk::state_float("prev_loss", sdk::closed(-sdk::kInf, sdk::kInf), "loss at the start of the last iteration"),
    sdk::state_tensor("d", sdk::not_nan(), "the last search direction"),
    sdk::state_tensor("prev_grad", sdk::not_nan(), "the gradient at the start of the last iteration"),
    sdk::shaped_state_tensor("old_dirs", sdk::not_nan(), "gradient changes y of the history, [history_size, elements]"),
    sdk::shaped_state_tensor("old_stps", sdk::not_nan(), "steps s of the history, [history_size, elements]"),
    sdk::shaped_state_tensor("ro", sdk::non_negative(), "1 / y.s of each pair of the history, [history_size]"),
};
constexpr auto kIter = sdk::scalar_entry(kState, "n_iter");
constexpr auto kEvals = sdk::scalar_entry(kState, "func_evals");
constexpr auto kHistory = sdk::scalar_entry(kState, "history");
constexpr auto kT = sdk::scalar_entry(kState, "t");
constexpr auto kHDiag = sdk::scalar_entry(kState, "h_diag");
constexpr auto kPrevLoss = sdk::scalar_entry(kState, "prev_loss");
constexpr auto kD = sdk::tensor_entry(kState, "d");
constexpr auto kPrevGrad = sdk::tensor_entry(kState, "prev_grad");
constexpr auto kOldDirs = sdk::tensor_entry(kState, "old_dirs");
constexpr auto kOldStps = sdk::tensor_entry(kState, "old_stps");
constexpr auto kRo = sdk::tensor_entry(kState, "ro");

/// One parameter's part of a flat vector: `n` elements of `dtype` (float32 or float64).
struct Part {
  void* data;
  std::size_t n;
  DType dtype;
};
/// A vector over all parameters, one part each, in slot order.
using Flat = std::vector<Part>;

Part part_of(Tensor& t) { return {t.raw(), t.numel(), t.dtype()}; }
Part row_of(Tensor& history, std::size_t row, std::size_t n) {
  return {static_cast<char*>(history.raw()) + row * n * optreg::dtype_size(history.dtype()), n, history.dtype()};
}

/// Calls f(part index, T) with T the part's element type.
template <typename F>
void each(const Flat& a, F&& f) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].dtype == DType::Float64) {
      f(i, double{});
    } else {
      f(i, float{});
    }
  }
}

template <typename T>
T* at(const Part& p) {
  return static_cast<T*>(p.data);
}

double dot(const Flat& a, const Flat& b) {
  double s = 0;
  each(a, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    const T* x = at<T>(a[i]);
    const T* y = at<T>(b[i]);
    for (std::size_t k = 0; k < a[i].n; ++k) s += static_cast<double>(x[k]) * static_cast<double>(y[k]);
  });
  return s;
}

/// y += alpha x
void axpy(const Flat& y, double alpha, const Flat& x) {
  each(y, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    T* out = at<T>(y[i]);
    const T* in = at<T>(x[i]);
    const T a = static_cast<T>(alpha);
    for (std::size_t k = 0; k < y[i].n; ++k) out[k] += a * in[k];
  });
}

/// out = alpha x
void scaled(const Flat& out, double alpha, const Flat& x) {
  each(out, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    T* o = at<T>(out[i]);
    const T* in = at<T>(x[i]);
    const T a = static_cast<T>(alpha);
    for (std::size_t k = 0; k < out[i].n; ++k) o[k] = in[k] * a;
  });
}

/// out = a - b
void difference(const Flat& out, const Flat& a, const Flat& b) {
  each(out, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    for (std::size_t k = 0; k < out[i].n; ++k) at<T>(out[i])[k] = at<T>(a[i])[k] - at<T>(b[i])[k];
  });
}

void copy(const Flat& out, const Flat& in) {
  for (std::size_t i = 0; i < out.size(); ++i) std::memcpy(out[i].data, in[i].data, out[i].n * optreg::dtype_size(out[i].dtype));
}

/// max_k |scale x_k| (x itself for scale 1), each product rounded to the element type.
double abs_max(const Flat& x, double scale = 1.0) {
  double m = 0;
  each(x, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    const T s = static_cast<T>(scale);
    for (std::size_t k = 0; k < x[i].n; ++k) m = std::max(m, static_cast<double>(std::abs(at<T>(x[i])[k] * s)));
  });
  return m;
}

double abs_sum(const Flat& x) {
  double s = 0;
  each(x, [&](std::size_t i, auto tag) {
    using T = decltype(tag);
    for (std::size_t k = 0; k < x[i].n; ++k) s += std::abs(static_cast<double>(at<T>(x[i])[k]));
  });
  return s;
}

/// The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), within the bounds
/// (their interval by default); their middle when the cubic has none.
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2, double lo, double hi) {
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (d2_square >= 0) {
    const double d2 = std::sqrt(d2_square);
    const double min_pos = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                                    : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
    return std::min(std::max(min_pos, lo), hi);
  }
  return (lo + hi) / 2;
}
double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2) {
  return cubic_interpolate(x1, f1, g1, x2, f2, g2, std::min(x1, x2), std::max(x1, x2));
}

/// Working vectors, one tensor per parameter, kept from step to step while the shapes stay.
struct Buffers {
  std::vector<Tensor> tensors;
  Flat flat;
  void fit(const std::vector<optreg::Optimizer::Slot>& slots) {
    bool same = tensors.size() == slots.size();
    for (std::size_t i = 0; same && i < slots.size(); ++i) {
      const Tensor& v = slots[i].param->value();
      same = tensors[i].shape() == v.shape() && tensors[i].dtype() == v.dtype();
    }
    if (!same) {
      tensors.clear();
      for (const auto& s : slots) tensors.emplace_back(s.param->value().shape(), s.param->value().dtype());
    }
    flat.clear();
    for (Tensor& t : tensors) flat.push_back(part_of(t));
  }
};

class Lbfgs final : public optreg::Optimizer {
 public:
  static constexpr optreg::DTypeSet kParamDTypes = optreg::dtype_bit(DType::Float32) | optreg::dtype_bit(DType::Float64);
  static constexpr std::uint32_t kFlags = optreg::abi::kOptimizerNeedsClosure;

 protected:
  void init_state(const optreg::Options& o, const optreg::Parameter& p, optreg::ParamState& s) const override {
    const std::int64_t history = o.at("history_size").as_int();
    const DType dtype = optreg::state_dtype_of(p.value().dtype());
    const auto n = static_cast<std::int64_t>(p.value().numel());
    s.add_scalar(kIter.name, std::int64_t{0});
    s.add_scalar(kEvals.name, std::int64_t{0});
    s.add_scalar(kHistory.name, std::int64_t{0});
    s.add_scalar(kT.name, 0.0);
    s.add_scalar(kHDiag.name, 0.0);
    s.add_scalar(kPrevLoss.name, 0.0);
    s.add_tensor(kD.name, sdk::state_like(p));
    s.add_tensor(kPrevGrad.name, sdk::state_like(p));
    s.add_tensor(kOldDirs.name, Tensor({history, n}, dtype));
    s.add_tensor(kOldStps.name, Tensor({history, n}, dtype));
    s.add_tensor(kRo.name, Tensor({history}, dtype));
  }

  void update_group(const optreg::Options& /*options*/, const std::vector<Slot>& /*slots*/) override {
    throw optreg::UsageError("lbfgs steps with a closure: call step(closure)");
  }

  void closure_update(const optreg::Options& o, const std::vector<Slot>& slots, double first_loss,
                      const optreg::Closure& closure) override {
    const Hyper h = kHyper.decode(o);
    const std::int64_t max_eval = h.max_eval > 0 ? h.max_eval : h.max_iter * 5 / 4;
    const auto history_size = static_cast<std::size_t>(h.history_size);
    check_state(slots, h, max_eval);
    fit_history(slots, history_size);

    optreg::ParamState& s0 = *slots.front().state;
    std::int64_t n_iter_total = sdk::count(s0, kIter);
    std::int64_t func_evals = sdk::count(s0, kEvals);
    auto m = static_cast<std::size_t>(sdk::count(s0, kHistory));
    double t = sdk::real(s0, kT);
    double h_diag = sdk::real(s0, kHDiag);
    double prev_loss = sdk::real(s0, kPrevLoss);

    params_.clear();
    Flat d, prev_grad;
    for (const Slot& slot : slots) {
      params_.push_back(part_of(slot.param->value()));
      d.push_back(part_of(sdk::get(*slot.state, kD)));
      prev_grad.push_back(part_of(sdk::get(*slot.state, kPrevGrad)));
    }
    for (Buffers* b : {&grad_, &y_, &s_, &x_init_, &g_prev_, &g_low_, &g_high_}) b->fit(slots);
    const Flat& flat_grad = grad_.flat;
    al_.assign(history_size, 0.0);

    double loss = first_loss;
    std::int64_t current_evals = 1;
    ++func_evals;
    gather(slots, flat_grad);
    bool opt_cond = abs_max(flat_grad) <= h.tolerance_grad;
    const auto save = [&] {
      for (const Slot& slot : slots) {
        optreg::ParamState& s = *slot.state;
        sdk::count(s, kIter) = n_iter_total;
        sdk::count(s, kEvals) = func_evals;
        sdk::count(s, kHistory) = static_cast<std::int64_t>(m);
        sdk::real(s, kT) = t;
        sdk::real(s, kHDiag) = h_diag;
        sdk::real(s, kPrevLoss) = prev_loss;
      }
    };
    if (opt_cond) {
      save();
      return;
    }

    std::int64_t n_iter = 0;
    while (n_iter < h.max_iter) {
      ++n_iter;
      ++n_iter_total;
      // The direction.
      if (n_iter_total == 1) {
        scaled(d, -1.0, flat_grad);
        m = 0;
        h_diag = 1;
      } else {
        difference(y_.flat, flat_grad, prev_grad);
        scaled(s_.flat, t, d);
        const double ys = dot(y_.flat, s_.flat);
        if (ys > 1e-10) {
          if (m == history_size) {
            shift_history(slots);
            --m;
          }
          for_row(slots, m, [&](const Flat& dirs, const Flat& stps) {
            copy(dirs, y_.flat);
            copy(stps, s_.flat);
          });
          set_ro(slots, m, 1.0 / ys);
          ++m;
          h_diag = ys / dot(y_.flat, y_.flat);
        }
        // q = -g, then d = h_diag q through the two loops (q kept in d).
        scaled(d, -1.0, flat_grad);
        for (std::size_t i = m; i-- > 0;) {
          for_row(slots, i, [&](const Flat& dirs, const Flat& stps) {
            al_[i] = dot(stps, d) * ro(slots, i);
            axpy(d, -al_[i], dirs);
          });
        }
        scaled(d, h_diag, d);
        for (std::size_t i = 0; i < m; ++i) {
          for_row(slots, i, [&](const Flat& dirs, const Flat& stps) {
            const double be_i = dot(dirs, d) * ro(slots, i);
            axpy(d, al_[i] - be_i, stps);
          });
        }
      }
      copy(prev_grad, flat_grad);
      prev_loss = loss;

      // The step length.
      t = n_iter_total == 1 ? std::min(1.0, 1.0 / abs_sum(flat_grad)) * h.lr : h.lr;
      const double gtd = dot(flat_grad, d);
      if (gtd > -h.tolerance_change) break;

      std::int64_t ls_evals = 0;
      if (h.line_search == "strong_wolfe") {
        copy(x_init_.flat, params_);
        strong_wolfe(slots, closure, d, t, loss, gtd, h.tolerance_change, ls_evals);
        axpy(params_, t, d);
        opt_cond = abs_max(flat_grad) <= h.tolerance_grad;
      } else {
        axpy(params_, t, d);
        if (n_iter != h.max_iter) {
          loss = closure();
          gather(slots, flat_grad);
          opt_cond = abs_max(flat_grad) <= h.tolerance_grad;
          ls_evals = 1;
        }
      }
      current_evals += ls_evals;
      func_evals += ls_evals;

      if (n_iter == h.max_iter) break;
      if (current_evals >= max_eval) break;
      if (opt_cond) break;
      if (abs_max(d, t) <= h.tolerance_change) break;
      if (std::abs(loss - prev_loss) < h.tolerance_change) break;
    }
    save();
  }

 private:
  /// Copies every parameter's gradient into `g` (zeros for a parameter the closure left
  /// without one); a gradient of another shape or dtype is the host's mistake.
  static void gather(const std::vector<Slot>& slots, const Flat& g) {
    for (std::size_t i = 0; i < slots.size(); ++i) {
      const optreg::Parameter& p = *slots[i].param;
      const std::size_t bytes = g[i].n * optreg::dtype_size(g[i].dtype);
      if (!p.has_grad()) {
        std::memset(g[i].data, 0, bytes);
        continue;
      }
      const Tensor& grad = p.grad();
      if (grad.shape() != p.value().shape() || grad.dtype() != p.value().dtype()) {
        throw optreg::UsageError("lbfgs: the closure left parameter '" + p.name() + "' a " +
                                 optreg::dtype_name(grad.dtype()) + " gradient of shape " + optreg::to_string(grad.shape()) +
                                 ", but the parameter is " + optreg::dtype_name(p.value().dtype()) + " of shape " +
                                 optreg::to_string(p.value().shape()));
      }
      std::memcpy(g[i].data, grad.raw(), bytes);
    }
  }

  /// Refuses, before anything changes, a state the step cannot continue: a count that the
  /// step could carry past 2^53, or a history count beyond its tensors' rows.
  static void check_state(const std::vector<Slot>& slots, const Hyper& h, std::int64_t max_eval) {
    // A step evaluates at most max_eval times, and a line search may pass that by 25.
    const std::int64_t most_evals = max_eval + 26;
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      const std::string who = "parameter '" + slot.param->name() + "'";
      for (const auto& [entry, most] : {std::pair{kIter, h.max_iter}, std::pair{kEvals, most_evals}}) {
        const std::int64_t n = sdk::count(s, entry);
        if (n > optreg::kMaxCount - most) {
          throw optreg::UsageError(who + " cannot take another step: its state count '" + entry.name + "' = " +
                                   std::to_string(n) + " could pass 2^53 within one step (" + std::to_string(most) +
                                   " more at most)");
        }
      }
      const std::int64_t held = sdk::count(s, kHistory);
      const Tensor& dirs = sdk::get(s, kOldDirs);
      const Tensor& stps = sdk::get(s, kOldStps);
      const Tensor& ro = sdk::get(s, kRo);
      const std::int64_t n = static_cast<std::int64_t>(slot.param->value().numel());
      const bool shaped = dirs.shape().size() == 2 && dirs.shape()[1] == n && stps.shape() == dirs.shape() &&
                          ro.shape() == optreg::Shape{dirs.shape()[0]};
      if (!shaped) {
        throw optreg::UsageError(who + ": the history tensors of shapes " + optreg::to_string(dirs.shape()) + ", " +
                                 optreg::to_string(stps.shape()) + " and " + optreg::to_string(ro.shape()) +
                                 " do not hold rows of " + std::to_string(n) + " elements");
      }
      if (held > dirs.shape()[0]) {
        throw optreg::UsageError(who + ": its state count 'history' = " + std::to_string(held) + " exceeds the " +
                                 std::to_string(dirs.shape()[0]) + " pairs its history tensors hold");
      }
    }
  }

  /// Makes every parameter's history hold `rows` pairs (history_size changed since it was made),
  /// keeping the newest.
  static void fit_history(const std::vector<Slot>& slots, std::size_t rows) {
    for (const Slot& slot : slots) {
      optreg::ParamState& s = *slot.state;
      Tensor& dirs = sdk::get(s, kOldDirs);
      if (dirs.shape().size() == 2 && static_cast<std::size_t>(dirs.shape()[0]) == rows) continue;
      const std::size_t n = slot.param->value().numel();
      const auto held = static_cast<std::size_t>(sdk::count(s, kHistory));
      const std::size_t keep = std::min(held, rows);
      const std::size_t width = n * optreg::dtype_size(dirs.dtype());
      for (const auto entry : {kOldDirs, kOldStps}) {
        Tensor& old = sdk::get(s, entry);
        Tensor fresh({static_cast<std::int64_t>(rows), static_cast<std::int64_t>(n)}, old.dtype());
        std::memcpy(fresh.raw(), static_cast<const char*>(old.raw()) + (held - keep) * width, keep * width);
        old = fresh;
      }
      Tensor& ro = sdk::get(s, kRo);
      Tensor fresh_ro({static_cast<std::int64_t>(rows)}, ro.dtype());
      const std::size_t size = optreg::dtype_size(ro.dtype());
      std::memcpy(fresh_ro.raw(), static_cast<const char*>(ro.raw()) + (held - keep) * size, keep * size);
      ro = fresh_ro;
      sdk::count(s, kHistory) = static_cast<std::int64_t>(keep);
    }
  }

  /// Calls f(y rows, s rows) with row `row` of every parameter's history.
  template <typename F>
  void for_row(const std::vector<Slot>& slots, std::size_t row, F&& f) {
    dirs_.clear();
    stps_.clear();
    for (const Slot& slot : slots) {
      const std::size_t n = slot.param->value().numel();
      dirs_.push_back(row_of(sdk::get(*slot.state, kOldDirs), row, n));
      stps_.push_back(row_of(sdk::get(*slot.state, kOldStps), row, n));
    }
    f(dirs_, stps_);
  }

  /// Drops the oldest pair: rows 1.. move to 0...
  static void shift_history(const std::vector<Slot>& slots) {
    for (const Slot& slot : slots) {
      for (const auto entry : {kOldDirs, kOldStps, kRo}) {
        Tensor& t = sdk::get(*slot.state, entry);
        const std::size_t rows = static_cast<std::size_t>(t.shape()[0]);
        const std::size_t width = t.nbytes() / rows;
        std::memmove(t.raw(), static_cast<const char*>(t.raw()) + width, (rows - 1) * width);
      }
    }
  }

  static void set_ro(const std::vector<Slot>& slots, std::size_t row, double value) {
    for (const Slot& slot : slots) {
      Tensor& ro = sdk::get(*slot.state, kRo);
      if (ro.dtype() == DType::Float64) {
        ro.data_as<double>()[row] = value;
      } else {
        ro.data_as<float>()[row] = static_cast<float>(value);
      }
    }
  }
  static double ro(const std::vector<Slot>& slots, std::size_t row) {
    const Tensor& ro = sdk::get(*slots.front().state, kRo);
    return ro.element(row);
  }

  /// The loss and gradient (into `g`) at x_init + t d; the parameters are put back after.
  double directional(const std::vector<Slot>& slots, const optreg::Closure& closure, const Flat& d, double t,
                     const Flat& g) {
    axpy(params_, t, d);
    const double loss = closure();
    gather(slots, g);
    copy(params_, x_init_.flat);
    return loss;
  }

  /// The strong Wolfe line search from the start x_init (loss f, gradient grad_, directional
  /// derivative gtd) along d, from the trial length t: leaves in t the length found, in `loss`
  /// its loss and in grad_ its gradient, and counts its evaluations in `evals`.
  void strong_wolfe(const std::vector<Slot>& slots, const optreg::Closure& closure, const Flat& d, double& t,
                    double& loss, double gtd, double tolerance_change, std::int64_t& evals) {
    constexpr double c1 = 1e-4;
    constexpr double c2 = 0.9;
    constexpr int max_ls = 25;
    const double f = loss;
    const double d_norm = abs_max(d);
    // g: the gradient at the start (grad_ until it is overwritten), kept in g_low_ as bracket
    // entries come and go: bracket points are (length, loss, gradient buffer, derivative).
    struct Point {
      double t, f;
      Buffers* g;
      double gtd;
    };
    Buffers start_g;
    start_g.fit(slots);
    copy(start_g.flat, grad_.flat);

    Buffers* g_new = &g_high_;
    double f_new = directional(slots, closure, d, t, g_new->flat);
    evals = 1;
    double gtd_new = dot(g_new->flat, d);

    Point prev{0.0, f, &start_g, gtd};
    copy(g_prev_.flat, start_g.flat);
    prev.g = &g_prev_;
    Point bracket[2];
    int size = 0;
    bool done = false;
    int ls_iter = 0;
    while (ls_iter < max_ls) {
      if (f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= prev.f)) {
        copy(g_low_.flat, prev.g->flat);
        bracket[0] = {prev.t, prev.f, &g_low_, prev.gtd};
        bracket[1] = {t, f_new, g_new, gtd_new};
        size = 2;
        break;
      }
      if (std::abs(gtd_new) <= -c2 * gtd) {
        bracket[0] = {t, f_new, g_new, gtd_new};
        size = 1;
        done = true;
        break;
      }
      if (gtd_new >= 0) {
        copy(g_low_.flat, prev.g->flat);
        bracket[0] = {prev.t, prev.f, &g_low_, prev.gtd};
        bracket[1] = {t, f_new, g_new, gtd_new};
        size = 2;
        break;
      }
      const double min_step = t + 0.01 * (t - prev.t);
      const double max_step = t * 10;
      const double tmp = t;
      t = cubic_interpolate(prev.t, prev.f, prev.gtd, t, f_new, gtd_new, min_step, max_step);
      copy(g_prev_.flat, g_new->flat);
      prev = {tmp, f_new, &g_prev_, gtd_new};
      f_new = directional(slots, closure, d, t, g_new->flat);
      ++evals;
      gtd_new = dot(g_new->flat, d);
      ++ls_iter;
    }
    if (ls_iter == max_ls) {
      bracket[0] = {0.0, f, &start_g, gtd};
      bracket[1] = {t, f_new, g_new, gtd_new};
      size = 2;
    }

    // Zoom: refine the bracket until a point satisfies the conditions.
    bool insufficient = false;
    int low = 0;
    int high = 1;
    if (size == 2 && bracket[1].f < bracket[0].f) std::swap(low, high);
    while (!done && ls_iter < max_ls) {
      if (std::abs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change) break;
      t = cubic_interpolate(bracket[0].t, bracket[0].f, bracket[0].gtd, bracket[1].t, bracket[1].f, bracket[1].gtd);
      const double hi_t = std::max(bracket[0].t, bracket[1].t);
      const double lo_t = std::min(bracket[0].t, bracket[1].t);
      const double eps = 0.1 * (hi_t - lo_t);
      if (std::min(hi_t - t, t - lo_t) < eps) {
        if (insufficient || t >= hi_t || t <= lo_t) {
          t = std::abs(t - hi_t) < std::abs(t - lo_t) ? hi_t - eps : lo_t + eps;
          insufficient = false;
        } else {
          insufficient = true;
        }
      } else {
        insufficient = false;
      }
      // The new point's gradient goes to a buffer no bracket point holds.
      Buffers* spare = &g_high_;
      for (Buffers* b : {&g_high_, &g_prev_, &g_low_, &start_g}) {
        if (b != bracket[0].g && b != bracket[1].g) {
          spare = b;
          break;
        }
      }
      f_new = directional(slots, closure, d, t, spare->flat);
      ++evals;
      gtd_new = dot(spare->flat, d);
      ++ls_iter;
      if (f_new > f + c1 * t * gtd || f_new >= bracket[low].f) {
        bracket[high] = {t, f_new, spare, gtd_new};
        low = bracket[0].f <= bracket[1].f ? 0 : 1;
        high = 1 - low;
      } else {
        if (std::abs(gtd_new) <= -c2 * gtd) {
          done = true;
        } else if (gtd_new * (bracket[high].t - bracket[low].t) >= 0) {
          bracket[high] = bracket[low];
        }
        bracket[low] = {t, f_new, spare, gtd_new};
      }
    }
    t = bracket[low].t;
    loss = bracket[low].f;
    if (bracket[low].g != &grad_) copy(grad_.flat, bracket[low].g->flat);
  }

  Flat params_, dirs_, stps_;
  Buffers grad_, y_, s_, x_init_, g_prev_, g_low_, g_high_;
  std::vector<double> al_;
};

}  // namespace

OPTREG_REGISTER_OPTIMIZER(Lbfgs, "lbfgs", "1.0.0",
                          "L-BFGS as torch.optim.LBFGS: quasi-Newton iterations over all parameters as one vector, "
                          "with a closure, a history of steps and an optional strong Wolfe line search",
                          kHyper.schema, kState)
