// optreg conformance: the conformance kit on one plugin file.
#include <ostream>

#include <optreg/conformance.hpp>

#include "cli.hpp"

namespace optreg::cli {

namespace {

const char* kConformanceHelp =
    "usage: optreg conformance PLUGIN.so [--json]\n"
    "\n"
    "Runs the conformance kit on every optimizer of one plugin file: a valid descriptor, defaults\n"
    "in range, no change from a step without gradients or with lr = 0, state dicts that round-trip\n"
    "through a checkpoint file, a bit-exact resumed run, refused mismatched state dicts, a falling\n"
    "loss on a convex quadratic, no NaN from zero gradients, and no interference between two\n"
    "instances on two threads. Prints one line per check and a summary.\n"
    "\n"
    "  --json   machine-readable output: the results and the counts\n"
    "\n"
    "Exit status: 0 when no check failed, 1 when any failed, 2 on a usage error.\n";

const char* json_status(ConformanceResult::Status status) {
  switch (status) {
    case ConformanceResult::Status::Passed: return "passed";
    case ConformanceResult::Status::Failed: return "failed";
    case ConformanceResult::Status::Skipped: return "skipped";
  }
  return "unknown";
}

}  // namespace

int run_conformance_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& /*err*/) {
  bool json = false;
  std::string path;
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      out << kConformanceHelp;
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (a.rfind("-", 0) == 0) {
      throw UsageError{"optreg conformance: unknown option '" + a + "'"};
    } else if (!path.empty()) {
      throw UsageError{"optreg conformance: one plugin file at a time (got '" + path + "' and '" + a + "')"};
    } else {
      path = a;
    }
  }
  if (path.empty()) throw UsageError{"optreg conformance: name the plugin file to check"};

  const std::vector<ConformanceResult> results = run_conformance(path);
  std::size_t counts[3] = {0, 0, 0};
  for (const auto& r : results) ++counts[static_cast<int>(r.status)];
  const std::size_t n_passed = counts[static_cast<int>(ConformanceResult::Status::Passed)];
  const std::size_t n_failed = counts[static_cast<int>(ConformanceResult::Status::Failed)];
  const std::size_t n_skipped = counts[static_cast<int>(ConformanceResult::Status::Skipped)];
  if (json) {
    out << "{\n  \"plugin\": " << json_string(path) << ",\n  \"results\": [";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      out << (i ? ",\n" : "\n") << "    {\"optimizer\": " << json_string(r.optimizer) << ", \"check\": " << json_string(r.check)
          << ", \"status\": \"" << json_status(r.status) << "\", \"detail\": " << json_message(r.detail) << "}";
    }
    out << (results.empty() ? "]" : "\n  ]") << ",\n  \"passed\": " << n_passed << ",\n  \"failed\": " << n_failed
        << ",\n  \"skipped\": " << n_skipped << "\n}\n";
  } else {
    for (const auto& r : results) {
      out << to_string(r.status) << "  " << (r.optimizer.empty() ? "-" : escape_text(r.optimizer)) << "  "
          << escape_text(r.check) << "  (" << escape_message(r.detail) << ")\n";
    }
    out << n_passed << " passed, " << n_failed << " failed, " << n_skipped << " skipped\n";
  }
  return n_failed == 0 ? kOk : kFailure;
}

}  // namespace optreg::cli
