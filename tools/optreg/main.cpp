// The optreg command line: a thin layer over the library.
#include <algorithm>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <optreg/text.hpp>
#include <optreg/version.hpp>

#include "cli.hpp"
#include "isolate.hpp"

namespace {

const char* kHelp =
    "usage: optreg <command> [options]\n"
    "\n"
    "commands:\n"
    "  list         list every loaded optimizer and scheduler, its schema, and refused plugins\n"
    "  show         show one optimizer or scheduler\n"
    "  check        validate a config and print it resolved\n"
    "  inspect      verify a checkpoint file and show what it holds\n"
    "  conformance  check that a plugin file behaves as every host expects\n"
    "  train        train a built-in problem with a config's optimizer\n"
    "  compare      train a problem with several optimizers; table and plot\n"
    "  problems     list the built-in problems\n"
    "\n"
    "options:\n"
    "  -h, --help     this help; 'optreg <command> --help' for a command's own\n"
    "  --version      the version of optreg and of its plugin ABI\n"
    "\n"
    "Plugins are searched in OPTREG_PLUGIN_PATH (colon-separated folders), then in the\n"
    "installed plugin folder; --plugin-path adds folders or files before them.\n";

/// Runs the command `args` names.
int dispatch(const std::vector<std::string>& args) {
  using namespace optreg::cli;
  if (args.empty()) throw UsageError{"a command is needed"};
  const std::string cmd = args.front();
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << kHelp;
    return kOk;
  }
  if (cmd == "--version") {
    std::cout << "optreg " << OPTREG_VERSION << " (plugin ABI " << OPTREG_ABI_MAJOR << ", " << OPTREG_BUILD_TAG
              << ")\n";
    return kOk;
  }
  if (cmd == "list") return run_list(rest, std::cout, std::cerr);
  if (cmd == "show") return run_show(rest, std::cout, std::cerr);
  if (cmd == "check") return run_check(rest, std::cout, std::cerr);
  if (cmd == "inspect") return run_inspect(rest, std::cout, std::cerr);
  if (cmd == "conformance") return run_conformance_command(rest, std::cout, std::cerr);
  if (cmd == "train") return run_train(rest, std::cout, std::cerr);
  if (cmd == "compare") return run_compare(rest, std::cout, std::cerr);
  if (cmd == "problems") return run_problems(rest, std::cout, std::cerr);
  // Internal: what a child process runs for list --isolate and conformance.
  if (cmd == kLoadProbeCommand) return run_load_probe(rest);
  if (cmd == kConformanceChildCommand) return run_conformance_child(rest);
  throw UsageError{"unknown command '" + cmd + "'"};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace optreg::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  // A command given --json prints its failures as JSON too, so that a script always reads one
  // JSON object; messages reach the terminal inert whatever names they hold.
  const bool json = std::find(args.begin(), args.end(), "--json") != args.end();
  const auto fail = [&](int status, const char* hint, std::string message = {}) {
    if (message.empty()) message = current_error_message();
    if (json) std::cout << json_error(message) << '\n';
    std::cerr << "optreg: " << optreg::escape_message(message) << hint << '\n';
    return status;
  };
  try {
    const int status = dispatch(args);
    // Every command's output is checked once it is complete: a full disk or a closed pipe is an
    // error, not a silent loss.
    std::cout.flush();
    if (!std::cout) throw optreg::Error("standard output: cannot write (is the disk full?)");
    return status;
  } catch (const UsageError&) {
    return fail(kUsage, "\n(run 'optreg --help' for usage)");
  } catch (const std::bad_alloc&) {
    // Allocations sized by a setting or a file name it (docs/train.md, "Memory"); what is left
    // is named by the command that ran out.
    const std::string command = args.empty() ? std::string("optreg") : "optreg " + args.front();
    return fail(kFailure, "", "out of memory in '" + command + "'");
  } catch (...) {
    return fail(kFailure, "");
  }
}
