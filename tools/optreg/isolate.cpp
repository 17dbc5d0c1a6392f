// Plugin code in a child process: spawning this executable, collecting its reports, and the
// internal commands that run in the child.
#include "isolate.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

#include <optreg/conformance.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/text.hpp>

#include "cli.hpp"

extern char** environ;

namespace optreg::cli {

namespace {

/// What the parent keeps of a child's output: its reports are small, and a plugin that floods its
/// output must not exhaust the tool's memory.
constexpr std::size_t kMaxOutput = std::size_t{64} << 20;
constexpr std::size_t kMaxErrorTail = 4096;

std::string self_executable() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw Error(std::string("cannot find the optreg executable (/proc/self/exe): ") + std::strerror(errno));
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

/// Closes a descriptor once, on scope exit too.
struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("cannot create a pipe: ") + std::strerror(errno));
  read_end.fd = fds[0];
  write_end.fd = fds[1];
}

/// Reads what `fd` has into `to` (up to `limit` bytes kept; `keep_tail` keeps the last ones);
/// closes it at end of file.
void drain(Fd& fd, std::string& to, std::size_t limit, bool keep_tail) {
  char buf[8192];
  const ssize_t n = ::read(fd.fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    fd.reset();
    return;
  }
  to.append(buf, static_cast<std::size_t>(n));
  if (to.size() > limit) {
    if (keep_tail) {
      to.erase(0, to.size() - limit);
    } else {
      to.resize(limit);
    }
  }
}

std::string last_line(const std::string& text) {
  std::size_t end = text.size();
  while (end > 0) {
    const std::size_t begin = text.rfind('\n', end - 1);
    const std::size_t start = begin == std::string::npos ? 0 : begin + 1;
    std::string line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) return line;
    if (begin == std::string::npos) break;
    end = begin;
  }
  return {};
}

/// A line from a child, fit for a message: inert, and at most 200 bytes of it.
std::string printable_line(const std::string& s) {
  constexpr std::size_t kShown = 200;
  const std::string_view shown = text_prefix(s, kShown);
  return escape_text(shown) + (shown.size() < s.size() ? "..." : "");
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

}  // namespace

ChildRun run_self(const std::vector<std::string>& args, double timeout_seconds) {
  const std::string exe = self_executable();
  std::vector<std::string> argv_text;
  argv_text.push_back(exe);
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  Fd out_read, out_write, err_read, err_write;
  make_pipe(out_read, out_write);
  make_pipe(err_read, err_write);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_write.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_write.fd, STDERR_FILENO);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error("cannot start " + exe + ": " + std::strerror(rc));
  out_write.reset();
  err_write.reset();

  ChildRun run;
  std::string err_tail;
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds));
  int status = 0;
  bool reaped = false;
  while (true) {
    if (!reaped) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      reaped = w == pid;
    }
    if (reaped && out_read.fd < 0 && err_read.fd < 0) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      if (!reaped) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        run.timed_out = true;
      }
      break;
    }
    pollfd fds[2];
    nfds_t n = 0;
    for (Fd* fd : {&out_read, &err_read}) {
      if (fd->fd >= 0) fds[n++] = pollfd{fd->fd, POLLIN, 0};
    }
    // Poll in short slices: a child that closed its output may still be running.
    const int slice = static_cast<int>(std::min<long long>(left, n == 0 || reaped ? 10 : 50));
    if (n == 0) {
      ::poll(nullptr, 0, slice);
      continue;
    }
    if (::poll(fds, n, slice) <= 0) continue;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == out_read.fd) {
        drain(out_read, run.out, kMaxOutput, false);
      } else {
        drain(err_read, err_tail, kMaxErrorTail, true);
      }
    }
  }
  if (run.timed_out) {
    run.signal = SIGKILL;
  } else if (WIFEXITED(status)) {
    run.exited = true;
    run.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    run.signal = WTERMSIG(status);
  }
  run.last_error_line = printable_line(last_line(err_tail));
  return run;
}

std::string describe_end(const ChildRun& run, double timeout_seconds) {
  std::string s;
  if (run.timed_out) {
    s = "did not finish within " + seconds_text(timeout_seconds) + " s and was killed";
  } else if (run.exited) {
    s = "exited with status " + std::to_string(run.exit_status);
  } else {
    const char* abbrev = ::sigabbrev_np(run.signal);
    const char* what = ::sigdescr_np(run.signal);
    s = "was killed by signal " + std::to_string(run.signal) + " (" + (abbrev ? "SIG" + std::string(abbrev) : "unknown") +
        (what ? std::string(": ") + what : std::string()) + ")";
  }
  if (!run.last_error_line.empty()) s += "; its last line on standard error: " + run.last_error_line;
  return s;
}

std::string report_line(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += '\t';
    for (char c : fields[i]) {
      switch (c) {
        case '\\': out += "\\\\"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        default: out += c;
      }
    }
  }
  return out + '\n';
}

std::vector<std::string> parse_report_line(const std::string& line) {
  std::vector<std::string> fields(1);
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\t') {
      fields.emplace_back();
    } else if (c == '\\' && i + 1 < line.size()) {
      const char e = line[++i];
      fields.back() += e == 't' ? '\t' : e == 'n' ? '\n' : e;
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

double parse_timeout(const std::string& option, const std::string& text) {
  double d = 0;
  std::size_t used = 0;
  try {
    d = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !(d > 0) || !std::isfinite(d) || d > 1e6) {
    throw CommandLineError{option + " takes a number of seconds between 0 and 1e6, not '" + text + "'"};
  }
  return d;
}

namespace {

/// The descriptor reports go to: the child's original standard output. Plugin code may print;
/// what it prints goes to standard error instead, so that it cannot break a report line.
int g_report_fd = STDOUT_FILENO;

void reserve_stdout_for_reports() {
  std::fflush(stdout);
  const int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  if (fd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    throw Error(std::string("cannot set up the report channel: ") + std::strerror(errno));
  }
  g_report_fd = fd;
}

/// Writes one report line at once, so that it reaches the parent even if the next step crashes.
void emit(const std::vector<std::string>& fields) {
  const std::string line = report_line(fields);
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(g_report_fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(std::string("cannot write a report line: ") + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

int run_load_probe(const std::string& file) {
  reserve_stdout_for_reports();
  Registry registry;
  const LoadResult r = registry.try_load_file(file);
  if (r.ok) {
    emit({"loaded", file});
  } else {
    emit({"refused", r.refusal.path, r.refusal.reason});
  }
  return kOk;
}

int run_conformance_child(const std::string& file) {
  reserve_stdout_for_reports();
  ConformanceObserver observer;
  observer.started = [](const std::string& subject, const std::string& check) { emit({"started", subject, check}); };
  observer.finished = [](const ConformanceResult& r) {
    emit({"result", to_string(r.status), r.kind == ConformanceResult::Kind::Scheduler ? "scheduler" : "optimizer",
          r.optimizer, r.check, r.detail});
  };
  run_conformance(file, observer);
  return kOk;
}

namespace {

/// Adds internal command `name`, which takes one plugin file and runs `run` on it.
void add_internal_command(CLI::App& root, const char* name, int (*run)(const std::string&), int& status) {
  auto file = std::make_shared<std::string>();
  CLI::App& command = add_command(root, name, CommandHelp{std::string("optreg ") + name + " PLUGIN", "", "", ""});
  add_positional(command, "PLUGIN", *file, "the plugin file");
  command.callback([file, name, run, &command, &status] {
    if (file->empty() || !extra_arguments(command).empty()) throw CommandLineError{std::string("optreg ") + name + ": one plugin file"};
    status = run(*file);
  });
}

}  // namespace

void add_internal_commands(CLI::App& root, int& status) {
  add_internal_command(root, kLoadProbeCommand, run_load_probe, status);
  add_internal_command(root, kConformanceChildCommand, run_conformance_child, status);
}

}  // namespace optreg::cli
