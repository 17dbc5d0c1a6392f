#pragma once
/// \file
/// The conformance kit: checks that any plugin file behaves as every host expects.
/// Each optimizer of the file gets the optimizer checks (descriptor_valid, ...). Each
/// learning-rate scheduler gets the scheduler checks (scheduler_descriptor_valid, ...), made over
/// a stand-in optimizer the kit owns, at its defaults or, when they are refused or leave the lr
/// unchanged, with the options whose default is zero or empty (the convention for a required
/// option) given values of steps; the core's sequential made of the file's step-driven
/// schedulers gets them too, as "sequential". What each check measures is in
/// docs/plugin-guide.md; the schedules themselves are pinned by each plugin's own tests.
/// `optreg conformance PLUGIN.so` runs it from the command line; a plugin's own tests call
/// run_conformance() and expect every result to pass.

#include <optreg/export.hpp>
#include <functional>
#include <string>
#include <vector>

namespace optreg {

/// The outcome of one check on one optimizer or scheduler.
struct OPTREG_API ConformanceResult {
  enum class Status { Passed, Failed, Skipped };
  enum class Kind { Optimizer, Scheduler };
  /// The optimizer or scheduler checked (empty for checks of the file as a whole).
  std::string optimizer;
  /// What `optimizer` names.
  Kind kind = Kind::Optimizer;
  /// The check's name, such as "lr_zero_changes_nothing".
  std::string check;
  Status status = Status::Failed;
  /// Why it failed or was skipped; what was measured when it passed.
  std::string detail;
};

/// Runs every check on every optimizer, then every scheduler (and their sequence), of the plugin
/// at `plugin_path`. Never throws for a misbehaving plugin: each failure is a result (a plugin
/// that cannot be loaded gives one failed result naming the reason).
OPTREG_API std::vector<ConformanceResult> run_conformance(const std::string& plugin_path);

/// What run_conformance() reports while it runs: `started` before each check (with the optimizer
/// or scheduler and the check's name), `finished` with each result as soon as it is known. A host
/// that runs the kit in a child process streams them to learn which check a crash interrupted.
struct OPTREG_API ConformanceObserver {
  std::function<void(const std::string& subject, const std::string& check)> started;
  std::function<void(const ConformanceResult& result)> finished;
};

/// run_conformance(), reporting to `observer` as it goes; returns the same results.
OPTREG_API std::vector<ConformanceResult> run_conformance(const std::string& plugin_path, const ConformanceObserver& observer);

/// "passed", "FAILED" or "skipped".
OPTREG_API const char* to_string(ConformanceResult::Status status) noexcept;

}  // namespace optreg
