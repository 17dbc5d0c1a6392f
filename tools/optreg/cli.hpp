#pragma once
// Shared pieces of the optreg command line: argument errors, output helpers, registry setup.

#include <iosfwd>
#include <string>
#include <vector>

#include <optreg/registry.hpp>

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

/// A JSON string literal.
std::string json_string(const std::string& s);
/// A Value as JSON.
std::string json_value(const Value& v);

int run_list(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_show(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_inspect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_conformance_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_train(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_compare(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int run_problems(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace optreg::cli
