#pragma once
// Allocations sized by what a user wrote (problem options, batch sizes, dataset headers): a
// failed one is reported with the setting or file that asked for it and the bytes it needs.

#include <cstdio>
#include <string>

namespace optreg::train {

/// "7394640080 bytes (6.9 GiB)", "160000000 bytes (152.6 MiB)".
inline std::string bytes_text(double bytes) {
  constexpr double kMiB = 1024.0 * 1024.0;
  char text[64];
  if (bytes >= 1024.0 * kMiB) {
    std::snprintf(text, sizeof text, "%.0f bytes (%.1f GiB)", bytes, bytes / (1024.0 * kMiB));
  } else {
    std::snprintf(text, sizeof text, "%.0f bytes (%.1f MiB)", bytes, bytes / kMiB);
  }
  return text;
}

/// "out of memory: WHAT asks for BYTES", the end of such a message.
inline std::string out_of_memory(const std::string& what, double bytes) {
  return "out of memory: " + what + " asks for " + bytes_text(bytes);
}

}  // namespace optreg::train
