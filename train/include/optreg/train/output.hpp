#pragma once
/// \file
/// The files `optreg train` and `optreg compare` write (metrics, tables, plot data and
/// scripts), written so that no failure goes unnoticed.
///
/// Contract:
/// - Every open, write, flush and close is checked; a failure throws Error whose message begins
///   with the file's path and gives the system's reason ("No space left on device").
/// - What was written before a failure stays in the file: nothing is removed or rewritten.
/// - The path is opened as given, through symbolic links.

#include <cstdint>
#include <string>
#include <string_view>

namespace optreg::train {

/// A text file written through a buffer whose every step is checked.
class OutputFile {
 public:
  /// Opens `path` for writing, creating it; keeps its first `keep` bytes (0: empties it) and
  /// writes after them. Throws Error naming the file.
  explicit OutputFile(std::string path, std::uint64_t keep = 0);
  /// Closes the file; errors are lost here, so call close() to see them.
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::string& path() const noexcept { return path_; }

  /// Appends `text` (written out when the buffer fills, at flush() and at close()).
  OutputFile& operator<<(std::string_view text);
  /// Writes out everything appended so far; throws Error naming the file.
  void flush();
  /// flush(), then closes the file, checking that too; throws Error naming the file.
  void close();

 private:
  [[noreturn]] void fail(const char* what, int error) const;

  std::string path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace optreg::train
