// optreg conformance: the conformance kit on one plugin file.
#include <ostream>

#include <optreg/conformance.hpp>

#include "cli.hpp"
#include "isolate.hpp"

namespace optreg::cli {

namespace {

const char* kConformanceHelp =
    "usage: optreg conformance PLUGIN.so [--json] [--timeout SECONDS] [--in-process]\n"
    "\n"
    "Runs the conformance kit on every optimizer of one plugin file: a valid descriptor, defaults\n"
    "in range, no change from a step without gradients or with lr = 0, state dicts that round-trip\n"
    "through a checkpoint file, a bit-exact resumed run, refused mismatched state dicts, a falling\n"
    "loss on a convex quadratic, no NaN from zero gradients, and no interference between two\n"
    "instances on two threads. Runs it as well on every learning-rate scheduler of the file, and on\n"
    "the core's sequential made of its step-driven ones, each made over a stand-in optimizer: a\n"
    "valid descriptor, defaults accepted, a state that round-trips through load_state() and a\n"
    "checkpoint file, a bit-exact resumed run, the states of other schedulers refused, and counts\n"
    "that stop at the top of their domain. Prints one line per check and a summary.\n"
    "\n"
    "The kit runs in a child process: a plugin that crashes, aborts or hangs fails the check it\n"
    "was in, by name, and the checks before it keep their results.\n"
    "\n"
    "  --json              machine-readable output: the results and the counts\n"
    "  --timeout SECONDS   the time the whole kit may take on the file (default 120)\n"
    "  --in-process        run the kit in this process (for a debugger)\n"
    "\n"
    "Exit status: 0 when no check failed, 1 when any failed, 2 on a usage error.\n";

using Status = ConformanceResult::Status;

Status status_of(const std::string& text) {
  if (text == to_string(Status::Passed)) return Status::Passed;
  if (text == to_string(Status::Skipped)) return Status::Skipped;
  return Status::Failed;
}

/// The kit in a child process: the results it reported, then a failed result for the check a
/// crash, an abort or a timeout interrupted.
std::vector<ConformanceResult> run_isolated(const std::string& path, double timeout) {
  const ChildRun run = run_self({kConformanceChildCommand, path}, timeout);
  std::vector<ConformanceResult> results;
  std::string subject;
  std::string check;
  bool open = false;  // a check started and has no result yet
  std::size_t begin = 0;
  for (std::size_t end; (end = run.out.find('\n', begin)) != std::string::npos; begin = end + 1) {
    const std::vector<std::string> f = parse_report_line(run.out.substr(begin, end - begin));
    if (f.size() == 3 && f[0] == "started") {
      subject = f[1];
      check = f[2];
      open = true;
    } else if (f.size() == 6 && f[0] == "result") {
      ConformanceResult r;
      r.status = status_of(f[1]);
      r.kind = f[2] == "scheduler" ? ConformanceResult::Kind::Scheduler : ConformanceResult::Kind::Optimizer;
      r.optimizer = f[3];
      r.check = f[4];
      r.detail = f[5];
      results.push_back(std::move(r));
      open = false;
    }
  }
  if (run.exited && run.exit_status == kOk) return results;
  ConformanceResult r;
  r.status = Status::Failed;
  r.optimizer = open ? subject : std::string();
  // Before the first check the child was loading the file, which descriptor_valid covers.
  r.check = open ? check : results.empty() ? std::string("descriptor_valid") : std::string("conformance_kit");
  r.detail = "the process running the conformance kit on plugin " + path + " " + describe_end(run, timeout) +
             (open ? " during this check" : results.empty() ? " while loading the plugin" : " between checks");
  results.push_back(std::move(r));
  return results;
}

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
  bool in_process = false;
  double timeout = 120;
  std::string path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out << kConformanceHelp;
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (a == "--in-process") {
      in_process = true;
    } else if (a == "--timeout") {
      if (i + 1 >= args.size()) throw UsageError{"optreg conformance: --timeout needs a number of seconds"};
      timeout = parse_timeout("optreg conformance: --timeout", args[++i]);
    } else if (a.rfind("-", 0) == 0) {
      throw UsageError{"optreg conformance: unknown option '" + a + "'"};
    } else if (!path.empty()) {
      throw UsageError{"optreg conformance: one plugin file at a time (got '" + path + "' and '" + a + "')"};
    } else {
      path = a;
    }
  }
  if (path.empty()) throw UsageError{"optreg conformance: name the plugin file to check"};

  const std::vector<ConformanceResult> results = in_process ? run_conformance(path) : run_isolated(path, timeout);
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
