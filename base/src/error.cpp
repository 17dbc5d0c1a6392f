// The error classes: their messages, built from their fields, and their key functions.
#include <optreg/error.hpp>

namespace optreg {

namespace {
std::string joined(const std::string& where, const std::string& reason) {
  return where.empty() ? reason : where + ": " + reason;
}
}  // namespace

Error::Error(const std::string& message) : Error(message, message) {}
Error::Error(const char* message) : Error(std::string(message)) {}
Error::Error(const std::string& message, const std::string& reason)
    : std::runtime_error(escape_message(message)), reason_(escape_message(reason)) {}
Error::~Error() = default;

FileError::FileError(const std::string& message, const std::string& reason, const std::string& path,
                     Versions versions)
    : Error(message, reason), path_(path), versions_(versions) {}
FileError::~FileError() = default;

PluginError::PluginError(const std::string& message) : FileError(message, message, "", {}) {}
PluginError::PluginError(const std::string& path, const std::string& reason, Versions versions)
    : FileError(joined("plugin " + path, reason), reason, path, versions) {}
PluginError::PluginError(const std::string& path, const std::string& subject, const std::string& reason)
    : FileError(joined(subject, reason), reason, path, {}) {}
PluginError::~PluginError() = default;

OptionError::OptionError(const std::string& message) : Error(message) { facts_.reason = reason(); }
OptionError::OptionError(const OptionFacts& facts) : Error(joined(facts.where, facts.reason), facts.reason), facts_(facts) {}
OptionError::OptionError(const std::string& where, const std::string& option, const std::string& reason)
    : OptionError(OptionFacts{where, option, {}, OptionPart::Rule, -1, reason}) {}
OptionError::~OptionError() = default;

ConfigError::ConfigError(const std::string& message) : Error(message) {}
ConfigError::ConfigError(const std::string& file, std::int64_t line, std::int64_t column, const std::string& reason)
    : Error(line > 0 ? file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + reason
                     : joined(file, reason),
            reason),
      file_(file),
      line_(line),
      column_(line > 0 ? column : 0) {}
ConfigError::~ConfigError() = default;

StateDictError::StateDictError(const std::string& message) : Error(message) {}
StateDictError::StateDictError(const StateDictPlace& place, const std::string& message) : Error(message), place_(place) {}
StateDictError::~StateDictError() = default;

CheckpointError::CheckpointError(const std::string& message) : FileError(message, message, "", {}) {}
CheckpointError::CheckpointError(const std::string& path, const std::string& reason, Versions versions)
    : FileError("checkpoint " + path + ": " + reason, reason, path, versions) {}
CheckpointError::~CheckpointError() = default;

NonFiniteError::~NonFiniteError() = default;

UsageError::UsageError(const std::string& message) : Error(message) {}
UsageError::UsageError(const std::string& where, const std::string& parameter, std::int64_t position,
                       const std::string& reason)
    : Error((where.empty() ? std::string() : where + ", ") + "parameter " + quoted_name(parameter) +
                (position < 0 ? std::string() : " (position " + std::to_string(position) + ")") + ": " + reason,
            reason),
      parameter_(parameter),
      position_(position) {}
UsageError::~UsageError() = default;

}  // namespace optreg
