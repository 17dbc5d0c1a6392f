// Output files with every write checked: POSIX calls, so that a full disk, a quota or an
// error at close time is seen and reported with the file's name.
#include <optreg/train/output.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <optreg/error.hpp>

namespace optreg::train {

namespace {

/// Writes are collected up to this many bytes, so that streaming a long run costs few calls.
constexpr std::size_t kBufferBytes = 1 << 16;

}  // namespace

OutputFile::OutputFile(std::string path, std::uint64_t keep) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (keep == 0 ? O_TRUNC : 0), 0666);
  if (fd_ < 0) fail("cannot open it for writing", errno);
  if (keep > 0) {
    if (::ftruncate(fd_, static_cast<off_t>(keep)) != 0) fail("cannot cut it to the rows it keeps", errno);
    if (::lseek(fd_, 0, SEEK_END) < 0) fail("cannot write", errno);
  }
  buffer_.reserve(kBufferBytes);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
}

OutputFile& OutputFile::operator<<(std::string_view text) {
  buffer_ += text;
  if (buffer_.size() >= kBufferBytes) flush();
  return *this;
}

void OutputFile::flush() {
  if (fd_ < 0) throw Error(path_ + ": cannot write: the file is closed");
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    // What was written stays; what was not is dropped, so that a later call does not write it
    // after a gap.
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      buffer_.clear();
      fail("cannot write", error);
    }
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void OutputFile::close() {
  flush();
  const int fd = fd_;
  fd_ = -1;
  // close() reports errors of writes that were delayed (NFS, quotas); it is not retried, as
  // Linux frees the descriptor even when it fails.
  if (::close(fd) != 0 && errno != EINTR) fail("cannot write", errno);
}

void OutputFile::fail(const char* what, int error) const {
  throw Error(path_ + ": " + what + ": " + std::strerror(error));
}

}  // namespace optreg::train
