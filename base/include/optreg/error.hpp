#pragma once
/// \file
/// The exception hierarchy. Every error optreg throws derives from optreg::Error, one class
/// per area. Each class keeps the facts a caller needs as fields (the file and line:column of
/// a config, the option and its value, the plugin file, the versions of a checkpoint) and
/// builds its message from them, so that no caller ever reads a fact back out of a message.
///
/// Every class has its key function (the destructor) in optreg::base, so that its type_info is
/// optreg::base's alone. An exception that plugin code throws reaches the host through
/// call_plugin() (<optreg/plugin_call.hpp>), which copies its fields only when its type_info is
/// that one: a plugin built against a header from before the fields existed keeps its class
/// and message, and nothing of it is read past the end of its object.

#include <optreg/export.hpp>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <optreg/text.hpp>

namespace optreg {

/// Base of every exception thrown by optreg. Its message is made inert when it is made
/// (escape_message(): control characters, newlines included, and bytes that are not valid
/// UTF-8 become \xNN), so that names in it cannot drive a terminal and a NUL cannot cut it off.
class OPTREG_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message);
  explicit Error(const char* message);
  Error(const Error&) = default;
  Error& operator=(const Error&) = default;
  ~Error() override;
  /// What is wrong, without the place or the object it is about (a ConfigError's reason has no
  /// "FILE:LINE:COLUMN: "). For an error made from a message alone: the whole message.
  const std::string& reason() const noexcept { return reason_; }

 protected:
  /// `message` is what what() says, built by the derived class from its fields and `reason`.
  Error(const std::string& message, const std::string& reason);

 private:
  std::string reason_;
};

/// For an error about an unsupported version (of a plugin's ABI, of a checkpoint's envelope or
/// layout): the version found and the one expected, the newest this reader supports; -1 each
/// when the error is not about a version.
struct OPTREG_API Versions {
  std::int64_t found = -1;
  std::int64_t expected = -1;
};

/// An error about a file: a plugin library (PluginError) or a checkpoint (CheckpointError).
class OPTREG_API FileError : public Error {
 public:
  ~FileError() override;
  /// The file (empty when the error is about no one file).
  const std::string& path() const noexcept { return path_; }
  /// The version found in the file and the one expected, when that is what is wrong.
  const Versions& versions() const noexcept { return versions_; }

 protected:
  FileError(const std::string& message, const std::string& reason, const std::string& path, Versions versions);

 private:
  std::string path_;
  Versions versions_;
};

/// A plugin file could not be loaded or used.
class OPTREG_API PluginError : public FileError {
 public:
  explicit PluginError(const std::string& message);
  /// "plugin PATH: REASON": the plugin file `path` was refused (for an ABI it does not
  /// support: `versions`, the plugin's ABI major and this host's).
  PluginError(const std::string& path, const std::string& reason, Versions versions = {});
  /// "SUBJECT: REASON", about the plugin file `path`: SUBJECT names what failed ("optimizer
  /// 'x' (plugin PATH)").
  PluginError(const std::string& path, const std::string& subject, const std::string& reason);
  ~PluginError() override;
};

/// Which part of an option an OptionError is about.
enum class OptionPart : std::uint32_t {
  None = 0,   ///< no one option (or not known)
  Name = 1,   ///< the option's name: no such option
  Value = 2,  ///< the option's value: wrong type, out of range, not one of the choices
  Rule = 3,   ///< a rule between options, which this option breaks (nesterov needs momentum)
};

/// The facts of an OptionError.
struct OPTREG_API OptionFacts {
  /// The object and group the options belong to: "optimizer 'sgd', param group 1" (may be empty).
  std::string where;
  /// The option the error is about (empty: none).
  std::string option;
  /// Its value as text, as Value::to_short_string() gives it (empty: none).
  std::string value;
  OptionPart part = OptionPart::None;
  /// The param group (-1: the defaults of every group, or no group).
  std::int64_t group = -1;
  /// What is wrong: "option 'nesterov' = true needs momentum > 0 ...". The message is
  /// "WHERE: REASON", or REASON when `where` is empty.
  std::string reason;
};

/// A hyperparameter was unknown, of the wrong type, out of its allowed range, or broke a rule
/// between options.
class OPTREG_API OptionError : public Error {
 public:
  explicit OptionError(const std::string& message);
  explicit OptionError(const OptionFacts& facts);
  /// A rule between options that the option `option` breaks: "WHERE: REASON", the reason
  /// naming the option (what a plugin's validate() throws).
  OptionError(const std::string& where, const std::string& option, const std::string& reason);
  ~OptionError() override;
  const OptionFacts& facts() const noexcept { return facts_; }
  const std::string& where() const noexcept { return facts_.where; }
  const std::string& option() const noexcept { return facts_.option; }
  const std::string& value() const noexcept { return facts_.value; }
  OptionPart part() const noexcept { return facts_.part; }
  std::int64_t group() const noexcept { return facts_.group; }

 private:
  OptionFacts facts_;
};

/// A configuration file was malformed or asks for something that cannot be: the file and the
/// line:column of what is wrong (1-based) are fields, and the message is "FILE:LINE:COLUMN:
/// REASON" ("FILE: REASON" without a place in the file).
class OPTREG_API ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& message);
  /// An error in the file `file`; `line` 0 for the file as a whole.
  ConfigError(const std::string& file, std::int64_t line, std::int64_t column, const std::string& reason);
  ~ConfigError() override;
  const std::string& file() const noexcept { return file_; }
  /// 1-based; 0 when the error is about the file as a whole.
  std::int64_t line() const noexcept { return line_; }
  std::int64_t column() const noexcept { return column_; }

 private:
  std::string file_;
  std::int64_t line_ = 0;
  std::int64_t column_ = 0;
};

/// Where in a state dict a StateDictError is.
struct OPTREG_API StateDictPlace {
  /// The param group (-1: none).
  std::int64_t group = -1;
  /// The parameter id (-1: none).
  std::int64_t param_id = -1;
  /// The state entry or option (empty: none).
  std::string entry;
};

/// A state dict did not match the optimizer or scheduler it was loaded into.
class OPTREG_API StateDictError : public Error {
 public:
  explicit StateDictError(const std::string& message);
  /// `message` says what differs; `place` where.
  StateDictError(const StateDictPlace& place, const std::string& message);
  ~StateDictError() override;
  const StateDictPlace& place() const noexcept { return place_; }

 private:
  StateDictPlace place_;
};

/// A checkpoint file was unreadable, damaged, of an unsupported version, or did not fit the
/// optimizer it was loaded into.
class OPTREG_API CheckpointError : public FileError {
 public:
  explicit CheckpointError(const std::string& message);
  /// "checkpoint PATH: REASON"; for an unsupported envelope or layout, `versions` is the
  /// version in the file and the newest this reader supports.
  CheckpointError(const std::string& path, const std::string& reason, Versions versions = {});
  ~CheckpointError() override;
};

/// A computation met a value that is not finite where a finite one is required (the total
/// norm of gradients when clipping asks for an error).
class OPTREG_API NonFiniteError : public Error {
 public:
  using Error::Error;
  ~NonFiniteError() override;
};

/// The API was used against its contract (mismatched shapes, a parameter given twice, ...).
class OPTREG_API UsageError : public Error {
 public:
  explicit UsageError(const std::string& message);
  /// About the parameter named `parameter` at `position` (-1: none) of what `where` names
  /// ("optimizer 'adam', param group 1"; may be empty): "WHERE, parameter 'NAME' (position P):
  /// REASON".
  UsageError(const std::string& where, const std::string& parameter, std::int64_t position, const std::string& reason);
  ~UsageError() override;
  /// The parameter the error is about (empty: none) and its position in its group (-1: none).
  const std::string& parameter() const noexcept { return parameter_; }
  std::int64_t position() const noexcept { return position_; }

 private:
  std::string parameter_;
  std::int64_t position_ = -1;
};

}  // namespace optreg
