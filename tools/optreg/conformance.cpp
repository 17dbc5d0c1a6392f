// optreg conformance: the conformance kit on one plugin file.
#include <iostream>
#include <memory>

#include <optreg/conformance.hpp>

#include "cli.hpp"
#include "isolate.hpp"

namespace optreg::cli {

namespace {

const CommandHelp kConformanceHelp = {
    "optreg conformance PLUGIN.so [--json] [--timeout SECONDS] [--in-process]",
    "check that a plugin file behaves as every host expects",
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
    "was in, by name, and the checks before it keep their results.",
    "Exit status: 0 when no check failed, 1 when any failed, 2 on a usage error.",
};

/// The arguments of `optreg conformance`.
struct ConformanceArgs {
  bool json = false;
  bool in_process = false;
  std::string timeout;  // --timeout as given
  std::string path;
};

using Status = ConformanceResult::Status;

Status status_of(const std::string& text) {
  if (text == to_string(Status::Passed)) return Status::Passed;
  if (text == to_string(Status::Skipped)) return Status::Skipped;
  return Status::Failed;
}

/// The kit in a child process: the results it reported, then a failed result for the check a
/// crash, an abort or a timeout interrupted.
std::vector<ConformanceResult> run_isolated(const std::string& path, double timeout) {
  const ChildRun run = run_self({kConformanceChildCommand, "--", path}, timeout);  // "--": any file name is a file
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

void print_json(const std::string& path, const std::vector<ConformanceResult>& results, const std::size_t counts[3],
                std::ostream& out) {
  Json list = Json::array();
  for (const auto& r : results) {
    list.push_back(Json{{"optimizer", json_text(r.optimizer)}, {"check", json_text(r.check)},
                        {"status", json_status(r.status)}, {"detail", json_message(r.detail)}});
  }
  const Json j = {{"plugin", json_text(path)}, {"results", list}, {"passed", counts[static_cast<int>(Status::Passed)]},
                  {"failed", counts[static_cast<int>(Status::Failed)]}, {"skipped", counts[static_cast<int>(Status::Skipped)]}};
  out << json_block(j) << '\n';
}

void print_text(const std::vector<ConformanceResult>& results, const std::size_t counts[3], std::ostream& out) {
  for (const auto& r : results) {
    out << to_string(r.status) << "  " << (r.optimizer.empty() ? "-" : escape_text(r.optimizer)) << "  "
        << escape_text(r.check) << "  (" << escape_message(r.detail) << ")\n";
  }
  out << counts[static_cast<int>(Status::Passed)] << " passed, " << counts[static_cast<int>(Status::Failed)] << " failed, "
      << counts[static_cast<int>(Status::Skipped)] << " skipped\n";
}

int run_conformance_command(const ConformanceArgs& args, std::ostream& out) {
  if (args.path.empty()) throw CommandLineError{"optreg conformance: name the plugin file to check"};
  const double timeout = args.timeout.empty() ? 120 : parse_timeout("optreg conformance: --timeout", args.timeout);
  const std::vector<ConformanceResult> results =
      args.in_process ? run_conformance(args.path) : run_isolated(args.path, timeout);
  std::size_t counts[3] = {0, 0, 0};
  for (const auto& r : results) ++counts[static_cast<int>(r.status)];
  if (args.json) {
    print_json(args.path, results, counts, out);
  } else {
    print_text(results, counts, out);
  }
  return counts[static_cast<int>(Status::Failed)] == 0 ? kOk : kFailure;
}

/// An argument `optreg conformance` does not take: an unknown option, or a second file.
void reject_extras(const CLI::App& command, const ConformanceArgs& args) {
  const std::vector<std::string> extra = extra_arguments(command);
  if (extra.empty()) return;
  if (extra.front().rfind('-', 0) == 0) throw CommandLineError{"optreg conformance: unknown option '" + extra.front() + "'"};
  throw CommandLineError{"optreg conformance: one plugin file at a time (got '" + args.path + "' and '" + extra.front() + "')"};
}

}  // namespace

void add_conformance_command(CLI::App& root, int& status) {
  auto args = std::make_shared<ConformanceArgs>();
  CLI::App& command = add_command(root, "conformance", kConformanceHelp);
  add_positional(command, "PLUGIN.so", args->path, "the plugin file");
  add_json_flag(command, args->json, "machine-readable output: the results and the counts");
  command.add_option("--timeout", args->timeout, "the time the whole kit may take on the file (default 120)")
      ->type_name("SECONDS");
  command.add_flag("--in-process", args->in_process, "run the kit in this process (for a debugger)");
  command.callback([args, &command, &status] {
    reject_extras(command, *args);
    status = run_conformance_command(*args, std::cout);
  });
}

}  // namespace optreg::cli
