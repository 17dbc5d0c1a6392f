#pragma once
// Shared pieces of the optreg command line: commands and their help (CLI11), argument
// errors, registry setup, and the formatters every command prints with.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <optreg/registry.hpp>
#include <optreg/text.hpp>
#include <optreg/train/format.hpp>

namespace optreg::cli {

// Every JSON the tool prints is built and written with these (docs/command-line.md).
using train::Json;
using train::json_block;
using train::json_line;
using train::json_message;
using train::json_number;
using train::json_text;
using train::json_value;
using train::options_json;
using train::options_text;

/// Exit codes of the tool.
enum Exit : int { kOk = 0, kFailure = 1, kUsage = 2 };

/// A command-line mistake (an unknown argument, a missing or malformed value); main() prints it
/// with the usage hint and exits with kUsage.
struct CommandLineError {
  std::string message;
};

/// Plugin sources given on the command line.
struct PluginOptions {
  std::vector<std::string> paths;  // --plugin-path, in order
  bool default_path = true;        // cleared by --no-default-path
  /// Try each plugin file in a child process first (--isolate), allowing it `timeout` seconds;
  /// a file whose loading crashes, aborts or hangs there is refused and never loaded here.
  bool isolate = false;
  double timeout = 10;
};

/// What a command's help says: the line after "usage: ", its line in `optreg --help`, the
/// paragraphs before its options and those after them.
struct CommandHelp {
  std::string usage;
  std::string summary;
  std::string about;
  std::string footer;
};

/// Adds command `name` to `root`, with its help; arguments it does not take are left in its
/// extra_arguments() for the command to name (reject_extras()).
CLI::App& add_command(CLI::App& root, const std::string& name, const CommandHelp& help);
/// Adds a positional argument, such as CONFIG, that the command checks for itself.
void add_positional(CLI::App& command, const std::string& name, std::string& value, const std::string& meaning);
/// Adds --plugin-path DIR|FILE (repeatable, also --plugin-path=X) and --no-default-path.
void add_plugin_options(CLI::App& command, PluginOptions& out);
/// Adds --json to `command`, with its meaning in the help.
void add_json_flag(CLI::App& command, bool& json, const std::string& meaning = "machine-readable output");
/// The arguments `command` did not take, in order (without the "--" that ends its options).
std::vector<std::string> extra_arguments(const CLI::App& command);
/// Throws CommandLineError "PREFIX 'ARG'" for the first argument `command` did not take.
void reject_extras(const CLI::App& command, const std::string& prefix);
/// Makes `command`, once parsed, throw reject_extras(command, extra_prefix) or else set
/// `status` to what `run()` returns.
template <typename Run>
void run_when_parsed(CLI::App& command, const std::string& extra_prefix, int& status, Run run) {
  command.callback([&command, extra_prefix, &status, run] {
    reject_extras(command, extra_prefix);
    status = run();
  });
}
/// Gives the tool itself its help (`help.summary` unused).
void set_root_help(CLI::App& root, const CommandHelp& help);
/// The help of the tool itself, whichever command was chosen.
std::string root_help(const CLI::App& root);

/// Loads the given paths in order, then the default search path; returns every refusal. With
/// `options.isolate`, each file is loaded first in a child process.
std::vector<Refusal> load_plugins(Registry& registry, const PluginOptions& options);

/// {"error": message}, on one line: what a command given --json prints when it fails.
std::string json_error(const std::string& message);
/// Refused plugins as JSON: [{"path": ..., "reason": ...}, ...].
Json refusals_json(const std::vector<Refusal>& refused);

/// The message of the exception in flight, for the user ("out of memory" for std::bad_alloc);
/// call it inside a catch block.
std::string current_error_message();

// The commands, each added to the tool's root; the one that runs sets `status` to its exit code.

/// `list` and `show`.
void add_registry_commands(CLI::App& root, int& status);
/// `check`.
void add_check_command(CLI::App& root, int& status);
/// `inspect`.
void add_inspect_command(CLI::App& root, int& status);
/// `conformance`.
void add_conformance_command(CLI::App& root, int& status);
/// `train`, `compare` and `problems`.
void add_training_commands(CLI::App& root, int& status);
/// The internal commands a child process runs (not listed in the help).
void add_internal_commands(CLI::App& root, int& status);

}  // namespace optreg::cli
