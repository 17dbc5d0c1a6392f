// Gradient accumulation: sums of micro-batch gradients, their reduction and checkpoint section.
#include <optreg/accumulate.hpp>

#include <type_traits>
#include <utility>

#include <optreg/parallel.hpp>
#include <optreg/text.hpp>

#include "section.hpp"

namespace optreg {

namespace {

constexpr char kWho[] = "gradient accumulation";
constexpr std::size_t kGrain = std::size_t{1} << 15;

/// sum (+)= g, in the sum's type A.
template <typename T, typename A>
void add_kernel(const Tensor& g, Tensor& sum, bool first) {
  const T* x = g.data_as<T>();
  A* a = sum.data_as<A>();
  parallel_for(g.numel(), kGrain, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) {
      A v;
      if constexpr (std::is_same_v<T, double>) {
        v = x[i];
      } else {
        v = static_cast<A>(to_float(x[i]));
      }
      a[i] = first ? v : a[i] + v;
    }
  });
}

void add_into(const Tensor& g, Tensor& sum, bool first) {
  switch (g.dtype()) {
    case DType::Float32:
      return add_kernel<float, float>(g, sum, first);
    case DType::Float64:
      return add_kernel<double, double>(g, sum, first);
    case DType::BFloat16:
      return add_kernel<bfloat16, float>(g, sum, first);
    case DType::Float16:
      return add_kernel<float16, float>(g, sum, first);
    default:
      throw UsageError(std::string(kWho) + ": a gradient of dtype " + dtype_name(g.dtype()) + " cannot be summed");
  }
}

template <typename A>
void divide_kernel(Tensor& sum, std::int64_t k) {
  A* a = sum.data_as<A>();
  const A d = static_cast<A>(k);
  parallel_for(sum.numel(), kGrain, [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) a[i] = a[i] / d;
  });
}

}  // namespace

const char* to_string(AccumulateSettings::Reduce reduce) noexcept {
  return reduce == AccumulateSettings::Reduce::Sum ? "sum" : "mean";
}

AccumulateSettings::Reduce accumulate_reduce(const std::string& name) {
  if (name == "mean") return AccumulateSettings::Reduce::Mean;
  if (name == "sum") return AccumulateSettings::Reduce::Sum;
  detail::refuse_setting(kWho, "reduce", Value(name), "is not one of: mean, sum");
}

void check_accumulate_settings(const AccumulateSettings& s) {
  if (s.steps < 1 || s.steps > kMaxAccumulateSteps) {
    detail::refuse_setting(kWho, "steps", Value(s.steps), "must lie in [1, 2^20]");
  }
}

GradientAccumulator::GradientAccumulator(std::vector<Parameter> params, const AccumulateSettings& settings)
    : params_(std::move(params)), settings_(settings), present_(params_.size(), false) {
  check_accumulate_settings(settings_);
  for (const Parameter& p : params_) {
    const DType dtype = p.value().dtype();
    if (is_quantized(dtype))
      throw UsageError(kWho, p.name(), -1,
                       std::string("a ") + dtype_name(dtype) + " parameter has no gradients to sum");
    sums_.emplace_back(p.value().shape(), state_dtype_of(dtype));
  }
}

GradientAccumulator::~GradientAccumulator() = default;

bool GradientAccumulator::accumulate() {
  for (std::size_t i = 0; i < params_.size(); ++i) {  // everything is checked before anything changes
    const Parameter& p = params_[i];
    if (!p.has_grad()) continue;
    const Tensor& g = p.grad();
    if (g.shape() != sums_[i].shape() || g.dtype() != p.value().dtype() || is_quantized(g.dtype()) ||
        state_dtype_of(g.dtype()) != sums_[i].dtype()) {
      throw UsageError(kWho, p.name(), static_cast<std::int64_t>(i),
                       "its gradient is " + std::string(dtype_name(g.dtype())) + " of shape " + to_string(g.shape()) +
                           " and its value " + dtype_name(p.value().dtype()) +
                           ", but it sums gradients of its value's dtype and of shape " + to_string(sums_[i].shape()) +
                           " into " + dtype_name(sums_[i].dtype()));
    }
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    if (!p.has_grad()) continue;
    add_into(p.grad(), sums_[i], !present_[i]);
    present_[i] = true;
    p.clear_grad();
  }
  if (++pending_ < settings_.steps) return false;
  pending_ = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!present_[i]) continue;
    present_[i] = false;
    Tensor& sum = sums_[i];
    if (settings_.reduce == AccumulateSettings::Reduce::Mean && settings_.steps > 1) {
      if (sum.dtype() == DType::Float64) {
        divide_kernel<double>(sum, settings_.steps);
      } else {
        divide_kernel<float>(sum, settings_.steps);
      }
    }
    const DType dtype = params_[i].value().dtype();
    params_[i].accumulate_grad(dtype == sum.dtype() ? sum : sum.to(dtype));  // no gradient: cleared above
  }
  return true;
}

CheckpointSection GradientAccumulator::save_section() const {
  CheckpointSection s;
  s.name = section_name();
  s.scalars["steps"] = Value(settings_.steps);
  s.scalars["reduce"] = Value(std::string(to_string(settings_.reduce)));
  s.scalars["pending"] = Value(pending_);
  std::vector<double> present;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    present.push_back(present_[i] ? 1.0 : 0.0);
    if (present_[i]) s.tensors.push_back(NamedTensor{params_[i].name(), sums_[i]});
  }
  s.scalars["present"] = Value(std::move(present));
  return s;
}

void GradientAccumulator::check_section(const CheckpointSection& section) const {
  const auto get = [&](const char* key, ValueType type) -> const Value& {
    return detail::section_scalar(section, key, type);
  };
  const std::int64_t steps = get("steps", ValueType::Int).as_int();
  const std::string reduce = get("reduce", ValueType::String).as_string();
  if (steps != settings_.steps || reduce != to_string(settings_.reduce)) {
    throw StateDictError("it accumulates " + std::to_string(steps) + " micro-batches by " + quoted_name(reduce) +
                         ", but this one " + std::to_string(settings_.steps) + " by '" + to_string(settings_.reduce) +
                         "'");
  }
  const std::int64_t pending = get("pending", ValueType::Int).as_int();
  if (pending < 0 || pending >= steps) {
    throw StateDictError("'pending' = " + std::to_string(pending) + " lies outside [0, " + std::to_string(steps - 1) +
                         "]");
  }
  const std::vector<double>& present = get("present", ValueType::FloatList).as_float_list();
  if (present.size() != params_.size()) {
    throw StateDictError("it accumulates " + std::to_string(present.size()) + " parameters, but this one " +
                         std::to_string(params_.size()));
  }
  std::size_t t = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (present[i] != 0.0 && present[i] != 1.0) {
      throw StateDictError(StateDictPlace{-1, static_cast<std::int64_t>(i), "present"},
                           "'present' of parameter id " + std::to_string(i) + " is " + Value(present[i]).to_string() +
                               ", neither 0 nor 1");
    }
    if (present[i] == 0.0) continue;
    if (pending == 0) throw StateDictError("it holds a gradient sum with no micro-batch taken ('pending' = 0)");
    if (t == section.tensors.size()) {
      throw StateDictError(
          StateDictPlace{-1, static_cast<std::int64_t>(i), {}},
          "it holds no gradient sum for parameter id " + std::to_string(i) + " ('" + params_[i].name() + "')");
    }
    const NamedTensor& saved = section.tensors[t++];
    const Tensor& mine = sums_[i];
    if (saved.name != params_[i].name() || saved.value.shape() != mine.shape() || saved.value.dtype() != mine.dtype()) {
      throw StateDictError(StateDictPlace{-1, static_cast<std::int64_t>(i), {}},
                           "the gradient sum of " + quoted_name(saved.name) + " is " + dtype_name(saved.value.dtype()) +
                               " of shape " + to_string(saved.value.shape()) + ", but parameter id " +
                               std::to_string(i) + " is '" + params_[i].name() + "', summed in " +
                               dtype_name(mine.dtype()) + " of shape " + to_string(mine.shape()));
    }
  }
  if (t != section.tensors.size()) {
    throw StateDictError("it holds " + std::to_string(section.tensors.size()) + " gradient sums, but 'present' names " +
                         std::to_string(t));
  }
}

void GradientAccumulator::load_section(const CheckpointSection& section) {
  pending_ = section.scalars.at("pending").as_int();
  const std::vector<double>& present = section.scalars.at("present").as_float_list();
  std::size_t t = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    present_[i] = present[i] == 1.0;
    if (present_[i]) sums_[i].copy_from(section.tensors[t++].value);
  }
}

}  // namespace optreg
