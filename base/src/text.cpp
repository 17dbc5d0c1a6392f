// The one escaping rule for untrusted text (<optreg/text.hpp>).
#include <optreg/text.hpp>

#include <algorithm>

namespace optreg {

namespace {

/// The length of the character that starts at text[i] when it may reach a terminal as it is:
/// 1 for printable ASCII, 2 to 4 for a valid UTF-8 sequence other than a C1 control; 0 when the
/// byte at text[i] must be escaped.
std::size_t inert_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c >= 0x20 && c < 0x7F) return 1;
  // Lead byte: the sequence length and the allowed range of the second byte (which excludes
  // overlong forms, surrogates and code points above U+10FFFF).
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    if (c == 0xC2) lo = 0xA0;  // C2 80..C2 9F are the C1 controls
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

void append_escaped_byte(std::string& out, unsigned char c) {
  constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

std::string escape(std::string_view text, bool keep_backslash) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = inert_length(text, i);
    if (n == 0 || (text[i] == '\\' && !keep_backslash)) {
      append_escaped_byte(out, static_cast<unsigned char>(text[i]));
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string escape_text(std::string_view text) { return escape(text, false); }

std::string escape_message(std::string_view text) { return escape(text, true); }

std::string unescape_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] == 'x') {
      const int h = hex_digit(text[i + 2]);
      const int l = hex_digit(text[i + 3]);
      if (h >= 0 && l >= 0) {
        out += static_cast<char>(h * 16 + l);
        i += 3;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::string_view text_prefix(std::string_view text, std::size_t max_bytes) noexcept {
  std::size_t cut = 0;
  while (cut < text.size()) {
    const std::size_t n = std::max<std::size_t>(inert_length(text, cut), 1);
    if (cut + n > max_bytes) break;
    cut += n;
  }
  return text.substr(0, cut);
}

std::string quoted_name(std::string_view name) {
  if (name.size() <= kQuotedBytes) return "'" + escape_text(name) + "'";
  return "'" + escape_text(text_prefix(name, kQuotedBytes)) + "'... (" + std::to_string(name.size()) + " bytes)";
}

}  // namespace optreg
