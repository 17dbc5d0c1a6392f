// Checkpoint files: bit-exact round trips, atomic replacement (a failed write, a full disk or a
// process killed mid-write leaves the previous file intact), and save_optimizer/load_optimizer.
#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

using optreg::Checkpoint;
using optreg::CheckpointError;
using optreg::OptimizerPtr;
using optreg::Options;
using optreg::Parameter;
using optreg::ParamGroupSpec;
using optreg::Tensor;
using optreg::Value;
using optreg_test::same_bits;
using optreg_test::snapshot;
using optreg_test::step_with_gradients;

namespace {

double nan_with_payload() {
  const std::uint64_t bits = 0x7ff800000000abcdULL;
  double d = 0;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

float float_nan_with_payload() {
  const std::uint32_t bits = 0xffc01234U;  // a negative quiet NaN with a payload
  float f = 0;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// A state dict as plain data, with every kind of state entry and awkward float values.
optreg::StateDict awkward_state_dict() {
  optreg::StateDict sd;
  sd.optimizer = "custom";
  sd.plugin_version = "2.3.4-rc1";
  sd.param_groups.push_back({{{"lr", 0.1}, {"betas", Value({0.9, 0.999})}, {"flag", true}}, {0, 1}});
  sd.param_groups.push_back({{{"lr", std::numeric_limits<double>::denorm_min()}, {"steps", std::int64_t{-7}}}, {2}});
  optreg::ParamState s0;
  s0.add_tensor("buf", Tensor({2, 2}, {1.5F, -0.0F, std::numeric_limits<float>::infinity(), float_nan_with_payload()}));
  s0.add_scalar("step", std::numeric_limits<std::int64_t>::min());
  s0.add_scalar("scale", nan_with_payload());
  sd.state.emplace(0, std::move(s0));
  optreg::ParamState s1;
  s1.add_tensor("scalar_tensor", Tensor(optreg::Shape{}, {std::numeric_limits<float>::denorm_min()}));
  s1.add_tensor("empty", Tensor(optreg::Shape{0}));
  s1.add_scalar("step", std::int64_t{42});
  sd.state.emplace(1, std::move(s1));
  sd.state.emplace(2, optreg::ParamState{});
  return sd;
}

/// Metadata of every Value type, with infinities, a NaN, an empty string and lists.
Options awkward_metadata() {
  return {{"bool", true},
          {"int", std::int64_t{-9007199254740993LL}},
          {"float", 0.1},
          {"inf", std::numeric_limits<double>::infinity()},
          {"minus_inf", -std::numeric_limits<double>::infinity()},
          {"nan", nan_with_payload()},
          {"minus_zero", -0.0},
          {"empty_string", ""},
          {"string", "run \"a\"\n\xce\xbb"},
          {"list", Value({1.5, -0.0, std::numeric_limits<double>::infinity(), nan_with_payload()})},
          {"empty_list", Value(std::vector<double>{})}};
}

/// A checkpoint of about `floats` * 4 bytes.
Checkpoint big_checkpoint(std::size_t floats, float fill) {
  Checkpoint c;
  c.optimizer.optimizer = "sgd";
  c.optimizer.plugin_version = "1.0.0";
  c.parameters.push_back({"big", Tensor({static_cast<std::int64_t>(floats)}, fill)});
  c.metadata = {{"fill", static_cast<double>(fill)}};
  return c;
}

/// The names of the entries of a folder.
std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// The temporaries of `target` in `dir`, sorted.
std::vector<std::string> temporaries_of(const fs::path& dir, const std::string& target) {
  std::vector<std::string> out;
  for (const auto& name : entries_of(dir)) {
    if (name.rfind("." + target + ".tmp-", 0) == 0) out.push_back(name);
  }
  return out;
}

bool has_temp_file(const fs::path& dir, const std::string& target) { return !temporaries_of(dir, target).empty(); }

/// Forks a child that saves `c` to `path` and exits (with 2 when the save threw); its pid.
pid_t save_in_child(const std::string& path, const Checkpoint& c) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      optreg::save_checkpoint(path, c);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  return pid;
}

class CheckpointFile : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  template <typename F>
  static std::string checkpoint_error_of(F&& f) {
    try {
      f();
    } catch (const CheckpointError& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("(not a CheckpointError) ") + e.what();
    }
    return "(no error)";
  }

  optreg_test::TempDir temp_;
  fs::path dir_ = temp_.path();
};

}  // namespace

// ---------------------------------------------------------------------------------- round trips

TEST_F(CheckpointFile, StateDictRoundTripsBitForBit) {
  const optreg::StateDict sd = awkward_state_dict();
  optreg::save_checkpoint(path("sd.ckpt"), sd);
  const Checkpoint back = optreg::read_checkpoint(path("sd.ckpt"));
  EXPECT_TRUE(same_bits(back.optimizer, sd));
  EXPECT_TRUE(back.parameters.empty());
  EXPECT_TRUE(back.metadata.empty());
}

TEST_F(CheckpointFile, CheckpointWithParametersAndMetadataRoundTripsBitForBit) {
  Checkpoint c;
  c.optimizer = awkward_state_dict();
  c.parameters.push_back({"w", Tensor({2, 3}, {0.1F, -0.0F, 3e38F, -std::numeric_limits<float>::infinity(),
                                               float_nan_with_payload(), 1e-45F})});
  c.parameters.push_back({"", Tensor(optreg::Shape{})});
  c.parameters.push_back({"empty", Tensor(optreg::Shape{0, 4})});
  c.metadata = awkward_metadata();
  optreg::save_checkpoint(path("full.ckpt"), c);
  optreg::CheckpointInfo info;
  const Checkpoint back = optreg::read_checkpoint(path("full.ckpt"), &info);
  EXPECT_TRUE(same_bits(back, c));
  EXPECT_EQ(info.file_size, fs::file_size(path("full.ckpt")));
  EXPECT_EQ(info.payload_length + 32, info.file_size);
  EXPECT_TRUE(std::isnan(back.metadata.at("nan").as_float()));
  EXPECT_EQ(back.metadata.at("empty_string").as_string(), "");
  EXPECT_TRUE(back.metadata.at("empty_list").as_float_list().empty());
}

TEST_F(CheckpointFile, EncodedInMemoryAreTheBytesOfTheFileAndParseBack) {
  Checkpoint c;
  c.optimizer = awkward_state_dict();
  c.parameters.push_back({"w", Tensor({3}, {0.5F, -0.0F, 1e-45F})});
  c.metadata = awkward_metadata();
  const std::string bytes = optreg::encode_checkpoint(c);
  optreg::save_checkpoint(path("same.ckpt"), c);
  EXPECT_EQ(bytes, optreg_test::read_file(path("same.ckpt")));
  optreg::CheckpointInfo info;
  const Checkpoint back = optreg::parse_checkpoint(bytes.data(), bytes.size(), "memory", &info);
  EXPECT_TRUE(same_bits(back, c));
  EXPECT_EQ(info.payload_length + 32, bytes.size());
  std::string damaged = bytes;
  damaged[bytes.size() / 2] = static_cast<char>(damaged[bytes.size() / 2] ^ 0x5A);
  EXPECT_THROW(optreg::parse_checkpoint(damaged.data(), damaged.size(), "memory"), optreg::CheckpointError);
}

TEST_F(CheckpointFile, TensorsOfEveryDTypeRoundTripWithTheirDType) {
  Checkpoint c;
  c.optimizer = awkward_state_dict();
  const Tensor source({5}, {0.1F, -0.0F, 3e38F, 1e-45F, -2.5F});
  for (optreg::DType d : {optreg::DType::Float32, optreg::DType::Float64, optreg::DType::BFloat16, optreg::DType::Float16}) {
    c.parameters.push_back({optreg::dtype_name(d), source.to(d)});
  }
  c.parameters[1].value.data_as<double>()[0] = 0.1;  // not a float32 value: only float64 holds it
  optreg::save_checkpoint(path("dtypes.ckpt"), c);
  const Checkpoint back = optreg::read_checkpoint(path("dtypes.ckpt"));
  EXPECT_TRUE(same_bits(back, c));
  ASSERT_EQ(back.parameters.size(), 4U);
  EXPECT_EQ(back.parameters[1].value.dtype(), optreg::DType::Float64);
  EXPECT_EQ(back.parameters[1].value.data_as<double>()[0], 0.1);
  EXPECT_EQ(back.parameters[2].value.dtype(), optreg::DType::BFloat16);
  EXPECT_EQ(back.parameters[3].value.dtype(), optreg::DType::Float16);
}

// ---------------------------------------------------------------------------------- atomic writes

namespace {

/// Runs `child` in a forked process after `prepare` (which returns false when it cannot set the
/// process up); the child reports the CheckpointError message through a pipe. Returns the
/// child's exit status (0: a CheckpointError, 1: no error, 2: another exception, 3: `prepare`
/// failed) and the message.
template <typename P, typename F>
std::pair<int, std::string> in_child(P&& prepare, F&& child) {
  int fds[2];
  if (::pipe(fds) != 0) return {-1, std::strerror(errno)};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    int code = 3;
    std::string message;
    if (prepare()) {
      try {
        child();
        code = 1;
      } catch (const CheckpointError& e) {
        code = 0;
        message = e.what();
      } catch (...) {
        code = 2;
      }
    }
    const char* p = message.data();
    std::size_t left = message.size();
    while (left > 0) {
      const ssize_t w = ::write(fds[1], p, left);
      if (w <= 0) break;
      p += w;
      left -= static_cast<std::size_t>(w);
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  std::string message;
  char buf[512];
  for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    message.append(buf, static_cast<std::size_t>(r));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), message};
}

/// Runs `child` in a forked process whose files may not exceed `file_limit` bytes, with SIGXFSZ
/// ignored so that writes fail with EFBIG: a full disk.
template <typename F>
std::pair<int, std::string> in_child_with_file_limit(rlim_t file_limit, F&& child) {
  return in_child(
      [&] {
        ::signal(SIGXFSZ, SIG_IGN);
        const rlimit limit{file_limit, file_limit};
        return ::setrlimit(RLIMIT_FSIZE, &limit) == 0;
      },
      child);
}

/// Runs `child` in a forked process that may not write into folders it does not own: when the
/// tests run as root, the child becomes the unprivileged user "nobody" (65534).
template <typename F>
std::pair<int, std::string> in_child_without_privileges(F&& child) {
  return in_child(
      [] {
        if (::geteuid() != 0) return true;
        return ::setgroups(0, nullptr) == 0 && ::setgid(65534) == 0 && ::setuid(65534) == 0;
      },
      child);
}

}  // namespace

TEST_F(CheckpointFile, SavingOverAnExistingFileReplacesIt) {
  optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(1000, 1.0F));
  const Checkpoint second = big_checkpoint(10, 2.0F);
  optreg::save_checkpoint(path("a.ckpt"), second);
  EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), second));
}

TEST_F(CheckpointFile, NoTemporaryFileRemainsAfterASuccessfulSave) {
  optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(1000, 1.0F));
  optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(2000, 2.0F));
  optreg::save_checkpoint(path("b.ckpt"), awkward_state_dict());
  EXPECT_EQ(entries_of(dir_), (std::vector<std::string>{"a.ckpt", "b.ckpt"}));
}

TEST_F(CheckpointFile, SavingIntoAMissingFolderNamesTheFile) {
  const std::string target = path("missing/a.ckpt");
  EXPECT_EQ(checkpoint_error_of([&] { optreg::save_checkpoint(target, big_checkpoint(10, 1.0F)); }),
            "checkpoint " + target + ": cannot create a temporary file in " + path("missing") + ": " +
                std::strerror(ENOENT));
  EXPECT_TRUE(entries_of(dir_).empty());
}

TEST_F(CheckpointFile, SavingIntoAReadOnlyFolderKeepsThePreviousFile) {
  const Checkpoint previous = big_checkpoint(100, 1.0F);
  optreg::save_checkpoint(path("a.ckpt"), previous);
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  const auto [code, message] =
      in_child_without_privileges([&] { optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(10, 2.0F)); });
  fs::permissions(dir_, fs::perms::owner_all);
  ASSERT_EQ(code, 0) << "1: the save succeeded, 2: not a CheckpointError, 3: cannot drop privileges";
  EXPECT_EQ(message, "checkpoint " + path("a.ckpt") + ": cannot create a temporary file in " + dir_.string() + ": " +
                         std::strerror(EACCES));
  EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), previous));
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"a.ckpt"});
}

TEST_F(CheckpointFile, FailedRenameRemovesTheTemporaryFile) {
  // The target is a non-empty folder: writing succeeds and the rename fails.
  fs::create_directory(path("a.ckpt"));
  optreg::save_checkpoint(path("a.ckpt/inner.ckpt"), big_checkpoint(10, 1.0F));
  const std::string message = checkpoint_error_of([&] { optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(10, 2.0F)); });
  EXPECT_EQ(message.rfind("checkpoint " + path("a.ckpt") + ": rename failed: ", 0), 0U) << message;
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"a.ckpt"});
  EXPECT_EQ(entries_of(path("a.ckpt")), std::vector<std::string>{"inner.ckpt"});
}

TEST_F(CheckpointFile, FullDiskKeepsThePreviousFileAndRemovesTheTemporaryFile) {
  const Checkpoint previous = big_checkpoint(1000, 1.0F);
  optreg::save_checkpoint(path("a.ckpt"), previous);
  const Checkpoint large = big_checkpoint(1 << 20, 2.0F);  // 4 MiB
  const auto [code, message] = in_child_with_file_limit(256 * 1024, [&] { optreg::save_checkpoint(path("a.ckpt"), large); });
  ASSERT_EQ(code, 0) << "1: the save succeeded, 2: not a CheckpointError, 3: setrlimit failed";
  EXPECT_EQ(message, "checkpoint " + path("a.ckpt") + ": writing failed: " + std::strerror(EFBIG));
  EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), previous));
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"a.ckpt"});
}

TEST_F(CheckpointFile, FullDiskWhileWritingTheHeaderKeepsThePreviousFile) {
  const Checkpoint previous = big_checkpoint(1000, 1.0F);
  optreg::save_checkpoint(path("a.ckpt"), previous);
  const auto [code, message] = in_child_with_file_limit(0, [&] { optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(10, 2.0F)); });
  ASSERT_EQ(code, 0) << "1: the save succeeded, 2: not a CheckpointError, 3: setrlimit failed";
  EXPECT_EQ(message, "checkpoint " + path("a.ckpt") + ": writing failed: " + std::strerror(EFBIG));
  EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), previous));
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"a.ckpt"});
}

TEST_F(CheckpointFile, ProcessKilledMidWriteLeavesThePreviousFileIntact) {
  const Checkpoint previous = big_checkpoint(1000, 1.0F);
  optreg::save_checkpoint(path("a.ckpt"), previous);
  const Checkpoint large = big_checkpoint(std::size_t{10} << 20, 2.0F);  // 40 MiB
  int killed_mid_write = 0;
  int killed_with_data_written = 0;
  for (const int delay_us : {0, 200, 1000, 3000, 10000, 0, 500, 2000}) {
    const pid_t pid = save_in_child(path("a.ckpt"), large);
    ASSERT_GE(pid, 0) << std::strerror(errno);
    // Wait until the child has begun writing its temporary file, then kill it a little later.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int status = 0;
    bool reaped = false;
    while (!has_temp_file(dir_, "a.ckpt") && std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        reaped = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (!reaped) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    // A temporary file that outlives the child means that it died before the rename.
    if (has_temp_file(dir_, "a.ckpt")) {
      ++killed_mid_write;
      for (const auto& name : entries_of(dir_)) {
        if (name != "a.ckpt" && fs::file_size(dir_ / name) > 0) ++killed_with_data_written;
      }
      EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), previous)) << "delay " << delay_us << " us";
      for (const auto& name : entries_of(dir_)) {
        if (name != "a.ckpt") fs::remove(dir_ / name);
      }
    } else {
      // The child finished: the target is the new checkpoint, whole. Put the previous one back.
      EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), large)) << "delay " << delay_us << " us";
      optreg::save_checkpoint(path("a.ckpt"), previous);
    }
  }
  RecordProperty("killed_mid_write", killed_mid_write);
  RecordProperty("killed_with_data_written", killed_with_data_written);
  EXPECT_GE(killed_mid_write, 1);
  EXPECT_GE(killed_with_data_written, 1);
}

namespace {

/// A process that holds open and locked each of `paths` (creating them), until destroyed.
class LockHolder {
 public:
  explicit LockHolder(const std::vector<std::string>& paths) {
    int ready[2];
    int done[2];
    if (::pipe(ready) != 0 || ::pipe(done) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(done[1]);
      for (const auto& p : paths) {
        const int fd = ::open(p.c_str(), O_RDWR | O_CREAT, 0600);
        if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(1);
      }
      const char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(1);
      char d = 0;
      while (::read(done[0], &d, 1) < 0 && errno == EINTR) {
      }
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(done[0]);
    done_ = done[1];
    char c = 0;
    ok_ = ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
  }
  ~LockHolder() {
    if (done_ >= 0) ::close(done_);
    int status = 0;
    if (pid_ > 0) ::waitpid(pid_, &status, 0);
  }
  LockHolder(const LockHolder&) = delete;
  LockHolder& operator=(const LockHolder&) = delete;
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int done_ = -1;
  bool ok_ = false;
};

}  // namespace

TEST_F(CheckpointFile, AStaleTemporaryOfAWriterKilledMidSaveIsRemovedAtTheNextSave) {
  const Checkpoint large = big_checkpoint(std::size_t{10} << 20, 2.0F);  // 40 MiB
  // Kill writers until one dies mid-write (the first usually does).
  for (int attempt = 0; attempt < 20 && temporaries_of(dir_, "a.ckpt").empty(); ++attempt) {
    const pid_t pid = save_in_child(path("a.ckpt"), large);
    ASSERT_GE(pid, 0) << std::strerror(errno);
    // Kill it once its temporary holds data.
    const auto writing = [&] {
      const auto names = temporaries_of(dir_, "a.ckpt");
      std::error_code ec;
      return !names.empty() && fs::file_size(dir_ / names.front(), ec) > 0 && !ec;
    };
    int status = 0;
    bool reaped = false;
    while (!writing() && !(reaped = ::waitpid(pid, &status, WNOHANG) == pid)) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (!reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
  }
  const std::vector<std::string> stale = temporaries_of(dir_, "a.ckpt");
  ASSERT_EQ(stale.size(), 1U) << "no writer was killed mid-write";
  EXPECT_GT(fs::file_size(dir_ / stale.front()), 0U);
  const Checkpoint small = big_checkpoint(10, 1.0F);
  optreg::save_checkpoint(path("a.ckpt"), small);
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"a.ckpt"});
  EXPECT_TRUE(same_bits(optreg::read_checkpoint(path("a.ckpt")), small));
}

TEST_F(CheckpointFile, ATemporaryIsRemovedOnlyWhenItsWriterIsGoneAndNobodyHoldsItsLock) {
  const std::string dead = std::to_string(optreg_test::ended_pid());
  const std::string stale = ".a.ckpt.tmp-" + dead + "-Stale1";
  optreg_test::write_file(path(stale), "killed mid-write");
  // Another target's temporary is not this save's business, stale or not.
  const std::string other = ".b.ckpt.tmp-" + dead + "-Other1";
  optreg_test::write_file(path(other), "another file's");
  // Held open and locked by a live process: one of its own, and one whose writer ended but
  // whose descriptor (and lock) a child of that writer inherited.
  const LockHolder holder({path(".a.ckpt.tmp-PID-Live01"), path(".a.ckpt.tmp-" + dead + "-Inher1")});
  ASSERT_TRUE(holder.ok());
  const std::string live = ".a.ckpt.tmp-" + std::to_string(holder.pid()) + "-Live01";
  fs::rename(path(".a.ckpt.tmp-PID-Live01"), path(live));
  // A live writer that has created its temporary and not locked it yet.
  const std::string unlocked = ".a.ckpt.tmp-" + std::to_string(holder.pid()) + "-Fresh1";
  optreg_test::write_file(path(unlocked), "");

  optreg::save_checkpoint(path("a.ckpt"), big_checkpoint(10, 1.0F));
  std::vector<std::string> expected = {".a.ckpt.tmp-" + dead + "-Inher1", live, unlocked};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(temporaries_of(dir_, "a.ckpt"), expected);
  EXPECT_TRUE(fs::exists(path(other)));
}

// ---------------------------------------------------------------------------------- optimizers

namespace {

/// Checkpoint files of optimizers from the in-tree plugins.
class CheckpointFileOptimizer : public CheckpointFile {
 protected:
  static void SetUpTestSuite() { optreg_test::reference_registry(); }
  static const optreg::Registry& registry() { return optreg_test::reference_registry(); }

  static OptimizerPtr make(const std::string& name, const Options& options, float offset) {
    Parameter w("w", Tensor({2, 3}, {0.1F, -0.2F, 0.3F, -0.4F, 0.5F, -0.6F}));
    Parameter b("b", Tensor({3}, {0.7F, -0.8F, 0.9F}));
    Parameter v("v", Tensor({4}, {1.0F, -1.1F, 1.2F, -1.3F}));
    for (Parameter* p : {&w, &b, &v}) {
      for (std::size_t i = 0; i < p->value().numel(); ++i) p->value()[i] += offset;
    }
    return registry().create(name, std::vector<ParamGroupSpec>{{{w, b}, {}}, {{v}, {{"lr", 0.02}}}}, options);
  }
};

}  // namespace

TEST_F(CheckpointFileOptimizer, SaveAndLoadRestoresStateAndParameterValues) {
  OptimizerPtr a = make("adam", {{"lr", 0.01}, {"amsgrad", true}}, 0.0F);
  for (int i = 0; i < 4; ++i) step_with_gradients(*a, "b");
  const Options metadata = {{"step", std::int64_t{4}}, {"seed", std::int64_t{1234}}, {"tag", "warmup"}};
  optreg::save_optimizer(path("opt.ckpt"), *a, metadata);
  OptimizerPtr b = make("adam", {}, 5.0F);
  const Options loaded = optreg::load_optimizer(path("opt.ckpt"), *b);
  EXPECT_TRUE(same_bits(loaded, metadata));
  EXPECT_TRUE(same_bits(snapshot(*b), snapshot(*a)));
  for (int i = 0; i < 3; ++i) {
    step_with_gradients(*a);
    step_with_gradients(*b);
  }
  EXPECT_TRUE(same_bits(snapshot(*b), snapshot(*a)));
}

TEST_F(CheckpointFileOptimizer, ACheckpointAlreadyReadLoadsWithTheSameChecks) {
  OptimizerPtr a = make("adam", {{"lr", 0.01}}, 0.0F);
  for (int i = 0; i < 3; ++i) step_with_gradients(*a);
  optreg::save_optimizer(path("opt.ckpt"), *a, {{"step", std::int64_t{3}}});
  const Checkpoint read = optreg::read_checkpoint(path("opt.ckpt"));
  OptimizerPtr b = make("adam", {}, 5.0F);
  EXPECT_EQ(optreg::load_optimizer(read, "run 7", *b).at("step").as_int(), 3);
  EXPECT_TRUE(same_bits(snapshot(*b), snapshot(*a)));
  OptimizerPtr c = make("sgd", {}, 1.0F);
  const Checkpoint before = snapshot(*c);
  EXPECT_EQ(checkpoint_error_of([&] { optreg::load_optimizer(read, "run 7", *c); }),
            "checkpoint run 7: the state dict is of optimizer 'adam', but this optimizer is 'sgd'");
  EXPECT_TRUE(same_bits(snapshot(*c), before));
}

TEST_F(CheckpointFileOptimizer, SavedFileHoldsParameterValuesInIdOrder) {
  OptimizerPtr a = make("sgd", {{"momentum", 0.9}}, 0.0F);
  step_with_gradients(*a);
  optreg::save_optimizer(path("opt.ckpt"), *a);
  const Checkpoint c = optreg::read_checkpoint(path("opt.ckpt"));
  ASSERT_EQ(c.parameters.size(), 3U);
  const std::vector<Parameter> params = a->parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(c.parameters[i].name, params[i].name());
    EXPECT_TRUE(same_bits(c.parameters[i].value, params[i].value()));
  }
  EXPECT_TRUE(same_bits(c.optimizer, a->state_dict()));
  EXPECT_TRUE(c.metadata.empty());
}

TEST_F(CheckpointFileOptimizer, LoadRefusesAnotherOptimizerAndChangesNothing) {
  OptimizerPtr a = make("adam", {}, 0.0F);
  step_with_gradients(*a);
  optreg::save_optimizer(path("opt.ckpt"), *a);
  OptimizerPtr b = make("sgd", {{"momentum", 0.9}}, 1.0F);
  step_with_gradients(*b);
  const Checkpoint before = snapshot(*b);
  EXPECT_EQ(checkpoint_error_of([&] { optreg::load_optimizer(path("opt.ckpt"), *b); }),
            "checkpoint " + path("opt.ckpt") + ": the state dict is of optimizer 'adam', but this optimizer is 'sgd'");
  EXPECT_TRUE(same_bits(snapshot(*b), before));
}

TEST_F(CheckpointFileOptimizer, ANameForgedInTheFileIsEscapedAndCutInTheLoadError) {
  OptimizerPtr a = make("adam", {}, 0.0F);
  Checkpoint c = snapshot(*a);
  c.optimizer.optimizer = "adam\x1b[2J" + std::string(10000, 'x');
  optreg::save_checkpoint(path("forged.ckpt"), c);
  const Checkpoint before = snapshot(*a);
  EXPECT_EQ(checkpoint_error_of([&] { optreg::load_optimizer(path("forged.ckpt"), *a); }),
            "checkpoint " + path("forged.ckpt") + ": the state dict is of optimizer 'adam\\x1b[2J" +
                std::string(56, 'x') + "'... (10008 bytes), but this optimizer is 'adam'");
  EXPECT_TRUE(same_bits(snapshot(*a), before));
}

TEST_F(CheckpointFileOptimizer, LoadRefusesAParameterOfAnotherShapeAndChangesNothing) {
  OptimizerPtr a = make("sgd", {}, 0.0F);
  optreg::save_optimizer(path("opt.ckpt"), *a);
  Parameter w("w", Tensor({2, 3}));
  Parameter b("b", Tensor({4}));
  Parameter v("v", Tensor({4}));
  OptimizerPtr other = registry().create("sgd", std::vector<ParamGroupSpec>{{{w, b}, {}}, {{v}, {}}});
  const Checkpoint before = snapshot(*other);
  EXPECT_EQ(checkpoint_error_of([&] { optreg::load_optimizer(path("opt.ckpt"), *other); }),
            "checkpoint " + path("opt.ckpt") +
                ": parameter id 1 is 'b' of shape [3] in the file, but 'b' of shape [4] in the optimizer");
  EXPECT_TRUE(same_bits(snapshot(*other), before));
}
