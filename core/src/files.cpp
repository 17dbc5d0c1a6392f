// Files named by users (see files.hpp).
#include "files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace optreg::detail {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISREG(mode)) return "a regular file";
  return "of an unknown type";
}

std::string FileRefused::describe(const std::string& subject) const {
  if (error == ELOOP) return subject + " is a symbolic link loop (" + std::strerror(error) + ")";
  if (error != 0) return "cannot open " + subject + ": " + std::strerror(error);
  return subject + " is " + file_kind(mode) + ", not a regular file";
}

UniqueFd open_regular_file(const std::string& path, std::uint64_t* size) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0) {
    const int error = errno;
    // A socket cannot be opened at all (ENXIO): say what it is rather than "no such device".
    if (error == ENXIO && ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) throw FileRefused{0, st.st_mode};
    throw FileRefused{error, 0};
  }
  if (::fstat(fd.get(), &st) != 0) throw FileRefused{errno, 0};
  if (!S_ISREG(st.st_mode)) throw FileRefused{0, st.st_mode};
  // Reads of a regular file never block; reading then behaves exactly as without the flag.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  if (size != nullptr) *size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

bool read_at_most(int fd, std::uint64_t limit, std::string& out) {
  constexpr std::size_t kChunk = 1 << 16;
  std::uint64_t got = 0;
  std::vector<char> buffer(kChunk);
  for (;;) {
    // One byte past the limit tells "exactly at the limit" from "more".
    const std::uint64_t want = std::min<std::uint64_t>(kChunk, limit + 1 - got);
    const ssize_t r = ::read(fd, buffer.data(), static_cast<std::size_t>(want));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw FileRefused{errno, 0};
    if (r == 0) return true;
    got += static_cast<std::uint64_t>(r);
    if (got > limit) return false;
    out.append(buffer.data(), static_cast<std::size_t>(r));
  }
}

}  // namespace optreg::detail
