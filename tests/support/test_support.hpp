#pragma once
// Helpers shared by the GoogleTest executables (tests/support is on their include path):
// temporary folders, running commands, files, expected exceptions (the in-tree plugins are in
// registry_fixture.hpp).
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/parallel.hpp>

// AddressSanitizer reserves terabytes of address space, so RLIMIT_AS (ulimit -v) cannot cap a
// build with it: tests of memory limits skip themselves there.
#if defined(__SANITIZE_ADDRESS__)
#define OPTREG_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OPTREG_TEST_ASAN 1
#endif
#endif
#ifndef OPTREG_TEST_ASAN
#define OPTREG_TEST_ASAN 0
#endif

namespace optreg_test {

/// A fresh folder under the system's temporary folder, removed with everything in it (also when
/// a test took the owner's rights away from it to make writes there fail).
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "optreg-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// The exit status and output (stdout and stderr together) of a shell command.
struct CommandRun {
  int status = -1;
  std::string out;
};

inline CommandRun run_command(const std::string& command) {
  CommandRun r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe) != nullptr) r.out += buf.data();
  const int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

/// Runs `f` in a forked child that is killed after `seconds` (a hang fails the test instead of
/// stopping the suite) and, when `extra_bytes` is not 0, may map at most that many bytes more
/// than this process has mapped now. The status is 0 when `f` returned, 1 when it threw (`out`
/// is then what it threw), -1 when the child was killed.
inline CommandRun run_in_child(const std::function<void()>& f, std::size_t extra_bytes = 0, unsigned seconds = 60) {
  CommandRun r;
  std::size_t mapped = 0;
  {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmSize:", 0) == 0) mapped = std::stoull(line.substr(7)) * 1024;
    }
  }
  int fds[2];
  if (::pipe(fds) != 0) return r;
  const pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(seconds);
    if (extra_bytes != 0) {
      const rlimit limit{mapped + extra_bytes, mapped + extra_bytes};
      if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(3);
    }
    std::string message;
    int code = 0;
    try {
      f();
    } catch (const std::exception& e) {
      message = e.what();
      code = 1;
    }
    for (std::size_t done = 0; done < message.size();) {
      const ssize_t w = ::write(fds[1], message.data() + done, message.size() - done);
      if (w <= 0) break;
      done += static_cast<std::size_t>(w);
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  char buf[4096];
  for (ssize_t got; (got = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    r.out.append(buf, static_cast<std::size_t>(got));
  }
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

/// The pid of a process that has ended (a child, started and reaped).
inline pid_t ended_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return pid;
}

/// A shell word: 'text' with embedded quotes escaped.
inline std::string shell_word(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Sets the thread count of the shared pool, and restores the default when the test ends.
struct ThreadCount {
  explicit ThreadCount(std::size_t n) { optreg::set_num_threads(n); }
  ~ThreadCount() { optreg::set_num_threads(0); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
};

/// The value of the live-object counter `symbol` that the loaded plugin `library` exports: -1 when
/// the library is not loaded, -2 when it exports no such counter.
inline int live_count(const char* library, const char* symbol) {
  void* handle = ::dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return -1;
  const auto* counter = static_cast<const std::atomic<int>*>(::dlsym(handle, symbol));
  const int n = counter != nullptr ? counter->load() : -2;
  ::dlclose(handle);
  return n;
}

/// The canonical absolute form of a path, as the registry names files in messages.
inline std::string canonical(const std::string& path) { return std::filesystem::canonical(path).string(); }

/// The message of the `E` that `f` throws; a test failure when it throws nothing or another type.
template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw another exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "threw nothing";
  return {};
}

/// Whether `f` throws an `E` whose message holds `words` (the message is shown when not).
template <typename E>
::testing::AssertionResult throws_with(const std::function<void()>& f, const std::string& words) {
  const std::string m = message_of<E>(f);
  if (m.find(words) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the message is: " << m;
}

/// The message of the optreg::Error that `f` throws, or "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const optreg::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace optreg_test
