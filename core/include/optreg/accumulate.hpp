#pragma once
/// \file
/// Gradient accumulation: the gradients of k micro-batches summed (or averaged) into one update,
/// with the partial sum saved in checkpoints so that a run stopped in the middle of an accumulation
/// resumes with the same bits.
///
///     optreg::GradientAccumulator acc(optimizer.parameters(), {4, Reduce::Mean});
///     for (batch : batches) {
///       backward(batch);                       // sets the parameters' gradients
///       if (!acc.accumulate()) continue;       // taken; gradients cleared
///       clip(...);                             // sees the accumulated gradient
///       optimizer.step().clear_grad();
///       scheduler.step();                      // once per real update
///     }
///
/// Contract:
/// - The sum of a float64 parameter's gradients is float64, of every other dtype float32 (a
///   half-precision gradient widened exactly); micro-batches are added in the order taken, the
///   first copied. `mean` divides the sum by k (the micro-batches a parameter had no gradient in
///   count as zeros), `sum` leaves it; the result is rounded to nearest into the gradient's dtype.
///   A parameter without a gradient in all k micro-batches gets none.
/// - Its state (k, the reduction, the micro-batches taken and the sums) is a checkpoint section
///   named "accumulate" (CheckpointComponent).

#include <cstdint>
#include <string>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/export.hpp>
#include <optreg/parameter.hpp>

namespace optreg {

/// How a GradientAccumulator reduces k micro-batches.
struct OPTREG_API AccumulateSettings {
  enum class Reduce { Mean, Sum };
  /// Micro-batches per update (at least 1; 1 passes every gradient through).
  std::int64_t steps = 1;
  Reduce reduce = Reduce::Mean;
};

/// "mean" or "sum".
OPTREG_API const char* to_string(AccumulateSettings::Reduce reduce) noexcept;
/// The reduction named "mean" or "sum"; throws OptionError for any other name.
OPTREG_API AccumulateSettings::Reduce accumulate_reduce(const std::string& name);
/// Throws OptionError when `steps` lies outside [1, 2^20].
OPTREG_API void check_accumulate_settings(const AccumulateSettings& settings);

/// The most micro-batches one update may accumulate.
inline constexpr std::int64_t kMaxAccumulateSteps = std::int64_t{1} << 20;

/// Sums the gradients of `settings.steps` micro-batches (see the file's contract).
class OPTREG_API GradientAccumulator : public CheckpointComponent {
 public:
  /// Accumulates into the gradients of `params`; settings are checked (OptionError).
  GradientAccumulator(std::vector<Parameter> params, const AccumulateSettings& settings);
  ~GradientAccumulator() override;

  const AccumulateSettings& settings() const noexcept { return settings_; }
  /// Micro-batches taken since the last completed accumulation (0 to steps - 1).
  std::int64_t pending() const noexcept { return pending_; }

  /// Takes the micro-batch whose gradients the parameters hold: adds each present gradient to its
  /// parameter's sum and clears it. Returns false while fewer than k were taken; at the k-th, gives
  /// each parameter the reduced sum as its gradient (none where it had none), starts over and
  /// returns true. Throws UsageError (before anything changes) for a gradient whose shape or dtype
  /// is not its value's.
  bool accumulate();

  std::string section_name() const override { return "accumulate"; }
  CheckpointSection save_section() const override;
  void check_section(const CheckpointSection& section) const override;
  void load_section(const CheckpointSection& section) override;

 private:
  std::vector<Parameter> params_;
  AccumulateSettings settings_;
  std::vector<Tensor> sums_;
  std::vector<bool> present_;  // whether sums_[i] holds a gradient since the last update
  std::int64_t pending_ = 0;
};

}  // namespace optreg
