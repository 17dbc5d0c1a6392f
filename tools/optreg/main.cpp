// The optreg command line: a thin layer over the library.
#include <algorithm>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <optreg/text.hpp>
#include <optreg/version.hpp>

#include "cli.hpp"

namespace {

using namespace optreg::cli;

const CommandHelp kHelp = {
    "optreg <command> [options]",
    "",
    "",
    "Plugins are searched in OPTREG_PLUGIN_PATH (colon-separated folders), then in the\n"
    "installed plugin folder; --plugin-path adds folders or files before them.",
};

/// The root of the command line: every command, --help and --version; the command that runs
/// sets `status`.
void add_everything(CLI::App& root, int& status) {
  set_root_help(root, kHelp);
  root.require_subcommand(1);
  root.option_defaults()->group("options");
  root.set_help_flag("-h,--help", "this help; 'optreg <command> --help' for a command's own");
  root.set_version_flag("--version",
                        std::string("optreg ") + OPTREG_VERSION + " (plugin ABI " + std::to_string(OPTREG_ABI_MAJOR) +
                            ", " + OPTREG_BUILD_TAG + ")",
                        "the version of optreg and of its plugin ABI");
  add_registry_commands(root, status);
  add_check_command(root, status);
  add_inspect_command(root, status);
  add_conformance_command(root, status);
  add_training_commands(root, status);
  add_internal_commands(root, status);
  // `optreg help` as well as `optreg --help`.
  root.add_subcommand("help")->group("")->callback([&root] { std::cout << root_help(root); });
}

/// What a command-line mistake CLI11 found means, in the tool's words.
std::string usage_message(CLI::App& root, const std::vector<std::string>& args, const CLI::ParseError& e) {
  const std::vector<CLI::App*> chosen = root.get_subcommands();
  if (!chosen.empty()) return "optreg " + chosen.front()->get_name() + ": " + e.what();
  if (args.empty()) return "a command is needed";
  const std::string& first = args.front();
  return (first.rfind('-', 0) == 0 ? "unknown option '" : "unknown command '") + first + "'";
}

/// Runs the command `args` names; returns its exit status.
int run_command_line(const std::vector<std::string>& args) {
  CLI::App root("", "optreg");
  int status = kOk;
  add_everything(root, status);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // what CLI11 parses
  try {
    root.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::cout << root.help();  // the chosen command's own, or the tool's
  } catch (const CLI::CallForVersion& e) {
    std::cout << e.what() << '\n';
  } catch (const CLI::ParseError& e) {
    throw CommandLineError{usage_message(root, args, e)};
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
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
    const int status = run_command_line(args);
    // Every command's output is checked once it is complete: a full disk or a closed pipe is an
    // error, not a silent loss.
    std::cout.flush();
    if (!std::cout) throw optreg::Error("standard output: cannot write (is the disk full?)");
    return status;
  } catch (const CommandLineError&) {
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
