#pragma once
// Files named by users, and the temporaries of writers. Internal to optreg: shared by the core,
// the training suite and the conformance kit, exported by liboptreg for them, but not installed
// and no part of the API a host may rely on.
//
// Reading: a file a user names (config, checkpoint, dataset, plugin) is opened with O_NONBLOCK
// and checked on the descriptor, so that a FIFO or a device is refused without ever blocking
// and nothing can be swapped in between the check and the read.
//
// Temporaries: a writer's temporary is named PREFIX<pid>-XXXXXX and locked (flock) while its
// writer works on it. A later writer removes those whose process is gone and whose lock nobody
// holds: a process killed mid-write leaves its temporary behind, a live one is never touched.

#include <optreg/export.hpp>
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace optreg::detail {

/// A file descriptor, closed when the object goes.
class OPTREG_API UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  /// Gives up ownership: the caller closes the descriptor.
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  /// Closes the descriptor held, if any, and holds `fd`.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

/// Why a file cannot be read: the errno of a failed open, or the type of what is not a regular file.
struct OPTREG_API FileRefused {
  int error = 0;
  mode_t mode = 0;
  /// The reason as a clause about `subject` ("it", "the config file"): "cannot open it: No
  /// such file or directory", "the config file is a FIFO (named pipe), not a regular file".
  std::string describe(const std::string& subject) const;
};

/// "a folder", "a FIFO (named pipe)", "a character device", ... for the type bits of `mode`.
OPTREG_API std::string file_kind(mode_t mode);

/// Opens `path` for reading without blocking and checks on the descriptor that it is a regular
/// file; throws FileRefused otherwise. `size`, when given, receives the file's size.
OPTREG_API UniqueFd open_regular_file(const std::string& path, std::uint64_t* size = nullptr);

/// Reads what remains of `fd`, at most `limit` bytes; false when there is more. Throws
/// FileRefused with the errno of a failed read.
OPTREG_API bool read_at_most(int fd, std::uint64_t limit, std::string& out);

/// Creates a temporary file `dir/PREFIX<pid>-XXXXXX`, locked while the descriptor is open, after
/// removing the stale temporaries of the same prefix (remove_stale_temporaries()). Returns the
/// descriptor (close-on-exec) and sets `path`; -1 with errno set when it cannot be created.
OPTREG_API int create_locked_temporary(const std::string& dir, const std::string& prefix, std::string& path);

/// Creates a temporary folder `dir/PREFIX<pid>-XXXXXX`, locked while the returned descriptor is
/// open, after removing the stale ones of the same prefix. Returns -1 with errno set on failure.
OPTREG_API int create_locked_temporary_folder(const std::string& dir, const std::string& prefix, std::string& path);

/// Removes every `dir/PREFIX<pid>-XXXXXX` (file or folder) whose process no longer exists and
/// whose lock no process holds; returns how many it removed. Best effort: what cannot be
/// inspected or removed is left as it is.
OPTREG_API int remove_stale_temporaries(const std::string& dir, const std::string& prefix);

}  // namespace optreg::detail
