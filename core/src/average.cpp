// Weight averaging (EMA, SWA): the updates, the checkpoint section and the scoped swap.
#include <optreg/average.hpp>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include <optreg/parallel.hpp>
#include <optreg/text.hpp>

#include "section.hpp"

namespace optreg {

namespace {

constexpr char kWho[] = "weight average";

/// Elements per range of an averaging kernel: small tensors run on the calling thread.
constexpr std::size_t kGrain = std::size_t{1} << 15;

/// An element in the averaging type A (exact: A is at least as wide as T).
template <typename A, typename T>
inline A widen(T x) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else {
    return static_cast<A>(to_float(x));
  }
}

/// Update n + 1 of `avg` from the weights `w` (see the contract in average.hpp).
template <typename T, typename A>
void update_kernel(const Tensor& w, Tensor& avg, const AverageSettings& s, std::int64_t n) {
  const T* x = w.data_as<T>();
  A* a = avg.data_as<A>();
  const std::size_t count = w.numel();
  if (n == 0) {
    parallel_for(count, kGrain, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) a[i] = widen<A>(x[i]);
    });
    return;
  }
  if (s.kind == AverageSettings::Kind::Swa) {
    const A count_next = static_cast<A>(n + 1);
    parallel_for(count, kGrain, [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) a[i] = a[i] + (widen<A>(x[i]) - a[i]) / count_next;
    });
    return;
  }
  double d = s.decay;
  if (s.warmup) d = std::min(d, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n)));
  const A keep = static_cast<A>(d);
  const A take = static_cast<A>(1.0 - d);
  parallel_for(count, kGrain, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) a[i] = keep * a[i] + take * widen<A>(x[i]);
  });
}

void update_tensor(const Tensor& w, Tensor& avg, const AverageSettings& s, std::int64_t n) {
  switch (w.dtype()) {
    case DType::Float32:
      return update_kernel<float, float>(w, avg, s, n);
    case DType::Float64:
      return update_kernel<double, double>(w, avg, s, n);
    case DType::BFloat16:
      return update_kernel<bfloat16, float>(w, avg, s, n);
    case DType::Float16:
      return update_kernel<float16, float>(w, avg, s, n);
    default:
      throw UsageError(std::string(kWho) + ": a parameter of dtype " + dtype_name(w.dtype()) + " cannot be averaged");
  }
}

std::string settings_text(const AverageSettings& s) {
  std::string out = std::string(to_string(s.kind));
  if (s.kind == AverageSettings::Kind::Ema) {
    out += " with decay " + Value(s.decay).to_string() + (s.warmup ? " and warm-up" : "");
  }
  return out + ", every " + std::to_string(s.every) + " steps from step " + std::to_string(s.start);
}

/// The settings a section records; StateDictError naming what is missing or malformed.
AverageSettings section_settings(const CheckpointSection& section) {
  using detail::section_scalar;
  AverageSettings s;
  try {
    s.kind = average_kind(section_scalar(section, "kind", ValueType::String).as_string());
  } catch (const OptionError& e) {
    throw StateDictError(e.what());
  }
  s.decay = section_scalar(section, "decay", ValueType::Float).as_float();
  s.warmup = section_scalar(section, "warmup", ValueType::Bool).as_bool();
  s.every = section_scalar(section, "every", ValueType::Int).as_int();
  s.start = section_scalar(section, "start", ValueType::Int).as_int();
  return s;
}

}  // namespace

const char* to_string(AverageSettings::Kind kind) noexcept {
  return kind == AverageSettings::Kind::Swa ? "swa" : "ema";
}

AverageSettings::Kind average_kind(const std::string& name) {
  if (name == "ema") return AverageSettings::Kind::Ema;
  if (name == "swa") return AverageSettings::Kind::Swa;
  detail::refuse_setting(kWho, "kind", Value(name), "is not one of: ema, swa");
}

void check_average_settings(const AverageSettings& s) {
  const auto bad = [](const char* option, const Value& v, const char* why) {
    detail::refuse_setting(kWho, option, v, why);
  };
  if (!(s.decay >= 0.0 && s.decay < 1.0)) bad("decay", Value(s.decay), "must lie in [0, 1)");
  if (s.every < 1 || s.every > kMaxCount) bad("every", Value(s.every), "must lie in [1, 2^53]");
  if (s.start < 0 || s.start > kMaxCount) bad("start", Value(s.start), "must lie in [0, 2^53]");
}

WeightAverage::WeightAverage(Optimizer& optimizer, const AverageSettings& settings)
    : settings_(settings), params_(optimizer.parameters()) {
  check_average_settings(settings_);
  for (const Parameter& p : params_) {
    const DType dtype = p.value().dtype();
    if (is_quantized(dtype))
      throw UsageError(kWho, p.name(), -1, std::string("a ") + dtype_name(dtype) + " parameter cannot be averaged");
    averages_.emplace_back(p.value().shape(), state_dtype_of(dtype));
  }
  pre_ = optimizer.add_hook(HookPoint::PreStep, [this](Optimizer& o) {
    std::size_t now = 0;  // counted without copying the parameters: this runs at every step
    for (const ParamGroup& g : o.param_groups()) now += g.params().size();
    if (now != params_.size()) {
      throw UsageError(std::string(kWho) + ": optimizer '" + o.name() + "' has " + std::to_string(now) +
                       " parameters, but it averages the " + std::to_string(params_.size()) +
                       " it had when it was made; make a new average after "
                       "adding param groups");
    }
  });
  post_ = optimizer.add_hook(HookPoint::PostStep, [this](Optimizer&) { on_step(); });
}

WeightAverage::~WeightAverage() = default;

void WeightAverage::on_step() {
  steps_ = next_count(steps_, kWho, "steps");
  if (steps_ < settings_.start || (steps_ - settings_.start) % settings_.every != 0) return;
  update();
}

void WeightAverage::update() {
  const std::int64_t n = updates_;
  const std::int64_t next = next_count(updates_, kWho, "updates");
  for (std::size_t i = 0; i < params_.size(); ++i) update_tensor(params_[i].value(), averages_[i], settings_, n);
  updates_ = next;
}

CheckpointSection WeightAverage::save_section() const {
  CheckpointSection s;
  s.name = section_name();
  s.scalars["kind"] = Value(std::string(to_string(settings_.kind)));
  s.scalars["decay"] = Value(settings_.decay);
  s.scalars["warmup"] = Value(settings_.warmup);
  s.scalars["every"] = Value(settings_.every);
  s.scalars["start"] = Value(settings_.start);
  s.scalars["steps"] = Value(steps_);
  s.scalars["updates"] = Value(updates_);
  for (std::size_t i = 0; i < params_.size(); ++i) s.tensors.push_back(NamedTensor{params_[i].name(), averages_[i]});
  return s;
}

void WeightAverage::check_section(const CheckpointSection& section) const {
  const AverageSettings saved = section_settings(section);
  if (saved.kind != settings_.kind || saved.decay != settings_.decay || saved.warmup != settings_.warmup ||
      saved.every != settings_.every || saved.start != settings_.start) {
    throw StateDictError("it holds an average " + settings_text(saved) + ", but this one is an average " +
                         settings_text(settings_));
  }
  const auto count = [&](const char* key) {
    const std::int64_t v = detail::section_scalar(section, key, ValueType::Int).as_int();
    if (v < 0 || v > kMaxCount) {
      throw StateDictError(std::string("'") + key + "' = " + std::to_string(v) + " lies outside [0, 2^53]");
    }
    return v;
  };
  const std::int64_t steps = count("steps");
  const std::int64_t updates = count("updates");
  if (updates > steps) {
    throw StateDictError("'updates' = " + std::to_string(updates) +
                         " is more than its 'steps' = " + std::to_string(steps));
  }
  if (section.tensors.size() != params_.size()) {
    throw StateDictError("it averages " + std::to_string(section.tensors.size()) + " parameters, but this one " +
                         std::to_string(params_.size()));
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const NamedTensor& t = section.tensors[i];
    const Tensor& mine = averages_[i];
    if (t.name != params_[i].name() || t.value.shape() != mine.shape() || t.value.dtype() != mine.dtype()) {
      throw StateDictError(StateDictPlace{-1, static_cast<std::int64_t>(i), {}},
                           "average " + std::to_string(i) + " is " + quoted_name(t.name) + ", " +
                               dtype_name(t.value.dtype()) + " of shape " + to_string(t.value.shape()) +
                               ", but parameter id " + std::to_string(i) + " is '" + params_[i].name() +
                               "', averaged in " + dtype_name(mine.dtype()) + " of shape " + to_string(mine.shape()));
    }
  }
}

void WeightAverage::load_section(const CheckpointSection& section) {
  steps_ = section.scalars.at("steps").as_int();
  updates_ = section.scalars.at("updates").as_int();
  for (std::size_t i = 0; i < averages_.size(); ++i) averages_[i].copy_from(section.tensors[i].value);
}

AveragedWeights::AveragedWeights(const WeightAverage& average) {
  if (average.updates() == 0) return;
  const std::vector<Parameter>& params = average.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {  // before anything changes
    if (params[i].value().shape() != average.averages()[i].shape() || is_quantized(params[i].value().dtype())) {
      throw UsageError(kWho, params[i].name(), static_cast<std::int64_t>(i),
                       "its value is " + std::string(dtype_name(params[i].value().dtype())) + " of shape " +
                           to_string(params[i].value().shape()) + ", but its average has shape " +
                           to_string(average.averages()[i].shape()));
    }
  }
  std::vector<Tensor> saved;
  saved.reserve(params.size());
  for (const Parameter& p : params) saved.push_back(p.value().clone());  // may throw: nothing changed yet
  std::vector<Tensor> rounded;
  rounded.reserve(params.size());
  for (std::size_t i = 0; i < params.size(); ++i)
    rounded.push_back(average.averages()[i].to(params[i].value().dtype()));
  params_ = params;
  for (std::size_t i = 0; i < params_.size(); ++i) params_[i].value().copy_from(rounded[i]);
  saved_ = std::move(saved);
}

AveragedWeights::~AveragedWeights() { restore(); }

void AveragedWeights::restore() noexcept {
  for (std::size_t i = 0; i < saved_.size(); ++i) {
    try {
      params_[i].value().copy_from(saved_[i]);
    } catch (...) {  // a value replaced by one of another shape while the scope lived: its own now
    }
  }
  saved_.clear();
  params_.clear();
}

}  // namespace optreg
