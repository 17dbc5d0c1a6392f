// The optreg command line, run as a user runs it: output and exit status.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace {

struct ToolRun {
  int status = -1;
  std::string out;  // stdout and stderr together
};

ToolRun run(const std::string& args) {
  // OPTREG_PLUGIN_PATH is emptied so that only what a test names is loaded besides the
  // in-tree folder found beside the core library.
  const std::string cmd = "OPTREG_PLUGIN_PATH= '" + std::string(OPTREG_TEST_TOOL) + "' " + args + " 2>&1";
  ToolRun r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe) != nullptr) r.out += buf.data();
  const int st = pclose(pipe);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string plugin_dir() { return std::string("'") + OPTREG_TEST_PLUGIN_DIR + "'"; }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "optreg-cli-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST(Cli, ListShowsEveryInTreeOptimizerWithVersionSourceAndSchema) {
  const ToolRun r = run("list --no-default-path --plugin-path " + plugin_dir());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "adam  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "sgd  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "liboptreg_sgd.so (plugin sgd)")) << r.out;
  EXPECT_TRUE(contains(r.out, "betas         list of floats  [0.9, 0.999]  2 x [0.0, 1.0)")) << r.out;
  EXPECT_TRUE(contains(r.out, "nesterov      bool   false    true|false  use Nesterov momentum")) << r.out;
  EXPECT_LT(r.out.find("adam  1.0.0"), r.out.find("sgd  1.0.0")) << "sorted by name";
}

TEST(Cli, ListFindsTheInstalledFolderBesideTheCoreLibraryByDefault) {
  const ToolRun r = run("list");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "sgd  1.0.0")) << r.out;
}

TEST(Cli, ListJsonIsMachineReadable) {
  const ToolRun r = run("list --json --no-default-path --plugin-path " + plugin_dir());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "\"name\": \"adam\", \"version\": \"1.0.0\"")) << r.out;
  EXPECT_TRUE(contains(r.out, "{\"name\": \"eps\", \"type\": \"float\", \"default\": 1e-08, \"min\": 0.0, "
                              "\"min_inclusive\": false, \"max\": null, \"max_inclusive\": false"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "\"refused\": []")) << r.out;
}

TEST(Cli, ListNamesARefusedPluginAndExitsNonZero) {
  TempDir dir;
  std::ofstream(dir.path() + "/libjunk.so") << "not a shared library\n";
  const ToolRun r = run("list --no-default-path --plugin-path " + plugin_dir() + " --plugin-path '" + dir.path() + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "refused plugins:")) << r.out;
  EXPECT_TRUE(contains(r.out, dir.path() + "/libjunk.so: the dynamic loader refused it:")) << r.out;
  EXPECT_TRUE(contains(r.out, "sgd  1.0.0")) << "the good plugins still load\n" << r.out;

  const ToolRun allowed = run("list --allow-refused --no-default-path --plugin-path '" + dir.path() + "'");
  EXPECT_EQ(allowed.status, 0) << allowed.out;

  const ToolRun json = run("list --json --no-default-path --plugin-path '" + dir.path() + "/libjunk.so'");
  EXPECT_EQ(json.status, 1) << json.out;
  EXPECT_TRUE(contains(json.out, "\"path\": \"" + dir.path() + "/libjunk.so\", \"reason\": ")) << json.out;
}

TEST(Cli, ShowPrintsOneOptimizerAndSuggestsCloseNames) {
  const ToolRun r = run("show sgd");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "momentum      float  0.0")) << r.out;
  EXPECT_FALSE(contains(r.out, "adam")) << r.out;
  const ToolRun miss = run("show adm");
  EXPECT_EQ(miss.status, 1) << miss.out;
  EXPECT_TRUE(contains(miss.out, "no optimizer named 'adm' is registered (did you mean 'adam'?)")) << miss.out;
}

TEST(Cli, HelpAndVersion) {
  const ToolRun help = run("--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_TRUE(contains(help.out, "usage: optreg <command>")) << help.out;
  const ToolRun list_help = run("list --help");
  EXPECT_TRUE(contains(list_help.out, "--allow-refused")) << list_help.out;
  const ToolRun version = run("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_TRUE(contains(version.out, "optreg 0.1.0 (plugin ABI 1, libstdc++")) << version.out;
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run("").status, 2);
  const ToolRun r = run("list --bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.out, "optreg list: unknown argument '--bogus'")) << r.out;
  EXPECT_EQ(run("frobnicate").status, 2);
  EXPECT_EQ(run("list --plugin-path").status, 2);
}
