#pragma once
/// \file
/// Untrusted text made inert. Names, labels, paths, descriptions and metadata come from
/// configs, checkpoints, plugins and file names; before they reach a terminal, a message or
/// JSON they go through one rule: printable ASCII and valid UTF-8 stay as they are, except the
/// C1 controls U+0080..U+009F; every other byte (control characters, newline and tab included,
/// DEL, bytes that are not valid UTF-8) is written \xNN, two lower-case hex digits.

#include <optreg/export.hpp>
#include <cstddef>
#include <string>
#include <string_view>

namespace optreg {

/// Data text made inert and reversible: the rule above, and the backslash written \x5c, so
/// that every \xNN in the result stands for one byte of `text` (unescape_text() gives it back).
OPTREG_API std::string escape_text(std::string_view text);

/// The bytes that escape_text() was given: every \xNN back to its byte.
OPTREG_API std::string unescape_text(std::string_view text);

/// Message text made inert: the rule above, but a backslash stays, so that a message that
/// holds another one, already inert, is not escaped twice (escape_message is idempotent).
/// Every optreg::Error message goes through it when the error is made.
OPTREG_API std::string escape_message(std::string_view text);

/// The longest start of `text` of at most `max_bytes` bytes that does not split a valid UTF-8
/// character.
OPTREG_API std::string_view text_prefix(std::string_view text, std::size_t max_bytes) noexcept;

/// How many bytes of a name quoted_name() shows.
inline constexpr std::size_t kQuotedBytes = 64;

/// A name for a message: 'name', escaped as by escape_text(); a name longer than
/// kQuotedBytes is cut there, at a character boundary, and followed by its length:
/// 'aaaa'... (70000 bytes). A forged name of any size gives a message of bounded size.
OPTREG_API std::string quoted_name(std::string_view name);

}  // namespace optreg
