#pragma once
/// \file
/// The exception hierarchy. Every error optreg throws derives from optreg::Error,
/// one class per area, and its message names what was wrong and where.

#include <optreg/export.hpp>
#include <stdexcept>
#include <string>

#include <optreg/text.hpp>

namespace optreg {

/// Base of every exception thrown by optreg. Its message is made inert when it is made
/// (escape_message(): control characters, newlines included, and bytes that are not valid
/// UTF-8 become \xNN), so that names in it cannot drive a terminal and a NUL cannot cut it off.
class OPTREG_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(escape_message(message)) {}
  explicit Error(const char* message) : std::runtime_error(escape_message(message)) {}
};

/// A plugin file could not be loaded or used (path and reason in the message).
class OPTREG_API PluginError : public Error {
 public:
  using Error::Error;
};

/// A hyperparameter was unknown, of the wrong type, or out of its allowed range.
class OPTREG_API OptionError : public Error {
 public:
  using Error::Error;
};

/// A configuration file was malformed (file and line:column in the message).
class OPTREG_API ConfigError : public Error {
 public:
  using Error::Error;
};

/// A state dict did not match the optimizer it was loaded into.
class OPTREG_API StateDictError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint file was unreadable, damaged or of an unsupported version.
class OPTREG_API CheckpointError : public Error {
 public:
  using Error::Error;
};

/// A computation met a value that is not finite where a finite one is required (the total
/// norm of gradients when clipping asks for an error).
class OPTREG_API NonFiniteError : public Error {
 public:
  using Error::Error;
};

/// The API was used against its contract (mismatched shapes, a parameter given twice, ...).
class OPTREG_API UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace optreg
