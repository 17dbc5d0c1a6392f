#pragma once
// Running plugin code in a child process of the tool, so that a plugin that crashes, aborts or
// hangs (in a static constructor at load time, or in a step) is reported by name instead of
// taking the tool down. The child is this same executable, started with an internal command;
// it reports through its standard output in lines of tab-separated, escaped fields.

#include <string>
#include <vector>

namespace optreg::cli {

/// How a child process ended, and what it wrote.
struct ChildRun {
  /// It exited by itself (`exit_status` is valid); otherwise a signal killed it or it timed out.
  bool exited = false;
  int exit_status = 0;
  /// The signal that ended it (0 when it exited); SIGKILL after a timeout.
  int signal = 0;
  /// It did not finish within the time allowed and was killed.
  bool timed_out = false;
  /// Its standard output, whole.
  std::string out;
  /// The last line it wrote to its standard error that was not empty, made printable.
  std::string last_error_line;
};

/// Runs this executable with `args` in a child process, waiting at most `timeout_seconds`
/// (then kills it). Throws optreg::Error when the child cannot be started.
ChildRun run_self(const std::vector<std::string>& args, double timeout_seconds);

/// How the child ended, for a message: "was killed by signal 11 (SIGSEGV: Segmentation fault)",
/// "did not finish within 10 s", "exited with status 3"; with the child's last line on standard
/// error when it wrote one.
std::string describe_end(const ChildRun& run, double timeout_seconds);

/// One line of the child's reports: the fields joined by tabs, with tab, newline and backslash
/// escaped, and a newline at the end.
std::string report_line(const std::vector<std::string>& fields);
/// The fields of one report line (without its newline).
std::vector<std::string> parse_report_line(const std::string& line);

/// A number of seconds given to --timeout: positive and finite; throws CommandLineError otherwise.
double parse_timeout(const std::string& option, const std::string& text);

/// The internal command behind `optreg list --isolate`: loads one plugin file alone and reports
/// "loaded" or "refused", the file and the reason.
int run_load_probe(const std::string& file);
/// The internal command behind `optreg conformance`: runs the kit on one plugin file and streams
/// a "started" line before each check and a "result" line after it.
int run_conformance_child(const std::string& file);

/// The names of the internal commands (not listed in the help).
inline constexpr char kLoadProbeCommand[] = "__load-plugin";
inline constexpr char kConformanceChildCommand[] = "__conformance";

}  // namespace optreg::cli
