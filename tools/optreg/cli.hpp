#pragma once
// Shared pieces of the optreg command line: argument errors, output helpers, registry setup.

#include <iosfwd>
#include <string>
#include <vector>

#include <optreg/registry.hpp>
#include <optreg/text.hpp>

namespace optreg::cli {

/// Exit codes of the tool.
enum Exit : int { kOk = 0, kFailure = 1, kUsage = 2 };

/// A command-line mistake; main() prints it with the usage hint and exits with kUsage.
struct UsageError {
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

/// Consumes --plugin-path DIR|FILE (repeatable) and --no-default-path at args[i]; returns false
/// when args[i] is neither.
bool parse_plugin_option(const std::vector<std::string>& args, std::size_t& i, PluginOptions& out);

/// Loads the given paths in order, then the default search path; returns every refusal. With
/// `options.isolate`, each file is loaded first in a child process.
std::vector<Refusal> load_plugins(Registry& registry, const PluginOptions& options);

// Every JSON the tool prints is written with these (docs/command-line.md): strings are
// valid UTF-8 and inert, numbers are finite or one of the strings ".inf", "-.inf", ".nan".

/// A JSON string holding escape_text(s): names, paths, descriptions, metadata.
std::string json_string(const std::string& s);
/// A JSON string holding escape_message(s): error messages and refusal reasons.
std::string json_message(const std::string& s);
/// A number as JSON: the shortest text that reads back the same double, or `digits`
/// significant digits when `digits` > 0; inf and NaN as the strings ".inf", "-.inf", ".nan".
std::string json_number(double d, int digits = 0);
/// A Value as JSON (a list of floats as an array of json_number()).
std::string json_value(const Value& v);
/// {"error": message}: what a command given --json prints when it fails.
std::string json_error(const std::string& message);

/// Options as text for a terminal, {lr: 0.1, name: "x"}, names escaped.
std::string options_text(const Options& o);
/// Options as a JSON object.
std::string options_json(const Options& o);

/// The message of the exception in flight, for the user ("out of memory" for std::bad_alloc);
/// call it inside a catch block.
std::string current_error_message();

int run_list(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_show(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_inspect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_conformance_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_train(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_compare(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_problems(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace optreg::cli
