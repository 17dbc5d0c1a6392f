#include "cli.hpp"
#include "isolate.hpp"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <new>

namespace optreg::cli {

namespace {

/// CLI11's help in the tool's layout: the usage line first, then what the command does, its
/// arguments, commands and options, and what follows them.
class HelpFormatter final : public CLI::Formatter {
 public:
  HelpFormatter(CommandHelp help, std::size_t width) : help_(std::move(help)) {
    column_width(width);
    label("Positionals", "arguments");
  }

  std::string make_usage(const CLI::App* /*app*/, std::string /*name*/) const override {
    return "usage: " + help_.usage + "\n";
  }

  /// A positional is explained in its line; an option shows the value it takes (SECONDS).
  std::string make_option_opts(const CLI::Option* opt) const override {
    return opt->get_positional() || opt->get_type_size() == 0 ? std::string() : " " + opt->get_type_name();
  }

  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
    if (mode == CLI::AppFormatMode::Sub) return make_expanded(app);
    std::string s = make_usage(app, name);
    if (!help_.about.empty()) s += "\n" + help_.about + "\n";
    s += make_positionals(app) + make_subcommands(app, mode) + make_groups(app, mode);
    return s + (help_.footer.empty() ? "" : "\n" + help_.footer + "\n");
  }

 private:
  CommandHelp help_;
};

/// The column where the meaning of an option starts in a command's help.
constexpr std::size_t kOptionColumn = 26;
/// The column where the summary of a command starts in the tool's help.
constexpr std::size_t kCommandColumn = 15;

}  // namespace

CLI::App& add_command(CLI::App& root, const std::string& name, const CommandHelp& help) {
  CLI::App& command = *root.add_subcommand(name, help.summary);
  command.formatter(std::make_shared<HelpFormatter>(help, kOptionColumn));
  command.group(help.summary.empty() ? "" : "commands");  // without a summary: internal, not listed
  command.option_defaults()->group("options");
  command.set_help_flag("-h,--help", "this help");
  command.allow_extras();
  return command;
}

void add_positional(CLI::App& command, const std::string& name, std::string& value, const std::string& meaning) {
  command.add_option(name, value, meaning);
}

void add_plugin_options(CLI::App& command, PluginOptions& out) {
  command.add_option("--plugin-path", out.paths, "load a plugin folder or file first (repeatable)")
      ->type_name("DIR|FILE")
      ->allow_extra_args(false);
  command.add_flag_callback("--no-default-path", [&out] { out.default_path = false; },
                            "do not search OPTREG_PLUGIN_PATH and the installed plugin folder");
}

void add_json_flag(CLI::App& command, bool& json, const std::string& meaning) { command.add_flag("--json", json, meaning); }

std::vector<std::string> extra_arguments(const CLI::App& command) {
  std::vector<std::string> extra = command.remaining();
  // CLI11 keeps the "--" of a command that leaves arguments to it among them.
  extra.erase(std::remove(extra.begin(), extra.end(), "--"), extra.end());
  return extra;
}

void reject_extras(const CLI::App& command, const std::string& prefix) {
  const std::vector<std::string> extra = extra_arguments(command);
  if (!extra.empty()) throw CommandLineError{prefix + " '" + extra.front() + "'"};
}

std::string root_help(const CLI::App& root) {
  return root.get_formatter()->make_help(&root, root.get_name(), CLI::AppFormatMode::Normal);
}

void set_root_help(CLI::App& root, const CommandHelp& help) {
  root.formatter(std::make_shared<HelpFormatter>(help, kCommandColumn));
}

namespace {

/// Loads one plugin file after a child process loaded it alone without crashing or hanging.
void load_isolated(Registry& registry, const std::string& file, double timeout, std::vector<Refusal>& refused) {
  const ChildRun run = run_self({kLoadProbeCommand, "--", file}, timeout);  // "--": any file name is a file
  const std::vector<std::string> report = run.exited && run.exit_status == kOk && !run.out.empty()
                                              ? parse_report_line(run.out.substr(0, run.out.find('\n')))
                                              : std::vector<std::string>{};
  if (report.size() == 2 && report[0] == "loaded") {
    LoadResult r = registry.try_load_file(file);
    if (!r.ok) refused.push_back(r.refusal);
  } else if (report.size() == 3 && report[0] == "refused") {
    refused.push_back(Refusal{report[1], report[2]});
  } else {
    std::error_code ec;
    const std::filesystem::path canonical = std::filesystem::canonical(file, ec);
    refused.push_back(Refusal{ec ? file : canonical.string(),
                              "loading it in a separate process failed: the process " + describe_end(run, timeout)});
  }
}

/// Loads one plugin folder or file, in-process or isolated.
void load_path(Registry& registry, const std::string& path, const PluginOptions& options, std::vector<Refusal>& refused) {
  std::error_code ec;
  const bool folder = std::filesystem::is_directory(path, ec);
  if (!options.isolate) {
    if (folder) {
      auto r = registry.load_directory(path);
      refused.insert(refused.end(), r.begin(), r.end());
    } else {
      LoadResult r = registry.try_load_file(path);
      if (!r.ok) refused.push_back(r.refusal);
    }
    return;
  }
  const std::vector<std::string> files = folder ? Registry::plugin_files(path) : std::vector<std::string>{path};
  for (const auto& f : files) load_isolated(registry, f, options.timeout, refused);
}

}  // namespace

std::vector<Refusal> load_plugins(Registry& registry, const PluginOptions& options) {
  std::vector<Refusal> refused;
  for (const auto& p : options.paths) load_path(registry, p, options, refused);
  if (options.default_path) {
    for (const auto& dir : Registry::default_search_path()) {
      std::error_code ec;
      if (std::filesystem::is_directory(dir, ec)) load_path(registry, dir, options, refused);
    }
  }
  return refused;
}

std::string json_error(const std::string& message) { return json_line(Json{{"error", json_message(message)}}); }

Json refusals_json(const std::vector<Refusal>& refused) {
  Json list = Json::array();
  for (const auto& r : refused) list.push_back(Json{{"path", json_text(r.path)}, {"reason", json_message(r.reason)}});
  return list;
}

std::string current_error_message() {
  try {
    throw;
  } catch (const CommandLineError& e) {
    return e.message;
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& e) {
    // An optreg::Error, or such as a std::filesystem::filesystem_error, which names the path
    // and the reason.
    return e.what();
  } catch (...) {
    return "an unknown error";
  }
}

}  // namespace optreg::cli
