// optreg::Registry against real plugin libraries: the in-tree sgd and adam plugins and the
// fixtures of tests/fixtures, one per way a plugin can be broken.
#include <dlfcn.h>
#include <sys/stat.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/parallel.hpp>
#include <optreg/parameter.hpp>
#include <optreg/registry.hpp>
#include <optreg/tensor.hpp>
#include <optreg/text.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

using optreg_test::canonical;
using optreg_test::message_of;

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "' does not contain '" << (part) << "'"

/// A fresh, empty folder removed with everything in it at the end of the scope.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "optreg_registry_test_XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + templ);
    path_ = fs::canonical(templ);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  /// Copies `file` into the folder under its own name; returns the copy's path.
  std::string add(const std::string& file) const {
    const fs::path to = path_ / fs::path(file).filename();
    fs::copy_file(file, to, fs::copy_options::overwrite_existing);
    return to.string();
  }

 private:
  fs::path path_;
};

/// Whether the library at `path` is loaded in this process (without loading it).
bool is_loaded(const std::string& path) {
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return false;
  ::dlclose(handle);
  return true;
}

/// The number of live optimizer objects made by the fixture_sgd_like library, or -1 when the
/// library is not loaded.
int live_sgd_like_instances() { return optreg_test::live_count(OPTREG_FIXTURE_SGD_LIKE, "optreg_fixture_live_instances"); }

/// Sets or clears an environment variable for one scope and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

optreg::Parameter param(float a = 1.0f, float b = 2.0f) {
  optreg::Parameter p("w", optreg::Tensor({2}, {a, b}));
  p.set_grad(optreg::Tensor({2}, {0.5f, -1.0f}));
  return p;
}

std::vector<std::string> names_of(const optreg::Registry& r) {
  std::vector<std::string> out;
  for (const auto& d : r.list()) out.push_back(d.name);
  return out;
}

/// A registry with the in-tree sgd and adam plugins.
class RegistryCreate : public ::testing::Test {
 protected:
  void SetUp() override {
    registry.load_file(OPTREG_TEST_SGD_PLUGIN);
    registry.load_file(OPTREG_TEST_ADAM_PLUGIN);
  }

  /// The OptionError message of creating `name` with `options`.
  std::string option_error(const std::string& name, const optreg::Options& options) {
    return message_of<optreg::OptionError>([&] { registry.create(name, {param()}, options); });
  }

  optreg::Registry registry;
};

// ------------------------------------------------------------------ one failure mode each

TEST(RegistryLoad, LoadsTheInTreePlugins) {
  optreg::Registry r;
  EXPECT_EQ(r.load_file(OPTREG_TEST_SGD_PLUGIN), std::vector<std::string>{"sgd"});
  EXPECT_EQ(r.load_file(OPTREG_TEST_ADAM_PLUGIN), std::vector<std::string>{"adam"});
  EXPECT_EQ(names_of(r), (std::vector<std::string>{"adam", "sgd"}));
  const auto sgd = r.find("sgd");
  ASSERT_TRUE(sgd.has_value());
  EXPECT_EQ(sgd->source, canonical(OPTREG_TEST_SGD_PLUGIN));
  EXPECT_EQ(sgd->plugin_name, "sgd");
  EXPECT_TRUE(r.refused().empty());
}

TEST(RegistryLoad, WrongAbiMajorNamesBothVersions) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_ABI_MAJOR); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_ABI_MAJOR) +
                     ": it was built for optreg plugin ABI 999, but this host supports ABI 3; rebuild the plugin "
                     "against this optreg (find_package(optreg) and optreg_add_plugin(); docs/plugin-guide.md)");
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AnAbi1PluginIsRefusedNamingBothVersionsAndHowToRebuild) {
  optreg::Registry r;
  try {
    r.load_file(OPTREG_FIXTURE_ABI_ONE);
    ADD_FAILURE() << "an ABI 1 plugin was loaded";
  } catch (const optreg::PluginError& e) {
    EXPECT_EQ(e.versions().found, 1);
    EXPECT_EQ(e.versions().expected, 3);
    EXPECT_CONTAINS(std::string(e.what()), "built for optreg plugin ABI 1, but this host supports ABI 3");
    EXPECT_CONTAINS(std::string(e.what()), "optreg_add_plugin()");
  }
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AnAbi2PluginIsRefusedSinceTheOptimizerClassGainedCalls) {
  optreg::Registry r;
  try {
    r.load_file(OPTREG_FIXTURE_ABI_TWO);
    ADD_FAILURE() << "an ABI 2 plugin was loaded";
  } catch (const optreg::PluginError& e) {
    EXPECT_EQ(e.versions().found, 2);
    EXPECT_EQ(e.versions().expected, 3);
    EXPECT_CONTAINS(std::string(e.what()), "built for optreg plugin ABI 2, but this host supports ABI 3");
  }
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AnOptimizerWithAnUnknownFlagIsRefusedNamingIt) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_UNKNOWN_FLAGS); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_UNKNOWN_FLAGS) +
                     ": optimizer 'fixture_unknown_flags' declares unknown flags");
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AClosureOptimizerWithHalfPrecisionParametersIsRefused) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_CLOSURE_HALF); });
  EXPECT_CONTAINS(msg, "optimizer 'fixture_closure_half' steps with a closure and declares bfloat16 or float16 parameters");
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AWrongAbiMajorIsInTheErrorsAndTheRefusalsFields) {
  optreg::Registry r;
  try {
    r.load_file(OPTREG_FIXTURE_ABI_MAJOR);
    ADD_FAILURE() << "no PluginError";
  } catch (const optreg::PluginError& e) {
    EXPECT_EQ(e.path(), canonical(OPTREG_FIXTURE_ABI_MAJOR));
    EXPECT_EQ(e.versions().found, 999);
    EXPECT_EQ(e.versions().expected, OPTREG_ABI_MAJOR);
  }
  ASSERT_EQ(r.refused().size(), 1U);
  EXPECT_EQ(r.refused()[0].versions.found, 999);
  const optreg::LoadResult other = r.try_load_file(OPTREG_FIXTURE_BUILD_TAG);
  EXPECT_EQ(other.refusal.versions.found, -1);  // refused for its build tag, not a version
}

TEST(RegistryLoad, DescriptorSmallerThanTheAbiIsRefused) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_DESCRIPTOR_SIZE); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_DESCRIPTOR_SIZE) + ": its descriptor is 8 bytes, smaller than the " +
                     std::to_string(optreg::abi::kMinDescriptorSize) +
                     " bytes of ABI 3; the plugin is damaged or was not built with the optreg SDK");
}

TEST(RegistryLoad, LibraryWithoutEntrySymbolIsRefused) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_NO_ENTRY); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_NO_ENTRY) +
                     ": it exports no 'optreg_plugin_descriptor' entry; it is not an optreg plugin (build it with "
                     "OPTREG_REGISTER_OPTIMIZER or OPTREG_REGISTER_SCHEDULERS)");
}

TEST(RegistryLoad, DuplicateNameNamesBothFilesAndTheFirstKeepsIt) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SGD_PLUGIN);
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_DUPLICATE_SGD); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_DUPLICATE_SGD) + ": optimizer 'sgd' is already registered by " +
                     canonical(OPTREG_TEST_SGD_PLUGIN) + "; two plugins cannot share a name");
  ASSERT_TRUE(r.find("sgd").has_value());
  EXPECT_EQ(r.find("sgd")->source, canonical(OPTREG_TEST_SGD_PLUGIN));
  EXPECT_EQ(r.find("sgd")->plugin_version, "1.0.0");
}

TEST(RegistryLoad, ThrowingFactoryLoadsButCreateThrowsPluginError) {
  optreg::Registry r;
  EXPECT_EQ(r.load_file(OPTREG_FIXTURE_THROWING_FACTORY), std::vector<std::string>{"fixture_throwing"});
  const std::string msg = message_of<optreg::PluginError>([&] { r.create("fixture_throwing", {param()}); });
  EXPECT_EQ(msg, "optimizer 'fixture_throwing' (plugin " + canonical(OPTREG_FIXTURE_THROWING_FACTORY) +
                     "): the factory threw: fixture_throwing cannot allocate its workspace");
  // The registry is still usable afterwards.
  EXPECT_TRUE(r.find("fixture_throwing").has_value());
}

TEST(RegistryLoad, UnresolvedSymbolIsRefusedByTheDynamicLoader) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_UNRESOLVED); });
  const std::string prefix = "plugin " + canonical(OPTREG_FIXTURE_UNRESOLVED) + ": the dynamic loader refused it: ";
  EXPECT_EQ(msg.substr(0, prefix.size()), prefix) << msg;
  EXPECT_CONTAINS(msg, "undefined symbol: optreg_fixture_missing_function");
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_UNRESOLVED));
}

TEST(RegistryLoad, TextFileIsRefusedByTheDynamicLoader) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_NOT_A_LIBRARY); });
  const std::string prefix = "plugin " + canonical(OPTREG_FIXTURE_NOT_A_LIBRARY) + ": the dynamic loader refused it: ";
  EXPECT_EQ(msg.substr(0, prefix.size()), prefix) << msg;
  EXPECT_CONTAINS(msg, "invalid ELF header");
}

TEST(RegistryLoad, ARefusalReasonIsInertWhateverTheFileIsNamed) {
  const TempDir dir;
  const fs::path hostile = dir.path() / "lib\x1b[2J\xff.so";
  fs::copy_file(OPTREG_FIXTURE_NOT_A_LIBRARY, hostile);
  optreg::Registry r;
  const optreg::LoadResult result = r.try_load_file(hostile.string());
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.refusal.path, hostile.string()) << "the path is data, kept as it is";
  EXPECT_CONTAINS(result.refusal.reason, "lib\\x1b[2J\\xff.so");
  EXPECT_EQ(optreg::escape_message(result.refusal.reason), result.refusal.reason);
  EXPECT_EQ(optreg::escape_message(result.error), result.error);
}

TEST(RegistryLoad, BuildTagMismatchNamesBothTags) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_BUILD_TAG); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_BUILD_TAG) +
                     ": it was built with \"libstdc++99/cxx11abi=0;boost=100000\", but this host was built with \"" +
                     OPTREG_BUILD_TAG + "\"; rebuild the plugin with the same standard library and Boost");
}

TEST(RegistryLoad, DefaultOutsideItsRangeNamesTheHyperparameter) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_BAD_DEFAULT); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_BAD_DEFAULT) +
                     ": optimizer 'fixture_bad_default', hyperparameter 'momentum': the default 1.5 lies outside the "
                     "declared range [0.0, 1.0]");
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, AStateDomainThatHoldsNoValueNamesTheEntry) {
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(OPTREG_FIXTURE_BAD_DOMAIN); });
  EXPECT_EQ(msg, "plugin " + canonical(OPTREG_FIXTURE_BAD_DOMAIN) +
                     ": optimizer 'fixture_bad_domain', state entry 'step': its domain [1, 0] is empty");
  EXPECT_TRUE(r.list().empty());
}

TEST(RegistryLoad, MissingFileIsNamed) {
  const TempDir dir;
  const std::string missing = (dir.path() / "libno_such_plugin.so").string();
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(missing); });
  EXPECT_EQ(msg, "plugin " + missing + ": cannot open it: No such file or directory");
}

TEST(RegistryLoad, FolderIsNotARegularFile) {
  const TempDir dir;
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(dir.path().string()); });
  EXPECT_EQ(msg, "plugin " + dir.path().string() + ": it is a folder, not a regular file");
}

TEST(RegistryLoad, AFifoIsRefusedWithoutWaitingForAWriter) {
  const TempDir dir;
  const std::string fifo = (dir.path() / "libfifo.so").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // In a child: the dynamic loader's own open of a FIFO would block until it is killed.
  const optreg_test::CommandRun r = optreg_test::run_in_child([&] {
    optreg::Registry registry;
    registry.load_file(fifo);
  });
  EXPECT_EQ(r.status, 1) << "0: loaded, -1: killed (blocked?)";
  EXPECT_EQ(r.out, "plugin " + fifo + ": it is a FIFO (named pipe), not a regular file");
  // In a plugin folder too.
  const optreg_test::CommandRun folder = optreg_test::run_in_child([&] {
    optreg::Registry registry;
    const auto refused = registry.load_directory(dir.path().string());
    if (refused.size() != 1 || refused[0].reason != "it is a FIFO (named pipe), not a regular file") {
      throw std::runtime_error("unexpected refusals");
    }
  });
  EXPECT_EQ(folder.status, 0) << folder.out;
}

TEST(RegistryLoad, ASymlinkLoopIsNamedAsOne) {
  const TempDir dir;
  const std::string loop = (dir.path() / "libloop.so").string();
  fs::create_symlink(loop, loop);
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_file(loop); });
  EXPECT_EQ(msg, "plugin " + loop + ": it is a symbolic link loop (Too many levels of symbolic links)");
}

// ------------------------------------------------------------------ loading rules

TEST(RegistryLoad, TryLoadFileReportsWithoutThrowingAndRefusedListsIt) {
  optreg::Registry r;
  optreg::LoadResult result;
  ASSERT_NO_THROW(result = r.try_load_file(OPTREG_FIXTURE_ABI_MAJOR));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(result.names.empty());
  EXPECT_EQ(result.refusal.path, canonical(OPTREG_FIXTURE_ABI_MAJOR));
  EXPECT_CONTAINS(result.refusal.reason, "ABI 999");
  EXPECT_EQ(result.error, "plugin " + result.refusal.path + ": " + result.refusal.reason);
  const auto refused = r.refused();
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].path, result.refusal.path);
  EXPECT_EQ(refused[0].reason, result.refusal.reason);

  const optreg::LoadResult good = r.try_load_file(OPTREG_TEST_SGD_PLUGIN);
  EXPECT_TRUE(good.ok);
  EXPECT_EQ(good.names, std::vector<std::string>{"sgd"});
  EXPECT_TRUE(good.error.empty());
  EXPECT_EQ(r.refused().size(), 1u);
}

TEST(RegistryLoad, LoadingTheSameFileTwiceIsANoOp) {
  optreg::Registry r;
  EXPECT_EQ(r.load_file(OPTREG_TEST_SGD_PLUGIN), std::vector<std::string>{"sgd"});
  EXPECT_EQ(r.load_file(OPTREG_TEST_SGD_PLUGIN), std::vector<std::string>{"sgd"});
  const optreg::LoadResult again = r.try_load_file(OPTREG_TEST_SGD_PLUGIN);
  EXPECT_TRUE(again.ok);
  EXPECT_EQ(again.names, std::vector<std::string>{"sgd"});
  EXPECT_EQ(names_of(r), std::vector<std::string>{"sgd"});
  EXPECT_TRUE(r.refused().empty());
}

TEST(RegistryLoad, RelativePathIsResolvedToCanonicalAbsolute) {
  const std::string relative = fs::relative(OPTREG_TEST_ADAM_PLUGIN, fs::current_path()).string();
  ASSERT_FALSE(fs::path(relative).is_absolute());
  optreg::Registry r;
  EXPECT_EQ(r.load_file(relative), std::vector<std::string>{"adam"});
  ASSERT_TRUE(r.find("adam").has_value());
  EXPECT_EQ(r.find("adam")->source, canonical(OPTREG_TEST_ADAM_PLUGIN));
  EXPECT_TRUE(fs::path(r.find("adam")->source).is_absolute());
  // The same file by its absolute path is the same plugin.
  EXPECT_EQ(r.load_file(OPTREG_TEST_ADAM_PLUGIN), std::vector<std::string>{"adam"});
  EXPECT_EQ(r.list().size(), 1u);
  EXPECT_TRUE(r.refused().empty());
}

TEST(RegistryLoad, UnreadableFolderThrowsPluginError) {
  const TempDir dir;
  const std::string missing = (dir.path() / "no_such_folder").string();
  optreg::Registry r;
  const std::string msg = message_of<optreg::PluginError>([&] { r.load_directory(missing); });
  EXPECT_EQ(msg, "cannot read plugin folder " + missing + ": No such file or directory");
}

// ------------------------------------------------------------------ folders

/// Every fixture and in-tree plugin: four load, the rest are refused.
std::vector<std::string> every_plugin_file() {
  return {OPTREG_TEST_SGD_PLUGIN,         OPTREG_TEST_ADAM_PLUGIN,        OPTREG_FIXTURE_ABI_MAJOR,
          OPTREG_FIXTURE_DESCRIPTOR_SIZE, OPTREG_FIXTURE_BUILD_TAG,       OPTREG_FIXTURE_BAD_DEFAULT,
          OPTREG_FIXTURE_NO_ENTRY,        OPTREG_FIXTURE_THROWING_FACTORY, OPTREG_FIXTURE_SGD_LIKE,
          OPTREG_FIXTURE_DUPLICATE_SGD,   OPTREG_FIXTURE_UNRESOLVED,      OPTREG_FIXTURE_NOT_A_LIBRARY};
}

/// The refusals of a folder, with the folder's path written as "DIR".
std::vector<std::pair<std::string, std::string>> relative_refusals(const std::vector<optreg::Refusal>& refusals,
                                                                   const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : refusals) {
    std::string reason = r.reason;
    for (auto at = reason.find(dir.string()); at != std::string::npos; at = reason.find(dir.string())) {
      reason.replace(at, dir.string().size(), "DIR");
    }
    out.emplace_back(fs::path(r.path).lexically_relative(dir).string(), reason);
  }
  return out;
}

TEST(RegistryDirectory, LoadsTheGoodOnesAndReportsEveryBrokenOneInSortedOrder) {
  const TempDir dir;
  for (const auto& f : every_plugin_file()) dir.add(f);
  // Neither a file that does not end in ".so" nor a subfolder is considered.
  fs::copy_file(OPTREG_FIXTURE_SGD_LIKE, dir.path() / "liboptreg_fixture_sgd_like.so.1");
  fs::create_directory(dir.path() / "nested");
  fs::copy_file(OPTREG_FIXTURE_ABI_MAJOR, dir.path() / "nested" / "liboptreg_fixture_abi_major.so");

  optreg::Registry r;
  const std::vector<optreg::Refusal> refusals = r.load_directory(dir.path().string());

  EXPECT_EQ(names_of(r), (std::vector<std::string>{"adam", "fixture_sgd_like", "fixture_throwing", "sgd"}));
  EXPECT_EQ(r.find("sgd")->source, (dir.path() / "liboptreg_sgd.so").string());

  const std::vector<std::pair<std::string, std::string>> expected_start = {
      {"libnot_a_library.so", "the dynamic loader refused it: "},
      {"liboptreg_fixture_abi_major.so", "it was built for optreg plugin ABI 999, but this host supports ABI 3"},
      {"liboptreg_fixture_bad_default.so", "optimizer 'fixture_bad_default', hyperparameter 'momentum': the default 1.5"},
      {"liboptreg_fixture_build_tag.so", "it was built with \"libstdc++99/cxx11abi=0;boost=100000\""},
      {"liboptreg_fixture_descriptor_size.so", "its descriptor is 8 bytes"},
      {"liboptreg_fixture_no_entry.so", "it exports no 'optreg_plugin_descriptor' entry"},
      {"liboptreg_fixture_unresolved.so", "the dynamic loader refused it: "},
      {"liboptreg_sgd_duplicate_fixture.so", "optimizer 'sgd' is already registered by DIR/liboptreg_sgd.so"},
  };
  const auto got = relative_refusals(refusals, dir.path());
  ASSERT_EQ(got.size(), expected_start.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, expected_start[i].first) << "refusal " << i;
    EXPECT_EQ(got[i].second.substr(0, expected_start[i].second.size()), expected_start[i].second)
        << "refusal " << i << ": " << got[i].second;
  }
  EXPECT_CONTAINS(got[0].second, "invalid ELF header");
  EXPECT_CONTAINS(got[6].second, "undefined symbol: optreg_fixture_missing_function");
  EXPECT_TRUE(std::is_sorted(refusals.begin(), refusals.end(),
                             [](const optreg::Refusal& a, const optreg::Refusal& b) { return a.path < b.path; }));

  // refused() holds the same refusals, in the order the files were tried.
  const auto kept = r.refused();
  ASSERT_EQ(kept.size(), refusals.size());
  for (std::size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(kept[i].path, refusals[i].path);
    EXPECT_EQ(kept[i].reason, refusals[i].reason);
  }
}

TEST(RegistryDirectory, ResultDoesNotDependOnFileCreationOrder) {
  const TempDir forward;
  const TempDir backward;
  auto files = every_plugin_file();
  for (const auto& f : files) forward.add(f);
  std::reverse(files.begin(), files.end());
  for (const auto& f : files) backward.add(f);

  optreg::Registry a;
  optreg::Registry b;
  const auto refused_a = relative_refusals(a.load_directory(forward.path().string()), forward.path());
  const auto refused_b = relative_refusals(b.load_directory(backward.path().string()), backward.path());
  EXPECT_EQ(refused_a, refused_b);
  EXPECT_EQ(refused_a.size(), 8u);
  EXPECT_EQ(names_of(a), names_of(b));
  for (const auto& d : a.list()) {
    EXPECT_EQ(fs::path(d.source).filename(), fs::path(b.find(d.name)->source).filename()) << d.name;
  }
}

// ------------------------------------------------------------------ search path

TEST(RegistrySearchPath, InstalledFolderIsThePluginFolderOfTheBuildTree) {
  EXPECT_TRUE(fs::equivalent(optreg::Registry::installed_plugin_dir(), OPTREG_TEST_PLUGIN_DIR))
      << optreg::Registry::installed_plugin_dir();
}

TEST(RegistrySearchPath, WithoutTheVariableOnlyTheInstalledFolder) {
  const ScopedEnv env("OPTREG_PLUGIN_PATH", nullptr);
  EXPECT_EQ(optreg::Registry::default_search_path(),
            std::vector<std::string>{optreg::Registry::installed_plugin_dir()});
}

TEST(RegistrySearchPath, VariableEntriesComeFirstInOrderAndEmptyOnesAreSkipped) {
  const ScopedEnv env("OPTREG_PLUGIN_PATH", ":/opt/first::/opt/second/plugins:");
  EXPECT_EQ(optreg::Registry::default_search_path(),
            (std::vector<std::string>{"/opt/first", "/opt/second/plugins", optreg::Registry::installed_plugin_dir()}));
}

TEST(RegistrySearchPath, EmptyVariableMeansOnlyTheInstalledFolder) {
  const ScopedEnv env("OPTREG_PLUGIN_PATH", "");
  EXPECT_EQ(optreg::Registry::default_search_path(),
            std::vector<std::string>{optreg::Registry::installed_plugin_dir()});
}

TEST(RegistrySearchPath, LoadDefaultPrefersTheVariableFoldersOverTheInstalledOne) {
  const TempDir dir;
  const std::string own_sgd = dir.add(OPTREG_TEST_SGD_PLUGIN);
  dir.add(OPTREG_FIXTURE_SGD_LIKE);
  const std::string value = (dir.path() / "no_such_folder").string() + ":" + dir.path().string();
  const ScopedEnv env("OPTREG_PLUGIN_PATH", value.c_str());

  optreg::Registry r;
  const auto refusals = r.load_default();
  ASSERT_TRUE(r.find("sgd").has_value());
  EXPECT_EQ(r.find("sgd")->source, own_sgd);
  EXPECT_TRUE(r.find("fixture_sgd_like").has_value());
  EXPECT_TRUE(r.find("adam").has_value());
  const std::string installed_sgd = canonical(OPTREG_TEST_SGD_PLUGIN);
  const auto it = std::find_if(refusals.begin(), refusals.end(),
                               [&](const optreg::Refusal& x) { return x.path == installed_sgd; });
  ASSERT_NE(it, refusals.end());
  EXPECT_EQ(it->reason, "optimizer 'sgd' is already registered by " + own_sgd + "; two plugins cannot share a name");
}

// ------------------------------------------------------------------ create()

TEST_F(RegistryCreate, UnknownOptimizerSuggestsTheClosestName) {
  const std::string msg = message_of<optreg::PluginError>([&] { registry.create("adm", {param()}); });
  EXPECT_EQ(msg, "no optimizer named 'adm' is registered (did you mean 'adam'?); registered: adam, sgd");
}

TEST_F(RegistryCreate, UnknownOptimizerInAnEmptyRegistry) {
  const optreg::Registry empty;
  const std::string msg = message_of<optreg::PluginError>([&] { empty.create("sgd", {param()}); });
  EXPECT_EQ(msg, "no optimizer named 'sgd' is registered; no plugin is loaded");
}

TEST_F(RegistryCreate, UnknownOptionSuggestsTheClosestKey) {
  const std::string msg = option_error("sgd", {{"momentom", 0.9}});
  EXPECT_EQ(msg.rfind("optimizer 'sgd': unknown option 'momentom' (did you mean 'momentum'", 0), 0u) << msg;
  EXPECT_CONTAINS(msg, "; known options: lr, momentum, dampening, weight_decay, nesterov, maximize");
}

TEST_F(RegistryCreate, WrongTypeNamesOptionAndValue) {
  EXPECT_EQ(option_error("sgd", {{"lr", "fast"}}),
            "optimizer 'sgd': option 'lr' = \"fast\" has the wrong type: expected a float, got a string");
}

TEST_F(RegistryCreate, NegativeLearningRateIsOutOfRange) {
  EXPECT_EQ(option_error("sgd", {{"lr", -1}}),
            "optimizer 'sgd': option 'lr' = -1 is out of range: the value must be in [0.0, inf) (learning rate)");
  EXPECT_EQ(option_error("adam", {{"lr", -1.0}}),
            "optimizer 'adam': option 'lr' = -1.0 is out of range: the value must be in [0.0, inf) (learning rate)");
}

TEST_F(RegistryCreate, BetaOfOneIsOutOfRange) {
  const std::string msg = option_error("adam", {{"betas", {0.9, 1.0}}});
  EXPECT_EQ(msg.rfind("optimizer 'adam': option 'betas' = [0.9, 1.0] is out of range: element 1 must be in [0.0, 1.0)",
                      0),
            0u)
      << msg;
}

TEST_F(RegistryCreate, BetasOfTheWrongLength) {
  EXPECT_EQ(option_error("adam", {{"betas", {0.9}}}),
            "optimizer 'adam': option 'betas' = [0.9] has 1 elements, expected 2");
  EXPECT_EQ(option_error("adam", {{"betas", {0.9, 0.99, 0.999}}}),
            "optimizer 'adam': option 'betas' = [0.9, 0.99, 0.999] has 3 elements, expected 2");
}

TEST_F(RegistryCreate, ZeroEpsIsOutOfRange) {
  const std::string msg = option_error("adam", {{"eps", 0}});
  EXPECT_EQ(msg.rfind("optimizer 'adam': option 'eps' = 0 is out of range: the value must be in (0.0, inf)", 0), 0u)
      << msg;
}

TEST_F(RegistryCreate, AnInfiniteLearningRateIsRefusedAtCreateAndBySetOption) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(option_error("adam", {{"lr", inf}}),
            "optimizer 'adam': option 'lr' = .inf is out of range: the value must be in [0.0, inf) (learning rate)");
  const optreg::OptimizerPtr opt = registry.create("sgd", {param()});
  EXPECT_EQ(message_of<optreg::OptionError>([&] { opt->set_option("lr", inf); }),
            "optimizer 'sgd', param group 0: option 'lr' = .inf is out of range: the value must be in [0.0, inf) "
            "(learning rate)");
  EXPECT_EQ(message_of<optreg::OptionError>([&] { opt->set_option(0, "weight_decay", -inf); }),
            "optimizer 'sgd', param group 0: option 'weight_decay' = -.inf is out of range: the value must be in "
            "[0.0, inf) (L2 penalty added to the gradient)");
  EXPECT_EQ(opt->param_groups()[0].option("lr"), optreg::Value(1e-3));
}

TEST(RegistryRanges, NoInTreeHyperparameterAcceptsANonFiniteValueAndEachPrintsWhatItAccepts) {
  // Every optimizer and scheduler of the in-tree plugin folder, and the core's sequential.
  std::vector<std::pair<std::string, std::shared_ptr<const optreg::Schema>>> schemas;
  for (const auto& d : optreg_test::in_tree_registry().list()) schemas.emplace_back(d.name, d.schema);
  for (const auto& d : optreg_test::in_tree_registry().list_schedulers()) schemas.emplace_back(d.name, d.schema);
  ASSERT_GE(schemas.size(), 20U);
  const double inf = std::numeric_limits<double>::infinity();
  std::size_t numeric = 0;
  for (const auto& [owner, schema] : schemas) {
    for (const optreg::Hyperparameter& h : schema->entries()) {
      if (h.type != optreg::ValueType::Float && h.type != optreg::ValueType::FloatList) continue;
      ++numeric;
      const std::string range = h.range.to_string();
      // The printed form and contains() agree on each infinity.
      EXPECT_EQ(h.range.contains(inf), range.substr(range.size() - 4) == "inf]") << owner << ": " << h.name << " " << range;
      EXPECT_EQ(h.range.contains(-inf), range.rfind("[-inf", 0) == 0) << owner << ": " << h.name << " " << range;
      for (const double bad : {inf, -inf, std::nan("")}) {
        const optreg::Value v = h.type == optreg::ValueType::Float
                                    ? optreg::Value(bad)
                                    : optreg::Value(std::vector<double>(std::max<std::size_t>(h.list_size, 1), bad));
        EXPECT_THROW((void)schema->check(h.name, v, owner), optreg::OptionError) << owner << ": " << h.name << " = " << bad;
      }
    }
  }
  EXPECT_GE(numeric, 60U);
}

TEST_F(RegistryCreate, NesterovNeedsMomentum) {
  EXPECT_EQ(option_error("sgd", {{"nesterov", true}}),
            "optimizer 'sgd': option 'nesterov' = true needs momentum > 0 and dampening = 0 (got momentum = 0.0, "
            "dampening = 0.0)");
}

TEST_F(RegistryCreate, NesterovRefusesDampening) {
  EXPECT_EQ(option_error("sgd", {{"nesterov", true}, {"momentum", 0.9}, {"dampening", 0.1}}),
            "optimizer 'sgd': option 'nesterov' = true needs momentum > 0 and dampening = 0 (got momentum = 0.9, "
            "dampening = 0.1)");
}

TEST_F(RegistryCreate, IntegerIsAcceptedForAFloatOption) {
  optreg::OptimizerPtr opt;
  ASSERT_NO_THROW(opt = registry.create("sgd", {param()}, {{"lr", 1}, {"momentum", 0}}));
  EXPECT_EQ(opt->defaults().at("lr"), optreg::Value(1.0));
  EXPECT_EQ(opt->defaults().at("lr").type(), optreg::ValueType::Float);
  EXPECT_EQ(opt->param_groups().at(0).option("momentum"), optreg::Value(0.0));
}

TEST_F(RegistryCreate, CreatesAWorkingOptimizer) {
  optreg::Parameter p = param(1.0f, 2.0f);
  const optreg::OptimizerPtr opt = registry.create("sgd", {p}, {{"lr", 0.5}});
  EXPECT_EQ(opt->name(), "sgd");
  EXPECT_EQ(opt->plugin_version(), "1.0.0");
  opt->step();
  EXPECT_EQ(p.value().to_vector(), (std::vector<float>{0.75f, 2.5f}));
}

// ------------------------------------------------------------------ threads

TEST(RegistryThreads, CreateListAndFindWhileAnotherThreadLoads) {
  optreg::Registry r;
  r.load_file(OPTREG_TEST_SGD_PLUGIN);
  std::atomic<bool> loading_done{false};
  std::atomic<int> failures{0};

  std::thread loader([&] {
    for (const char* f : {OPTREG_TEST_ADAM_PLUGIN, OPTREG_FIXTURE_ABI_MAJOR, OPTREG_FIXTURE_SGD_LIKE,
                          OPTREG_FIXTURE_DUPLICATE_SGD, OPTREG_FIXTURE_NOT_A_LIBRARY, OPTREG_TEST_ADAM_PLUGIN}) {
      r.try_load_file(f);
      std::this_thread::yield();
    }
    loading_done = true;
  });

  const auto reader = [&] {
    bool saw_adam = false;
    // Bounded: at least 20 rounds, at most 2000, and always past the end of loading.
    for (int i = 0; i < 2000 && (i < 20 || !loading_done); ++i) {
      optreg::Parameter p = param(1.0f, 2.0f);
      try {
        r.create("sgd", {p}, {{"lr", 0.5}})->step();
      } catch (...) {
        ++failures;
      }
      if (p.value().to_vector() != std::vector<float>{0.75f, 2.5f}) ++failures;
      const std::vector<std::string> names = names_of(r);
      if (!std::is_sorted(names.begin(), names.end()) || names.empty() || names.size() > 3) ++failures;
      if (std::find(names.begin(), names.end(), "sgd") == names.end()) ++failures;
      const auto sgd = r.find("sgd");
      if (!sgd || sgd->source != canonical(OPTREG_TEST_SGD_PLUGIN)) ++failures;
      const bool has_adam = r.find("adam").has_value();
      if (saw_adam && !has_adam) ++failures;
      saw_adam = saw_adam || has_adam;
      (void)r.refused();
    }
  };
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) readers.emplace_back(reader);
  for (auto& t : readers) t.join();
  loader.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(names_of(r), (std::vector<std::string>{"adam", "fixture_sgd_like", "sgd"}));
  const auto refused = r.refused();
  ASSERT_EQ(refused.size(), 3u);
  EXPECT_EQ(refused[0].path, canonical(OPTREG_FIXTURE_ABI_MAJOR));
  EXPECT_EQ(refused[1].path, canonical(OPTREG_FIXTURE_DUPLICATE_SGD));
  EXPECT_EQ(refused[2].path, canonical(OPTREG_FIXTURE_NOT_A_LIBRARY));
}

// ------------------------------------------------------------------ library lifetime

TEST(PluginLifetime, OptimizerKeepsItsLibraryLoadedAfterTheRegistryIsGone) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  optreg::Parameter p = param(1.0f, 2.0f);
  {
    optreg::OptimizerPtr opt;
    {
      optreg::Registry r;
      r.load_file(OPTREG_FIXTURE_SGD_LIKE);
      EXPECT_TRUE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
      EXPECT_EQ(live_sgd_like_instances(), 0);
      opt = r.create("fixture_sgd_like", {p}, {{"lr", 0.5}});
      EXPECT_EQ(live_sgd_like_instances(), 1);
    }
    // The registry is gone; the optimizer still holds its library and still works.
    EXPECT_TRUE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
    EXPECT_EQ(live_sgd_like_instances(), 1);
    opt->step();
    EXPECT_EQ(p.value().to_vector(), (std::vector<float>{0.75f, 2.5f}));
    EXPECT_EQ(opt->name(), "fixture_sgd_like");
    EXPECT_EQ(opt->param_groups().at(0).option("lr"), optreg::Value(0.5));
  }
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
}

TEST(PluginLifetime, ReplacingTheOptimizerPtrReleasesTheLibrary) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  optreg::OptimizerPtr opt;
  {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_SGD_LIKE);
    opt = r.create("fixture_sgd_like", {param()});
  }
  EXPECT_TRUE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  opt = optreg::OptimizerPtr();
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
}

TEST(PluginLifetime, ResetOfTheOptimizerPtrReleasesTheLibrary) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  optreg::OptimizerPtr opt;
  {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_SGD_LIKE);
    opt = r.create("fixture_sgd_like", {param()});
  }
  EXPECT_TRUE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  opt.reset();
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
}

TEST(PluginLifetime, LibraryStaysWhileTheRegistryLivesAfterTheOptimizerIsGone) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_SGD_LIKE);
    {
      auto a = r.create("fixture_sgd_like", {param()});
      auto b = r.create("fixture_sgd_like", {param()});
      EXPECT_EQ(live_sgd_like_instances(), 2);
    }
    EXPECT_EQ(live_sgd_like_instances(), 0);
    EXPECT_TRUE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
  }
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_SGD_LIKE));
}

TEST(PluginLifetime, RefusedPluginIsNotLeftLoaded) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_BAD_DEFAULT));
  optreg::Registry r;
  EXPECT_FALSE(r.try_load_file(OPTREG_FIXTURE_BAD_DEFAULT).ok);
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_BAD_DEFAULT));
  EXPECT_FALSE(r.try_load_file(OPTREG_FIXTURE_BUILD_TAG).ok);
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_BUILD_TAG));
}

// ------------------------------------------------------------------ exceptions of plugin code
//
// The fixtures throw exception classes of their own (tests/fixtures/fixture_failure.hpp): once
// their library is unloaded, reading or even destroying such an exception runs unmapped code.

/// The optimizer of the throws_own_class fixture over `p`, throwing in `call`.
optreg::OptimizerPtr throwing_optimizer(const optreg::Registry& r, const optreg::Parameter& p, const char* call) {
  return r.create("fixture_throws_own_class", {p}, {{"throw_in", call}});
}

TEST(PluginExceptions, AStepThatThrowsItsOwnClassIsReadAfterTheLibraryIsUnloaded) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_THROWS_OWN_CLASS));
  optreg::Parameter p = param(1.0f, 2.0f);
  std::string message;
  try {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_THROWS_OWN_CLASS);
    optreg::OptimizerPtr opt = throwing_optimizer(r, p, "update_group");
    opt->step();
  } catch (const optreg::PluginError& e) {
    // The optimizer and the registry were destroyed while the exception propagated.
    EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_THROWS_OWN_CLASS));
    message = e.what();
  } catch (...) {
    ADD_FAILURE() << "an exception that is not a PluginError left step()";
  }
  EXPECT_EQ(message, "optimizer 'fixture_throws_own_class' (plugin " + canonical(OPTREG_FIXTURE_THROWS_OWN_CLASS) +
                         "): update_group() threw: fixture_throws_own_class failed its step");
  EXPECT_EQ(p.value().to_vector(), (std::vector<float>{1.0f, 2.0f}));
}

TEST(PluginExceptions, EveryCallIntoThePluginIsNamed) {
  optreg::Registry r;
  r.load_file(OPTREG_FIXTURE_THROWS_OWN_CLASS);
  const std::string who = "optimizer 'fixture_throws_own_class' (plugin " + canonical(OPTREG_FIXTURE_THROWS_OWN_CLASS) + "): ";
  const optreg::Parameter p = param();
  EXPECT_EQ(message_of<optreg::PluginError>([&] { throwing_optimizer(r, p, "validate"); }),
            who + "validate() threw: fixture_throws_own_class refuses its options");
  EXPECT_EQ(message_of<optreg::PluginError>([&] { throwing_optimizer(r, p, "init_state"); }),
            who + "init_state() threw: fixture_throws_own_class cannot make its state");
  EXPECT_EQ(message_of<optreg::PluginError>([&] { throwing_optimizer(r, p, "not_std")->step(); }),
            who + "update_group() threw an exception that is not a std::exception");
}

TEST(PluginExceptions, AnOptionErrorOfThePluginStaysAnOptionErrorWithItsMessage) {
  std::string message;
  try {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_THROWS_OWN_CLASS);
    throwing_optimizer(r, param(), "option_error");
  } catch (const optreg::OptionError& e) {
    EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_THROWS_OWN_CLASS));
    message = e.what();
  }
  EXPECT_EQ(message, "optimizer 'fixture_throws_own_class': fixture_throws_own_class refuses its options");
}

TEST(PluginExceptions, AnOptionErrorOfAPluginKeepsItsFieldsAndGetsItsGroup) {
  const optreg::Registry& r = optreg_test::reference_registry();
  optreg::Parameter a("a", optreg::Tensor({2}));
  optreg::Parameter b("b", optreg::Tensor({2}));
  try {
    r.create("sgd", std::vector<optreg::ParamGroupSpec>{{{a}, {}}, {{b}, {{"nesterov", optreg::Value(true)}}}},
             {{"momentum", optreg::Value(0.0)}});
    ADD_FAILURE() << "no OptionError";
  } catch (const optreg::OptionError& e) {
    EXPECT_EQ(e.option(), "nesterov");
    EXPECT_EQ(e.part(), optreg::OptionPart::Rule);
    EXPECT_EQ(e.group(), 1);
    EXPECT_EQ(e.where(), "optimizer 'sgd', param group 1");
    EXPECT_EQ(std::string(e.what()), e.where() + ": " + e.reason());
  }
}

TEST(PluginExceptions, AnErrorOfAPluginBuiltAgainstTheOldErrorHeaderKeepsItsClassAndMessageOnly) {
  optreg::Registry r;
  r.load_file(OPTREG_FIXTURE_OLD_ERROR_LAYOUT);
  optreg::Parameter p = param(1.0f, 2.0f);
  try {
    r.create("fixture_old_error_layout", {p}, {{"lr", optreg::Value(2.0)}});
    ADD_FAILURE() << "no OptionError";
  } catch (const optreg::OptionError& e) {
    EXPECT_STREQ(e.what(), "optimizer 'fixture_old_error_layout': option 'lr' above 1 is refused");
    EXPECT_EQ(e.reason(), e.what());
    EXPECT_EQ(e.option(), "");
    EXPECT_EQ(e.part(), optreg::OptionPart::None);
  }
  optreg::OptimizerPtr opt = r.create("fixture_old_error_layout", {p});
  EXPECT_EQ(message_of<optreg::UsageError>([&] { opt->step(); }), "fixture_old_error_layout refuses to step");
  const std::vector<optreg::OptionError> found = r.validate_options("fixture_old_error_layout", {{"lr", optreg::Value(3.0)}});
  ASSERT_EQ(found.size(), 1U);
  EXPECT_STREQ(found[0].what(), "optimizer 'fixture_old_error_layout': option 'lr' above 1 is refused");
}

TEST(PluginExceptions, AValidateThatThrowsLeavesTheOptimizerAsItWas) {
  optreg::Registry r;
  r.load_file(OPTREG_FIXTURE_THROWS_OWN_CLASS);
  optreg::Parameter p = param(1.0f, 2.0f);
  optreg::OptimizerPtr opt = throwing_optimizer(r, p, "nowhere");
  EXPECT_THROW(opt->set_option("throw_in", optreg::Value("validate")), optreg::PluginError);
  EXPECT_THROW(opt->set_option(0, "throw_in", optreg::Value("validate")), optreg::PluginError);
  EXPECT_EQ(opt->param_groups()[0].option("throw_in").as_string(), "nowhere");
  opt->step();
  EXPECT_EQ(p.value().to_vector(), (std::vector<float>{0.95f, 2.1f}));
}

TEST(PluginExceptions, AnExceptionFromAWorkerThreadIsNotKeptByThePool) {
  optreg::set_num_threads(4);
  std::string message;
  try {
    optreg::Registry r;
    r.load_file(OPTREG_FIXTURE_THROWS_OWN_CLASS);
    throwing_optimizer(r, param(), "worker")->step();
  } catch (const optreg::PluginError& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "optimizer 'fixture_throws_own_class' (plugin " + canonical(OPTREG_FIXTURE_THROWS_OWN_CLASS) +
                         "): update_group() threw: fixture_throws_own_class failed on a worker thread");
  EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_THROWS_OWN_CLASS));
  // The next job on the pool releases whatever the pool still held of the last one.
  std::atomic<std::size_t> done{0};
  optreg::parallel_for(std::size_t{1} << 16, 1, [&](std::size_t b, std::size_t e) { done += e - b; });
  EXPECT_EQ(done.load(), std::size_t{1} << 16);
  optreg::set_num_threads(0);
}

TEST(PluginExceptions, ASchedulerThatThrowsItsOwnClassIsReadAfterTheLibraryIsUnloaded) {
  ASSERT_FALSE(is_loaded(OPTREG_FIXTURE_THROWING_SCHEDULE));
  const std::string who =
      "scheduler 'fixture_throwing_schedule' (plugin " + canonical(OPTREG_FIXTURE_THROWING_SCHEDULE) + "): ";
  optreg::Registry sgd;
  sgd.load_file(OPTREG_TEST_SGD_PLUGIN);
  optreg::OptimizerPtr opt = sgd.create("sgd", {param()}, {{"lr", 0.5}});
  /// The message of what `call` throws, read after the scheduler's library is unloaded.
  const auto message = [&](const char* option, const std::function<void(optreg::Scheduler&)>& call) {
    std::string m;
    try {
      optreg::Registry r;
      r.load_file(OPTREG_FIXTURE_THROWING_SCHEDULE);
      optreg::SchedulerPtr s = r.create_scheduler("fixture_throwing_schedule", *opt, {{"throw_in", option}});
      call(*s);
    } catch (const optreg::PluginError& e) {
      EXPECT_FALSE(is_loaded(OPTREG_FIXTURE_THROWING_SCHEDULE));
      m = e.what();
    }
    return m;
  };
  EXPECT_EQ(message("next_lr", [](optreg::Scheduler& s) { s.step(); }),
            who + "next_lr() threw: fixture_throwing_schedule failed its step");
  EXPECT_EQ(message("own_state", [](optreg::Scheduler& s) { s.state(); }),
            who + "own_state() threw: fixture_throwing_schedule lost its state");
  EXPECT_EQ(message("attach", [](optreg::Scheduler&) {}), who + "attach() threw: fixture_throwing_schedule cannot attach");
  EXPECT_EQ(opt->param_groups()[0].option("lr").as_float(), 0.5) << "a failed step leaves the lr";
}

TEST(PluginLifetime, FailedCreateLeavesNoObjectBehind) {
  optreg::Registry r;
  r.load_file(OPTREG_FIXTURE_SGD_LIKE);
  EXPECT_THROW(r.create("fixture_sgd_like", {param()}, {{"lr", -1}}), optreg::OptionError);
  EXPECT_EQ(live_sgd_like_instances(), 0);
}

}  // namespace
