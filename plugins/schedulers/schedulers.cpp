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
    if (h_.cycle_momentum) {
      const auto* betas = optimizer().schema().find("betas");
      const auto* momentum = optimizer().schema().find("momentum");
      // Like PyTorch, betas[0] when the optimizer has betas, else momentum.
      if (betas != nullptr && betas->type == optreg::ValueType::FloatList) {
        use_betas_ = true;
      } else if (momentum == nullptr || momentum->type != optreg::ValueType::Float) {
        throw OptionError(who(), "cycle_momentum", "option 'cycle_momentum' = true needs an optimizer with a float option 'momentum' or "
                          "a list 'betas', and optimizer '" + optimizer().name() + "' has neither (set cycle_momentum: false)");
      }
    }
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
    if (h_.cycle_momentum) {
      const double m = anneal(momentum_[k], pct);
      optreg::Optimizer& opt = optimizer();
      for (std::size_t g = 0; g < current.size(); ++g) {
        if (use_betas_) {
          std::vector<double> betas = opt.param_groups()[g].option("betas").as_float_list();
          betas.at(0) = m;
          opt.set_option(g, "betas", Value(std::move(betas)));
        } else {
          opt.set_option(g, "momentum", Value(m));
        }
      }
    }
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
  bool use_betas_ = false;
  std::vector<double> ends_;
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
    OPTREG_SCHEDULER_ENTRY(PlateauLr, "plateau", "Reduces the lr when a monitored metric stops improving (ReduceLROnPlateau)",
                           kPlateau.schema, sdk::SchedulerKind::MetricDriven),
};

}  // namespace

OPTREG_REGISTER_SCHEDULERS("optreg_schedulers", "1.0.0", kSchedulers)
