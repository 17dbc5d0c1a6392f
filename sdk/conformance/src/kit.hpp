#pragma once
// What every table of checks of the conformance kit shares: outcomes, the table entry and its
// runner, the reporter that streams results to an observer, bit-exact comparison of options,
// the kit's temporary folder, and the words of a detail. Internal to the kit; not installed.

#include <cstddef>
#include <exception>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <optreg/conformance.hpp>
#include <optreg/value.hpp>

#include <optreg/detail/files.hpp>

namespace optreg::kit {

using Status = ConformanceResult::Status;

/// What one check found: its status and the detail of its result line.
struct Outcome {
  Status status;
  std::string detail;
};

inline Outcome passed(std::string detail) { return {Status::Passed, std::move(detail)}; }
inline Outcome failed(std::string detail) { return {Status::Failed, std::move(detail)}; }
inline Outcome skipped(std::string detail) { return {Status::Skipped, std::move(detail)}; }

/// One row of a table of checks on subjects of type S: the check's name and its function.
template <typename S>
struct Check {
  const char* name;
  Outcome (*run)(const S&);
};

/// Runs one check on subject `s` (named `subject`, of kind `kind`) and turns every exception
/// it lets out into a failed result.
template <typename S>
ConformanceResult run_check(const S& s, const std::string& subject, ConformanceResult::Kind kind, const Check<S>& c) {
  ConformanceResult r;
  r.optimizer = subject;
  r.kind = kind;
  r.check = c.name;
  try {
    Outcome o = c.run(s);
    r.status = o.status;
    r.detail = std::move(o.detail);
  } catch (const std::exception& e) {
    r.status = Status::Failed;
    r.detail = std::string("stopped by an exception: ") + e.what();
  } catch (...) {
    r.status = Status::Failed;
    r.detail = "stopped by an exception that is not a std::exception";
  }
  return r;
}

/// Collects the results of a run and tells the observer of each check as it starts and ends.
class Reporter {
 public:
  explicit Reporter(const ConformanceObserver& observer) : observer_(observer) {}

  void start(const std::string& subject, const std::string& check) const {
    if (observer_.started) observer_.started(subject, check);
  }
  void add(ConformanceResult r) {
    if (observer_.finished) observer_.finished(r);
    results_.push_back(std::move(r));
  }
  /// Every check of `table`, in order, on subject `s`.
  template <typename S, std::size_t N>
  void run_table(const S& s, const std::string& subject, ConformanceResult::Kind kind, const Check<S> (&table)[N]) {
    for (const Check<S>& c : table) {
      start(subject, c.name);
      add(run_check(s, subject, kind, c));
    }
  }
  std::vector<ConformanceResult> take() { return std::move(results_); }

 private:
  const ConformanceObserver& observer_;
  std::vector<ConformanceResult> results_;
};

// ---------------------------------------------------------------- words of a detail

/// A double with every digit it needs to read back the same bits.
std::string number(double d);
/// A float with every digit it needs to read back the same bits.
std::string number(float f);
/// "1 state entry", "2 state entries".
std::string count(std::size_t n, const std::string& one, const std::string& many);
/// The items separated by ", ".
std::string joined(const std::vector<std::string>& items);

// ---------------------------------------------------------------- bit-exact comparison

bool same_bits(float a, float b);
bool same_bits(double a, double b);
/// Same type and the same bits (floats and each element of a list compared by their bits).
bool same_bits(const Value& a, const Value& b);
/// What differs between two option maps ("option 'lr': 0.1 vs 0.2"), or "". `what` names an
/// entry in the message ("option", "state entry").
std::string diff(const Options& a, const Options& b, const std::string& what = "option");

// ---------------------------------------------------------------- schemas

/// What is wrong with a descriptor's schema (none at all, a name or a meaning missing, a name
/// twice), if anything; collects the names into `names` and `seen`.
std::optional<std::string> schema_fault(const Schema* schema, std::vector<std::string>& names, std::set<std::string>& seen);
/// Every default of `schema` is of its declared type and accepted by the schema's own check;
/// passed with how many, or failed naming the first that is not.
Outcome check_schema_defaults(const Schema& schema);

// ---------------------------------------------------------------- files

/// A temporary folder, removed with everything in it. It is locked while it lives, and the
/// stale folders of runs killed before they could remove theirs are removed when it is made.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// A path in the folder; throws CheckpointError when the folder could not be made.
  std::string file(const std::string& name) const;

 private:
  detail::UniqueFd lock_;  // closed after the folder is removed
  std::filesystem::path path_;
  std::string error_;
};

/// Removes a file when it goes out of scope.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
  ~RemoveOnExit();
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;

 private:
  std::string path_;
};

}  // namespace optreg::kit
