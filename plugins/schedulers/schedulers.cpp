// Learning-rate schedulers with the semantics of PyTorch 1.13's torch.optim.lr_scheduler: the
// chainable form (each step from the lrs the optimizer holds), the closed form at a sequence's
// restart, and the same double arithmetic in the same order.
#include <algorithm>
#include <cmath>
#include <map>

#include <optreg/elementwise.hpp>

namespace {

namespace sdk = optreg::sdk;
using optreg::OptionError;
using optreg::Options;
using optreg::StateDictError;
using optreg::Value;

constexpr double kPi = 3.141592653589793;

/// A required option left at its "not given" default of 0.
void require_given(const Options& o, const char* name, const std::string& where, const char* what) {
  const Value& v = o.at(name);
  const bool zero = v.type() == optreg::ValueType::Int ? v.as_int() == 0 : v.as_float() == 0.0;
  if (zero) throw OptionError(where, name, std::string("option '") + name + "' is required (" + what + ")");
}

/// Every group's lr times `factor`.
std::vector<double> scaled(const std::vector<double>& lrs, double factor) {
  std::vector<double> out;
  for (double lr : lrs) out.push_back(lr * factor);
  return out;
}

/// The momentum a scheduler cycles against the lr (onecycle, cyclic): each group's betas[0]
/// when its optimizer has a list `betas` (Adam), else its float `momentum` (SGD), as PyTorch
/// chooses. The groups of a composite may differ.
class MomentumCycle {
 public:
  /// Finds which option to set in each group; throws OptionError from `who` when a group's
  /// optimizer has neither.
  void bind(const optreg::Optimizer& opt, const std::string& who) {
    use_betas_.clear();
    for (std::size_t g = 0; g < opt.param_groups().size(); ++g) {
      const optreg::Schema& schema = opt.group_schema(g);
      const auto* betas = schema.find("betas");
      const auto* momentum = schema.find("momentum");
      if (betas != nullptr && betas->type == optreg::ValueType::FloatList) {
        use_betas_.push_back(true);
        continue;
      }
      if (momentum == nullptr || momentum->type != optreg::ValueType::Float) {
        const auto it = opt.param_groups()[g].options().find("optimizer");
        const std::string name = it == opt.param_groups()[g].options().end() ? opt.name() : it->second.as_string();
        throw OptionError(who, "cycle_momentum",
                          "option 'cycle_momentum' = true needs an optimizer with a float option 'momentum' or "
                          "a list 'betas', and optimizer '" + name + "' has neither (set cycle_momentum: false)");
      }
      use_betas_.push_back(false);
    }
  }
  /// Sets every group's momentum (or betas[0]) to `m`; a group added since bind() by what its
  /// optimizer has.
  void set(optreg::Optimizer& opt, double m) const {
    for (std::size_t g = 0; g < opt.param_groups().size(); ++g) {
      const auto* betas = g < use_betas_.size() ? nullptr : opt.group_schema(g).find("betas");
      const bool use_betas = g < use_betas_.size() ? bool(use_betas_[g])
                                                   : betas != nullptr && betas->type == optreg::ValueType::FloatList;
      if (use_betas) {
        std::vector<double> betas = opt.param_groups()[g].option("betas").as_float_list();
        betas.at(0) = m;
        opt.set_option(g, "betas", Value(std::move(betas)));
      } else {
        opt.set_option(g, "momentum", Value(m));
      }
    }
  }

 private:
  std::vector<bool> use_betas_;
};

// ------------------------------------------------------------------ step

/// A scheduler whose options decode, once, into the struct H of its declaration `hyper`.
template <typename H, const auto& kHyper>
class Typed : public optreg::Scheduler {
 protected:
  void attach() override { h_ = kHyper.decode(options()); }
  H h_{};
};

struct StepHyper {
  std::int64_t step_size;
  double gamma;
};
constexpr auto kStep = sdk::hyperparams(
    sdk::option(&StepHyper::step_size, sdk::int_option("step_size", 0, sdk::count(), "steps between two decays (required)")),
    sdk::option(&StepHyper::gamma, sdk::float_option("gamma", 0.1, sdk::at_least(0.0),
                                                     "factor applied to the lr every step_size steps")));

class StepLr final : public Typed<StepHyper, kStep> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "step_size", where, "a positive number of steps");
  }
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const std::int64_t t = last_step();
    if (t == 0 || t % h_.step_size != 0) return current;
    return scaled(current, h_.gamma);
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    return scaled(base_lrs(), std::pow(h_.gamma, static_cast<double>(last_step() / h_.step_size)));
  }
};

// ------------------------------------------------------------------ multistep

constexpr double kNoMilestones[1] = {0};
struct MultiStepHyper {
  std::vector<double> milestones;
  double gamma;
};
constexpr auto kMultiStep = sdk::hyperparams(
    sdk::option(&MultiStepHyper::milestones,
                [] {
                  auto s = sdk::float_list_option("milestones", kNoMilestones, sdk::count(),
                                                  "steps at which the lr is multiplied by gamma (whole numbers)");
                  s.list_size = 0;  // any length
                  s.default_list_size = 0;
                  return s;
                }()),
    sdk::option(&MultiStepHyper::gamma,
                sdk::float_option("gamma", 0.1, sdk::at_least(0.0), "factor applied to the lr at each milestone")));

class MultiStepLr final : public Typed<MultiStepHyper, kMultiStep> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    for (double m : o.at("milestones").as_float_list()) {
      if (m != std::floor(m)) {
        throw OptionError(where, "milestones", "option 'milestones' must hold whole numbers of steps; " + Value(m).to_string() +
                          " is not one");
      }
    }
  }
  void attach() override {
    Typed::attach();
    for (double m : h_.milestones) {
      const auto step = static_cast<std::int64_t>(m);
      ++count_[step];  // a milestone given twice decays twice
      sorted_.push_back(step);
    }
    std::sort(sorted_.begin(), sorted_.end());
  }
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const auto it = count_.find(last_step());
    if (it == count_.end()) return current;
    return scaled(current, std::pow(h_.gamma, static_cast<double>(it->second)));
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    const auto passed = std::upper_bound(sorted_.begin(), sorted_.end(), last_step()) - sorted_.begin();
    return scaled(base_lrs(), std::pow(h_.gamma, static_cast<double>(passed)));
  }

 private:
  std::map<std::int64_t, std::int64_t> count_;
  std::vector<std::int64_t> sorted_;
};

// ------------------------------------------------------------------ exponential

struct ExponentialHyper {
  double gamma;
};
constexpr auto kExponential = sdk::hyperparams(sdk::option(
    &ExponentialHyper::gamma, sdk::float_option("gamma", 0.0, sdk::at_least(0.0), "factor applied to the lr every step (required)")));

class ExponentialLr final : public Typed<ExponentialHyper, kExponential> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "gamma", where, "a positive factor");
  }
  std::vector<double> next_lr(const std::vector<double>& current) override {
    if (last_step() == 0) return current;
    return scaled(current, h_.gamma);
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    return scaled(base_lrs(), std::pow(h_.gamma, static_cast<double>(last_step())));
  }
};

// ------------------------------------------------------------------ cosine

struct CosineHyper {
  std::int64_t T_max;
  double eta_min;
};
constexpr auto kCosine = sdk::hyperparams(
    sdk::option(&CosineHyper::T_max, sdk::int_option("T_max", 0, sdk::count(), "steps of one half cosine period (required)")),
    sdk::option(&CosineHyper::eta_min, sdk::float_option("eta_min", 0.0, sdk::at_least(0.0), "the lowest lr")));

class CosineLr final : public Typed<CosineHyper, kCosine> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "T_max", where, "a positive number of steps");
  }
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const std::int64_t t = last_step();
    if (t == 0) return current;
    const std::int64_t period = h_.T_max;
    const double T = static_cast<double>(period);
    const double eta_min = h_.eta_min;
    std::vector<double> out;
    if ((t - 1 - period) % (2 * period) == 0) {
      // The step after a minimum: the recursive form would divide by zero there.
      for (std::size_t g = 0; g < current.size(); ++g) {
        out.push_back(current[g] + (base_lrs()[g] - eta_min) * (1 - std::cos(kPi / T)) / 2);
      }
      return out;
    }
    const double ratio = (1 + std::cos(kPi * static_cast<double>(t) / T)) / (1 + std::cos(kPi * static_cast<double>(t - 1) / T));
    for (double lr : current) out.push_back(ratio * (lr - eta_min) + eta_min);
    return out;
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    const double T = static_cast<double>(h_.T_max);
    const double eta_min = h_.eta_min;
    std::vector<double> out;
    for (double base : base_lrs()) {
      out.push_back(eta_min + (base - eta_min) * (1 + std::cos(kPi * static_cast<double>(last_step()) / T)) / 2);
    }
    return out;
  }
};

// ------------------------------------------------------------------ linear

struct LinearHyper {
  double start_factor, end_factor;
  std::int64_t total_iters;
};
constexpr auto kLinear = sdk::hyperparams(
    sdk::option(&LinearHyper::start_factor, sdk::float_option("start_factor", 1.0 / 3, sdk::Bounds{0.0, 1.0, true, false},
                                                              "factor of the base lr at step 0")),
    sdk::option(&LinearHyper::end_factor,
                sdk::float_option("end_factor", 1.0, sdk::closed(0.0, 1.0), "factor of the base lr from step total_iters on")),
    sdk::option(&LinearHyper::total_iters, sdk::int_option("total_iters", 5, sdk::closed(1, sdk::count().hi),
                                                           "steps over which the factor moves from start to end")));

class LinearLr final : public Typed<LinearHyper, kLinear> {
 protected:
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const double start = h_.start_factor, end = h_.end_factor;
    const std::int64_t total = h_.total_iters, t = last_step();
    if (t == 0) return scaled(current, start);
    if (t > total) return current;
    return scaled(current, 1. + (end - start) / (static_cast<double>(total) * start + static_cast<double>(t - 1) * (end - start)));
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    const double start = h_.start_factor, end = h_.end_factor;
    const std::int64_t total = h_.total_iters;
    const double reached = static_cast<double>(std::min(total, last_step()));
    std::vector<double> out;
    for (double base : base_lrs()) out.push_back(base * (start + (end - start) * reached / static_cast<double>(total)));
    return out;
  }
};

// ------------------------------------------------------------------ onecycle

const char* const kAnnealChoices[] = {"cos", "linear", nullptr};

struct OneCycleHyper {
  double max_lr;
  std::int64_t total_steps;
  double pct_start;
  std::string anneal_strategy;
  bool cycle_momentum;
  double base_momentum, max_momentum, div_factor, final_div_factor;
  bool three_phase;
};
using O = OneCycleHyper;
constexpr auto kOneCycle = sdk::hyperparams(
    sdk::option(&O::max_lr, sdk::float_option("max_lr", 0.0, sdk::at_least(0.0),
                                              "the peak lr, reached at pct_start of the cycle (required)")),
    sdk::option(&O::total_steps, sdk::int_option("total_steps", 0, sdk::count(), "steps in the cycle (required)")),
    sdk::option(&O::pct_start,
                sdk::float_option("pct_start", 0.3, sdk::closed(0.0, 1.0), "fraction of the cycle spent raising the lr")),
    sdk::option(&O::anneal_strategy, sdk::string_option("anneal_strategy", "cos", kAnnealChoices,
                                                        "shape of each phase: cosine or linear")),
    sdk::option(&O::cycle_momentum,
                sdk::bool_option("cycle_momentum", true, "cycle the optimizer's momentum (or betas[0]) against the lr")),
    sdk::option(&O::base_momentum, sdk::float_option("base_momentum", 0.85, sdk::closed(0.0, 1.0), "momentum at the peak lr")),
    sdk::option(&O::max_momentum, sdk::float_option("max_momentum", 0.95, sdk::closed(0.0, 1.0), "momentum at the lowest lrs")),
    sdk::option(&O::div_factor,
                sdk::float_option("div_factor", 25.0, sdk::greater_than(0.0), "the initial lr is max_lr / div_factor")),
    sdk::option(&O::final_div_factor, sdk::float_option("final_div_factor", 1e4, sdk::greater_than(0.0),
                                                        "the final lr is the initial lr / final_div_factor")),
    sdk::option(&O::three_phase,
                sdk::bool_option("three_phase", false, "a third phase annihilates the lr after the symmetric rise and fall")));

class OneCycleLr final : public Typed<OneCycleHyper, kOneCycle> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "max_lr", where, "the peak lr");
    require_given(o, "total_steps", where, "a positive number of steps");
    // Each phase must span a non-zero number of steps, or its fraction divides by zero.
    const auto ends = phase_ends(o);
    double start = 0;
    for (double end : ends) {
      if (end - start == 0) {
        throw OptionError(where, "pct_start", "pct_start = " + o.at("pct_start").to_string() + " with total_steps = " +
                          o.at("total_steps").to_string() + " gives a phase of no length; change either");
      }
      start = end;
    }
  }

  void attach() override {
    Typed::attach();
    const double top = h_.max_lr, initial = top / h_.div_factor, least = initial / h_.final_div_factor;
    const double high = h_.max_momentum, low = h_.base_momentum;
    // Phase k anneals the lr from lr_[k][0] to lr_[k][1]; momentum the other way.
    if (h_.three_phase) {
      lr_ = {{{initial, top}, {top, initial}, {initial, least}}};
      momentum_ = {{{high, low}, {low, high}, {high, high}}};
    } else {
      lr_ = {{{initial, top}, {top, least}, {}}};
      momentum_ = {{{high, low}, {low, high}, {}}};
    }
    ends_ = phase_ends(options());
    set_base_lrs(std::vector<double>(optimizer().param_groups().size(), initial));
    if (h_.cycle_momentum) momentum_cycle_.bind(optimizer(), who());
  }

  std::vector<double> next_lr(const std::vector<double>& current) override {
    const std::int64_t t = last_step();
    const std::int64_t total = h_.total_steps;
    if (t > total) {
      throw optreg::UsageError(who() + ": step " + std::to_string(t) + " is past the " + std::to_string(total) +
                               " total steps of the cycle");
    }
    double start = 0;
    std::size_t k = 0;
    for (; k < ends_.size(); ++k) {
      if (static_cast<double>(t) <= ends_[k] || k + 1 == ends_.size()) break;
      start = ends_[k];
    }
    // Step total_steps lies one past the cycle's last step: it holds the final values (PyTorch
    // extrapolates the last phase there, to a negative lr with linear annealing).
    const double pct = std::min((static_cast<double>(t) - start) / (ends_[k] - start), 1.0);
    const double lr = anneal(lr_[k], pct);
    if (h_.cycle_momentum) momentum_cycle_.set(optimizer(), anneal(momentum_[k], pct));
    return std::vector<double>(current.size(), lr);
  }

 private:
  static std::vector<double> phase_ends(const Options& o) {
    const double pct = o.at("pct_start").as_float();
    const double total = static_cast<double>(o.at("total_steps").as_int());
    if (o.at("three_phase").as_bool()) return {pct * total - 1, 2 * pct * total - 2, total - 1};
    return {pct * total - 1, total - 1};
  }
  double anneal(const std::array<double, 2>& from_to, double pct) const {
    const auto [from, to] = from_to;
    if (h_.anneal_strategy == "cos") return to + (from - to) / 2.0 * (std::cos(kPi * pct) + 1);
    return (to - from) * pct + from;
  }

  std::array<std::array<double, 2>, 3> lr_{}, momentum_{};  // per phase: from, to
  MomentumCycle momentum_cycle_;
  std::vector<double> ends_;
};

// ------------------------------------------------------------------ warm_restarts

struct WarmRestartsHyper {
  std::int64_t T_0, T_mult;
  double eta_min;
};
constexpr auto kWarmRestarts = sdk::hyperparams(
    sdk::option(&WarmRestartsHyper::T_0, sdk::int_option("T_0", 0, sdk::count(), "steps of the first period (required)")),
    sdk::option(&WarmRestartsHyper::T_mult, sdk::int_option("T_mult", 1, sdk::closed(1, sdk::count().hi),
                                                            "factor by which each period is longer than the last")),
    sdk::option(&WarmRestartsHyper::eta_min, sdk::float_option("eta_min", 0.0, sdk::at_least(0.0), "the lowest lr")));

class WarmRestartsLr final : public Typed<WarmRestartsHyper, kWarmRestarts> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "T_0", where, "a positive number of steps");
  }
  std::vector<double> next_lr(const std::vector<double>& /*current*/) override { return at(last_step()); }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override { return at(last_step()); }

 private:
  /// The lrs at step t: the cosine of the period that holds t, from each base lr.
  std::vector<double> at(std::int64_t t) const {
    std::int64_t t_cur = t, t_i = h_.T_0;
    if (h_.T_mult == 1) {
      t_cur = t % t_i;
    } else {
      while (t_cur >= t_i) {  // periods grow geometrically: at most 53 turns
        t_cur -= t_i;
        t_i *= h_.T_mult;
      }
    }
    const double c = std::cos(kPi * static_cast<double>(t_cur) / static_cast<double>(t_i));
    std::vector<double> out;
    for (double base : base_lrs()) out.push_back(h_.eta_min + (base - h_.eta_min) * (1 + c) / 2);
    return out;
  }
};

// ------------------------------------------------------------------ polynomial

struct PolynomialHyper {
  std::int64_t total_iters;
  double power;
};
constexpr auto kPolynomial = sdk::hyperparams(
    sdk::option(&PolynomialHyper::total_iters, sdk::int_option("total_iters", 5, sdk::closed(1, sdk::count().hi),
                                                               "steps over which the lr decays to zero")),
    sdk::option(&PolynomialHyper::power, sdk::float_option("power", 1.0, sdk::at_least(0.0), "power of the decay")));

class PolynomialLr final : public Typed<PolynomialHyper, kPolynomial> {
 protected:
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const std::int64_t t = last_step();
    if (t == 0 || t > h_.total_iters) return current;
    const double total = static_cast<double>(h_.total_iters);
    const double decay = std::pow((1.0 - static_cast<double>(t) / total) / (1.0 - static_cast<double>(t - 1) / total), h_.power);
    return scaled(current, decay);
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    const double total = static_cast<double>(h_.total_iters);
    const double reached = static_cast<double>(std::min(h_.total_iters, last_step()));
    std::vector<double> out;
    for (double base : base_lrs()) out.push_back(base * std::pow(1.0 - reached / total, h_.power));
    return out;
  }
};

// ------------------------------------------------------------------ constant

struct ConstantHyper {
  double factor;
  std::int64_t total_iters;
};
constexpr auto kConstant = sdk::hyperparams(
    sdk::option(&ConstantHyper::factor, sdk::float_option("factor", 1.0 / 3, sdk::Bounds{0.0, 1.0, true, false},
                                                          "factor of the base lr until total_iters")),
    sdk::option(&ConstantHyper::total_iters, sdk::int_option("total_iters", 5, sdk::closed(1, sdk::count().hi),
                                                             "steps during which the lr is scaled by factor")));

class ConstantLr final : public Typed<ConstantHyper, kConstant> {
 protected:
  std::vector<double> next_lr(const std::vector<double>& current) override {
    const std::int64_t t = last_step();
    if (t == 0) return scaled(current, h_.factor);
    if (t != h_.total_iters) return current;
    return scaled(current, 1.0 / h_.factor);
  }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override {
    const double f = h_.factor + (last_step() >= h_.total_iters ? 1.0 - h_.factor : 0.0);
    return scaled(base_lrs(), f);
  }
};

// ------------------------------------------------------------------ cyclic

const char* const kCyclicModes[] = {"triangular", "triangular2", "exp_range", nullptr};

struct CyclicHyper {
  double base_lr, max_lr;
  std::int64_t step_size_up, step_size_down;
  std::string mode;
  double gamma;
  bool cycle_momentum;
  double base_momentum, max_momentum;
};
using Cy = CyclicHyper;
constexpr auto kCyclic = sdk::hyperparams(
    sdk::option(&Cy::base_lr, sdk::float_option("base_lr", 1e-3, sdk::at_least(0.0), "the lowest lr, at each cycle's ends")),
    sdk::option(&Cy::max_lr, sdk::float_option("max_lr", 0.0, sdk::at_least(0.0), "the highest lr, at each cycle's peak (required)")),
    sdk::option(&Cy::step_size_up, sdk::int_option("step_size_up", 2000, sdk::closed(1, sdk::count().hi),
                                                   "steps from base_lr up to max_lr")),
    sdk::option(&Cy::step_size_down, sdk::int_option("step_size_down", 0, sdk::count(),
                                                     "steps from max_lr down to base_lr (0: step_size_up)")),
    sdk::option(&Cy::mode, sdk::string_option("mode", "triangular", kCyclicModes,
                                              "triangular: every cycle alike; triangular2: each cycle's height halved; "
                                              "exp_range: the height scaled by gamma^step")),
    sdk::option(&Cy::gamma, sdk::float_option("gamma", 1.0, sdk::at_least(0.0), "factor of exp_range")),
    sdk::option(&Cy::cycle_momentum,
                sdk::bool_option("cycle_momentum", true, "cycle the optimizer's momentum (or betas[0]) against the lr")),
    sdk::option(&Cy::base_momentum, sdk::float_option("base_momentum", 0.8, sdk::closed(0.0, 1.0), "momentum at the peak lr")),
    sdk::option(&Cy::max_momentum, sdk::float_option("max_momentum", 0.9, sdk::closed(0.0, 1.0), "momentum at base_lr")));

class CyclicLr final : public Typed<CyclicHyper, kCyclic> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    require_given(o, "max_lr", where, "the highest lr");
  }

  void attach() override {
    Typed::attach();
    const double up = static_cast<double>(h_.step_size_up);
    const double down = h_.step_size_down == 0 ? up : static_cast<double>(h_.step_size_down);
    total_ = up + down;
    ratio_ = up / total_;
    set_base_lrs(std::vector<double>(optimizer().param_groups().size(), h_.base_lr));
    if (h_.cycle_momentum) momentum_cycle_.bind(optimizer(), who());
  }

  std::vector<double> next_lr(const std::vector<double>& /*current*/) override { return at(last_step()); }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override { return at(last_step()); }

 private:
  /// The lrs at step t (and the momentum, set on the optimizer), as PyTorch's CyclicLR computes them.
  std::vector<double> at(std::int64_t t) {
    const double step = static_cast<double>(t);
    const double cycle = std::floor(1 + step / total_);
    const double x = 1. + step / total_ - cycle;
    const double scale = x <= ratio_ ? x / ratio_ : (x - 1) / (ratio_ - 1);
    double fn = 1.0;
    if (h_.mode == "triangular2") {
      fn = 1 / std::pow(2., cycle - 1);
    } else if (h_.mode == "exp_range") {
      fn = std::pow(h_.gamma, step);
    }
    const double lr = h_.base_lr + (h_.max_lr - h_.base_lr) * scale * fn;
    if (h_.cycle_momentum) {
      momentum_cycle_.set(optimizer(), h_.max_momentum - (h_.max_momentum - h_.base_momentum) * scale * fn);
    }
    return std::vector<double>(base_lrs().size(), lr);
  }

  double total_ = 0, ratio_ = 0;
  MomentumCycle momentum_cycle_;
};

// ------------------------------------------------------------------ piecewise

const char* const kInterpolations[] = {"linear", "cosine", nullptr};
constexpr double kNoPoints[1] = {0};

struct PiecewiseHyper {
  std::vector<double> steps, factors;
  std::string interpolation;
};
/// A list option of any length (`def` one zero) whose elements lie in `bounds`.
constexpr optreg::abi::HyperparamSpec any_length_list(const char* name, sdk::Bounds bounds, const char* meaning) {
  auto s = sdk::float_list_option(name, kNoPoints, bounds, meaning);
  s.list_size = 0;
  s.default_list_size = 0;
  return s;
}
constexpr auto kPiecewise = sdk::hyperparams(
    sdk::option(&PiecewiseHyper::steps,
                any_length_list("steps", sdk::count(), "steps of the points, increasing whole numbers (required)")),
    sdk::option(&PiecewiseHyper::factors,
                any_length_list("factors", sdk::at_least(0.0), "factor of the base lr at each point (required)")),
    sdk::option(&PiecewiseHyper::interpolation,
                sdk::string_option("interpolation", "linear", kInterpolations, "how the factor moves between two points")));

class PiecewiseLr final : public Typed<PiecewiseHyper, kPiecewise> {
 protected:
  void validate(const Options& o, const std::string& where) const override {
    const std::vector<double>& steps = o.at("steps").as_float_list();
    const std::vector<double>& factors = o.at("factors").as_float_list();
    if (steps.empty()) throw OptionError(where, "steps", "option 'steps' is required: the steps of at least one point");
    if (factors.size() != steps.size()) {
      throw OptionError(where, "factors", "option 'factors' has " + std::to_string(factors.size()) + " values for " +
                        std::to_string(steps.size()) + " steps; give one factor per step");
    }
    for (std::size_t i = 0; i < steps.size(); ++i) {
      if (steps[i] != std::floor(steps[i])) {
        throw OptionError(where, "steps", "option 'steps' must hold whole numbers of steps; " + Value(steps[i]).to_string() +
                          " is not one");
      }
      if (i > 0 && steps[i] <= steps[i - 1]) {
        throw OptionError(where, "steps", "option 'steps' must increase: " + Value(steps[i]).to_string() + " follows " +
                          Value(steps[i - 1]).to_string());
      }
    }
  }
  std::vector<double> next_lr(const std::vector<double>& /*current*/) override { return scaled(base_lrs(), factor()); }
  std::vector<double> restart_lr(const std::vector<double>& /*current*/) override { return scaled(base_lrs(), factor()); }

 private:
  /// The factor at the current step: the first point's before it, the last one's after it, and
  /// between two points their interpolation.
  double factor() const {
    const auto t = static_cast<double>(last_step());
    const std::vector<double>& s = h_.steps;
    const std::vector<double>& f = h_.factors;
    if (t <= s.front()) return f.front();
    if (t >= s.back()) return f.back();
    const std::size_t k = static_cast<std::size_t>(std::upper_bound(s.begin(), s.end(), t) - s.begin()) - 1;
    const double pct = (t - s[k]) / (s[k + 1] - s[k]);
    if (h_.interpolation == "cosine") return f[k + 1] + (f[k] - f[k + 1]) * (1 + std::cos(kPi * pct)) / 2;
    return f[k] + (f[k + 1] - f[k]) * pct;
  }
};

// ------------------------------------------------------------------ plateau

const char* const kModeChoices[] = {"min", "max", nullptr};
constexpr char kNumBadSteps[] = "num_bad_steps";
/// Any number but NaN: the best metric starts at +inf (min) or -inf (max).
constexpr optreg::Range kBestDomain{-sdk::kInf, sdk::kInf, false, false};
const char* const kThresholdModeChoices[] = {"rel", "abs", nullptr};

struct PlateauHyper {
  std::string mode;
  double factor;
  std::int64_t patience;
  double threshold;
  std::string threshold_mode;
  std::int64_t cooldown;
  double min_lr, eps;
};
using Pl = PlateauHyper;
constexpr auto kPlateau = sdk::hyperparams(
    sdk::option(&Pl::mode, sdk::string_option("mode", "min", kModeChoices, "whether the metric should fall (min) or rise (max)")),
    sdk::option(&Pl::factor, sdk::float_option("factor", 0.1, sdk::closed_open(0.0, 1.0),
                                               "factor applied to the lr when the metric stalls")),
    sdk::option(&Pl::patience,
                sdk::int_option("patience", 10, sdk::count(), "steps without improvement tolerated before a reduction")),
    sdk::option(&Pl::threshold,
                sdk::float_option("threshold", 1e-4, sdk::at_least(0.0), "least change that counts as an improvement")),
    sdk::option(&Pl::threshold_mode, sdk::string_option("threshold_mode", "rel", kThresholdModeChoices,
                                                        "threshold relative to the best value, or absolute")),
    sdk::option(&Pl::cooldown,
                sdk::int_option("cooldown", 0, sdk::count(), "steps after a reduction during which stalls are not counted")),
    sdk::option(&Pl::min_lr, sdk::float_option("min_lr", 0.0, sdk::at_least(0.0), "the lowest lr a reduction goes to")),
    sdk::option(&Pl::eps, sdk::float_option("eps", 1e-8, sdk::at_least(0.0), "reductions smaller than this are skipped")));

class PlateauLr final : public Typed<PlateauHyper, kPlateau> {
 protected:
  void attach() override {
    Typed::attach();
    minimize_ = h_.mode == "min";
    relative_ = h_.threshold_mode == "rel";
    best_ = minimize_ ? HUGE_VAL : -HUGE_VAL;
  }

  std::vector<double> next_lr_on_metric(const std::vector<double>& current, double metric) override {
    if (better(metric)) {
      best_ = metric;
      bad_ = 0;
    } else {
      bad_ = optreg::next_count(bad_, who(), kNumBadSteps);
    }
    if (cooldown_ > 0) {
      --cooldown_;
      bad_ = 0;  // stalls during the cooldown do not count
    }
    std::vector<double> out = current;
    if (bad_ > h_.patience) {
      for (double& lr : out) {
        const double reduced = std::max(lr * h_.factor, h_.min_lr);
        if (lr - reduced > h_.eps) lr = reduced;
      }
      cooldown_ = h_.cooldown;
      bad_ = 0;
    }
    return out;
  }

  Options own_state() const override {
    return {{"best", Value(best_)}, {kNumBadSteps, Value(bad_)}, {"cooldown_counter", Value(cooldown_)}};
  }
  void check_own_state(const Options& state) const override {
    optreg::Scheduler::check_own_state(state);
    // The domains of the entries: two counts, and a best value that starts at +-inf.
    check_domain(state, "best", kBestDomain);
    check_domain(state, kNumBadSteps, optreg::kCountDomain);
    check_domain(state, "cooldown_counter", optreg::kCountDomain);
  }
  void load_own_state(const Options& state) override {
    best_ = state.at("best").as_float();
    bad_ = state.at(kNumBadSteps).as_int();
    cooldown_ = state.at("cooldown_counter").as_int();
  }

 private:
  bool better(double a) const {
    const double threshold = h_.threshold;
    if (minimize_) return relative_ ? a < best_ * (1. - threshold) : a < best_ - threshold;
    return relative_ ? a > best_ * (threshold + 1.) : a > best_ + threshold;
  }

  bool minimize_ = true, relative_ = true;
  double best_ = HUGE_VAL;
  std::int64_t bad_ = 0;
  std::int64_t cooldown_ = 0;
};

constexpr optreg::abi::SchedulerEntry kSchedulers[] = {
    OPTREG_SCHEDULER_ENTRY(StepLr, "step", "Multiplies the lr by gamma every step_size steps (StepLR)", kStep.schema,
                           sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(MultiStepLr, "multistep", "Multiplies the lr by gamma at each milestone (MultiStepLR)",
                           kMultiStep.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(ExponentialLr, "exponential", "Multiplies the lr by gamma every step (ExponentialLR)",
                           kExponential.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(CosineLr, "cosine", "Cosine annealing from the base lr to eta_min over T_max steps (CosineAnnealingLR)",
                           kCosine.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(LinearLr, "linear", "Linear change of the lr's factor over total_iters steps, for warm-up (LinearLR)",
                           kLinear.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(OneCycleLr, "onecycle", "One cycle of rising then falling lr, with momentum against it (OneCycleLR)",
                           kOneCycle.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(WarmRestartsLr, "warm_restarts",
                           "Cosine annealing restarted every period, periods growing by T_mult (CosineAnnealingWarmRestarts)",
                           kWarmRestarts.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(PolynomialLr, "polynomial", "Polynomial decay of the lr to zero over total_iters steps (PolynomialLR)",
                           kPolynomial.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(ConstantLr, "constant", "The lr scaled by factor until total_iters, then restored (ConstantLR)",
                           kConstant.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(CyclicLr, "cyclic",
                           "The lr cycled between base_lr and max_lr, momentum against it (CyclicLR: triangular, triangular2, "
                           "exp_range)",
                           kCyclic.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(PiecewiseLr, "piecewise",
                           "The base lr times a factor given at points (steps, factors), linear or cosine between them",
                           kPiecewise.schema, sdk::SchedulerKind::StepDriven),
    OPTREG_SCHEDULER_ENTRY(PlateauLr, "plateau", "Reduces the lr when a monitored metric stops improving (ReduceLROnPlateau)",
                           kPlateau.schema, sdk::SchedulerKind::MetricDriven),
};

}  // namespace

OPTREG_REGISTER_SCHEDULERS("optreg_schedulers", "1.0.0", kSchedulers)
