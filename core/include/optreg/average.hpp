#pragma once
/// \file
/// Weight averaging: an exponential moving average (EMA) or a uniform average (SWA) of an
/// optimizer's parameters, kept beside the optimizer, saved in its checkpoints, and put in place
/// for an evaluation by a scope (AveragedWeights).
///
///     optreg::WeightAverage ema(optimizer, {optreg::AverageSettings::Kind::Ema, 0.999});
///     for (...) { ...; optimizer.step().clear_grad(); }   // ema updates after each step
///     {
///       optreg::AveragedWeights swap(ema);
///       evaluate(model);                                 // at the averaged weights
///     }                                                  // the trained weights are back
///
/// Contract:
/// - The average is updated after the optimizer's steps (a post_step hook): after step s (1, 2,
///   ...) when s >= start and (s - start) is a multiple of `every`. Steps are counted from the
///   average's creation, or from those its checkpoint section records.
/// - Arithmetic: the average of a float64 parameter is float64, of every other dtype float32 (a
///   bfloat16 or float16 value widened exactly). The first update copies the weights. Update n + 1
///   (n updates done) computes, elementwise in that type,
///     EMA:  avg = d * avg + (1 - d) * w,  d = decay, or min(decay, (1 + n) / (10 + n)) with
///           warm-up (d and 1 - d computed in double, then rounded to the type once);
///     SWA:  avg = avg + (w - avg) / (n + 1).
///   Kernels split elements across the step threads by ranges that depend only on the sizes
///   (parallel.hpp), so every thread count gives the same bits.
/// - Its state (settings, step and update counts, the averages) is a checkpoint section named
///   "average" (CheckpointComponent): a load checks the settings, counts, parameter names, shapes
///   and dtypes before anything changes.
/// - The optimizer must outlive it; parameters added to the optimizer after it was made are refused
///   at the next step (a UsageError from a pre_step hook, before anything changes).

#include <cstdint>
#include <string>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/export.hpp>
#include <optreg/optimizer.hpp>

namespace optreg {

/// How a WeightAverage averages.
struct OPTREG_API AverageSettings {
  enum class Kind { Ema, Swa };
  Kind kind = Kind::Ema;
  /// EMA: the weight the average keeps at each update, in [0, 1).
  double decay = 0.999;
  /// EMA: the decay of update n + 1 is min(decay, (1 + n) / (10 + n)), so that the average forgets
  /// its first weights quickly (TensorFlow's num_updates rule).
  bool warmup = false;
  /// Steps between updates (at least 1).
  std::int64_t every = 1;
  /// The first step after which the average is updated (0 and 1: the first step).
  std::int64_t start = 0;
};

/// "ema" or "swa".
OPTREG_API const char* to_string(AverageSettings::Kind kind) noexcept;
/// The kind named "ema" or "swa"; throws OptionError for any other name.
OPTREG_API AverageSettings::Kind average_kind(const std::string& name);
/// Throws OptionError naming the setting that is out of its range: decay outside [0, 1) (or not
/// finite), every below 1, start below 0 or above 2^53.
OPTREG_API void check_average_settings(const AverageSettings& settings);

/// An average of an optimizer's parameters (see the file's contract).
class OPTREG_API WeightAverage : public CheckpointComponent {
 public:
  /// Averages the parameters `optimizer` has now; settings are checked (OptionError).
  WeightAverage(Optimizer& optimizer, const AverageSettings& settings);
  ~WeightAverage() override;
  WeightAverage(const WeightAverage&) = delete;
  WeightAverage& operator=(const WeightAverage&) = delete;

  const AverageSettings& settings() const noexcept { return settings_; }
  /// Optimizer steps seen.
  std::int64_t steps() const noexcept { return steps_; }
  /// Updates taken (0: the average holds nothing yet).
  std::int64_t updates() const noexcept { return updates_; }
  /// The averaged parameters, in the optimizer's id order.
  const std::vector<Parameter>& parameters() const noexcept { return params_; }
  /// The average of each parameter (float32, or float64 for a float64 parameter); zeros before the
  /// first update.
  const std::vector<Tensor>& averages() const noexcept { return averages_; }

  /// Counts a step and updates the average when the step is one to average after; the optimizer's
  /// post_step hook calls it.
  void on_step();

  std::string section_name() const override { return "average"; }
  CheckpointSection save_section() const override;
  void check_section(const CheckpointSection& section) const override;
  void load_section(const CheckpointSection& section) override;

 private:
  void update();

  AverageSettings settings_;
  std::vector<Parameter> params_;
  std::vector<Tensor> averages_;
  std::int64_t steps_ = 0;
  std::int64_t updates_ = 0;
  HookHandle pre_;
  HookHandle post_;
};

/// Puts a weight average in its parameters for the scope's life, and the trained weights back, bit
/// for bit, when it ends (the averages rounded to nearest into a bfloat16 or float16 parameter).
/// Before the average's first update it changes nothing (active() is false). The optimizer must not
/// step while the scope lives.
class OPTREG_API AveragedWeights {
 public:
  explicit AveragedWeights(const WeightAverage& average);
  ~AveragedWeights();
  AveragedWeights(const AveragedWeights&) = delete;
  AveragedWeights& operator=(const AveragedWeights&) = delete;
  /// Whether the parameters hold the averaged weights.
  bool active() const noexcept { return !saved_.empty(); }
  /// Puts the trained weights back now; the destructor then does nothing.
  void restore() noexcept;

 private:
  std::vector<Parameter> params_;
  std::vector<Tensor> saved_;
};

}  // namespace optreg
