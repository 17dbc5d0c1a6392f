// Files named by users, and the temporaries of writers (see <optreg/detail/files.hpp>).
#include <optreg/detail/files.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
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

namespace {

/// The pid in a temporary's name `PREFIX<pid>-XXXXXX`, or 0 when the name is not of that form.
pid_t pid_of_temporary(const std::string& name, const std::string& prefix) {
  constexpr std::size_t kRandom = 6;  // mkstemp's XXXXXX
  if (name.size() <= prefix.size() + 1 + kRandom || name.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::size_t dash = name.size() - kRandom - 1;
  if (name[dash] != '-' || dash == prefix.size() || dash - prefix.size() > 9) return 0;
  pid_t pid = 0;
  for (std::size_t i = prefix.size(); i < dash; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

/// Locks a fresh temporary for as long as `fd` is open. A file system without flock leaves it
/// unlocked; its writer's pid still protects it while the writer lives.
void lock_temporary(int fd) {
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EINTR) {
  }
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

}  // namespace

int remove_stale_temporaries(const std::string& dir, const std::string& prefix) {
  std::unique_ptr<DIR, DirCloser> d(::opendir(dir.c_str()));
  if (!d) return 0;
  std::vector<std::string> candidates;
  while (const dirent* e = ::readdir(d.get())) {
    if (pid_of_temporary(e->d_name, prefix) != 0) candidates.emplace_back(e->d_name);
  }
  int removed = 0;
  const int dfd = ::dirfd(d.get());
  for (const auto& name : candidates) {
    const pid_t pid = pid_of_temporary(name, prefix);
    // Its writer is alive (EPERM: a process of another user): live, or not ours to judge. This
    // also covers a writer between creating its temporary and locking it.
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    UniqueFd fd(::openat(dfd, name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC));
    struct stat st {};
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) continue;
    // A process holds its lock (a child that inherited the descriptor, or a writer whose pid
    // this process cannot see): live. Removed while locked, so no other cleaner races us.
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      if (::unlinkat(dfd, name.c_str(), 0) == 0) ++removed;
    } else {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::path(dir) / name, ec);
      if (!ec) ++removed;
    }
  }
  return removed;
}

namespace {

std::string temporary_template(const std::string& dir, const std::string& prefix) {
  return (std::filesystem::path(dir) / (prefix + std::to_string(::getpid()) + "-XXXXXX")).string();
}

}  // namespace

int create_locked_temporary(const std::string& dir, const std::string& prefix, std::string& path) {
  remove_stale_temporaries(dir, prefix);
  std::string tmpl = temporary_template(dir, prefix);
  const int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return -1;
  lock_temporary(fd);
  path = tmpl;
  return fd;
}

int create_locked_temporary_folder(const std::string& dir, const std::string& prefix, std::string& path) {
  remove_stale_temporaries(dir, prefix);
  std::string tmpl = temporary_template(dir, prefix);
  if (::mkdtemp(tmpl.data()) == nullptr) return -1;
  const int fd = ::open(tmpl.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    ::rmdir(tmpl.c_str());
    errno = error;
    return -1;
  }
  lock_temporary(fd);
  path = tmpl;
  return fd;
}

}  // namespace optreg::detail
