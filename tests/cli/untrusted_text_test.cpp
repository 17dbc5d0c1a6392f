// Hostile names through every command of the optreg tool: names, descriptions, versions,
// meanings, choices, paths and metadata holding escape sequences, a NUL, newlines and bytes
// that are not UTF-8, from a plugin descriptor, a config, a params file, a checkpoint and file
// names. The terminal output must be inert, and every JSON output must be valid: a real JSON
// parser reads it, and every string in it is inert too.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>
#include <optreg/text.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using optreg_test::contains;
using optreg_test::shell_word;
using optreg_test::TempDir;
using optreg_test::write_file;

constexpr double kInf = std::numeric_limits<double>::infinity();

optreg_test::CommandRun tool(const std::string& args) {
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " " + args);
}

/// The exit status and the standard output alone of `optreg ARGS`.
optreg_test::CommandRun tool_stdout(const std::string& args) {
  return optreg_test::run_command("(OPTREG_PLUGIN_PATH= " + shell_word(OPTREG_TEST_TOOL) + " " + args + " 2>/dev/null)");
}

/// The first byte of `text` that must not reach a terminal (a newline ends a line and is
/// allowed), with its position; empty when there is none.
std::string first_live_byte(const std::string& text) {
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    const std::string line = text.substr(start, end - start);
    const std::string inert = optreg::escape_message(line);
    if (inert != line) {
      std::size_t at = 0;
      while (at < line.size() && at < inert.size() && line[at] == inert[at]) ++at;
      return "byte " + std::to_string(start + at) + " in the line: " + inert;
    }
    start = end + 1;
  }
  return {};
}

/// Parses `text` as one JSON document and checks that every string in it (keys included) is
/// inert; returns the document, or null after a test failure.
Json parse_json(const std::string& text, const std::string& what) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    ADD_FAILURE() << what << ": not valid JSON: " << e.what() << "\n" << optreg::escape_text(text);
    return Json();
  }
  std::vector<const Json*> todo = {&j};
  while (!todo.empty()) {
    const Json* v = todo.back();
    todo.pop_back();
    if (v->is_string()) {
      const auto& s = v->get_ref<const std::string&>();
      EXPECT_EQ(optreg::escape_message(s), s) << what << ": a string in the JSON is not inert";
    }
    if (v->is_object()) {
      for (const auto& [key, value] : v->items()) {
        EXPECT_EQ(optreg::escape_message(key), key) << what << ": a key in the JSON is not inert";
        todo.push_back(&value);
      }
    } else if (v->is_array()) {
      for (const auto& value : *v) todo.push_back(&value);
    }
  }
  return j;
}

/// Hostile inputs of every kind, in a temporary folder.
class UntrustedText : public ::testing::Test {
 protected:
  void SetUp() override {
    // Plugin files under hostile names, in a folder under a hostile name.
    fs::create_directories(plugins_);
    fs::copy_file(OPTREG_FIXTURE_HOSTILE_TEXT, plugins_ + "/libevil\x1b[31m\xff.so");
    fs::copy_file(OPTREG_FIXTURE_HOSTILE_SCHEDULER, plugins_ + "/libworse\x1b]0;t\x07.so");
    write_file(plugins_ + "/libjunk\x1b[2J\xc2\x85.so", "not a library\n");

    // A config that uses the hostile optimizer and names its plugin folder.
    write_file(config_,
               "optimizer:\n  name: fixture_hostile_text\n  mode: \"plain\\e[1m\"\n"
               "param_groups:\n  - params: \"enc\\e[31m*\"\n    lr: 0.5\n"
               "plugins:\n  paths: \"" + dir_.path() + "/plug\\e[7m\\u0085\"\n");
    write_file(params_, "\"enc\\e[31m.w\\0x\": [2, 3]\n\"b\\r\\nfake\": [3]\n");
    write_checkpoint();
  }

  /// A checkpoint written through the API with non-finite metadata and list values, and names
  /// with control characters, a NUL and invalid UTF-8.
  void write_checkpoint() {
    const optreg::Registry& registry = optreg_test::reference_registry();
    optreg::Parameter w("w\x1b[31m", optreg::Tensor({2}, {1.0F, static_cast<float>(kInf)}));
    optreg::Parameter b(std::string("nul\0name", 8), optreg::Tensor({1}, {0.5F}));
    optreg::Parameter v("bad\xff\xfe", optreg::Tensor({1}, {0.25F}));
    auto opt = registry.create("adam", {w, b, v});
    auto sched = registry.create_scheduler("step", *opt, {{"step_size", 1}});
    const std::string path = dir_ / "good.ckpt";
    optreg::save_optimizer(path, *opt, *sched,
                           {{"ratio", kInf},
                            {"nan", std::nan("")},
                            {"list", optreg::Value({1.5, kInf, -kInf, std::nan("")})},
                            {"label\x1b[2J", optreg::Value(std::string("value\x1b]0;t\x07\xff\0end", 16))},
                            {std::string("k\0ey", 4), optreg::Value("\\x1b is not ESC")}});
    // Forge what the API would not write: names in the state dict and the scheduler state.
    optreg::Checkpoint c = optreg::read_checkpoint(path);
    c.optimizer.optimizer = "adam\x1b[H";
    c.optimizer.plugin_version = "1.0\xc0";
    c.optimizer.param_groups[0].options["odd\nkey"] = optreg::Value({kInf, 1.0});
    c.optimizer.state[0].add_scalar("st\x1b[1mep", std::int64_t{3});
    c.optimizer.state[1].add_tensor("buf\x7f", optreg::Tensor({1}, {0.0F}));
    c.scheduler->scheduler = "step\x9b";
    c.scheduler->state["hostile\x1b"] = optreg::Value({-kInf});
    optreg::save_checkpoint(hostile_checkpoint_, c);
  }

  std::string plugin_option() const { return "--no-default-path --plugin-path " + shell_word(plugins_); }

  TempDir dir_;
  const std::string plugins_ = dir_ / "plug\x1b[7m\xc2\x85";
  const std::string config_ = dir_ / "cfg\x1b[31m.yaml";
  const std::string params_ = dir_ / "params\x1b[31m.yaml";
  const std::string hostile_checkpoint_ = dir_ / "ck\x1b[2J\xff.ckpt";
};

}  // namespace

TEST_F(UntrustedText, EveryCommandPrintsHostileNamesInert) {
  struct Case {
    std::string args;
    int status;
    std::string expected;  // what the output must hold, escaped
  };
  const std::vector<Case> cases = {
      {"list " + plugin_option(), 1, "descent \\x1b[2J\\x1b[H\\x9b31m with a hostile description\\x0asecond line"},
      {"show fixture_hostile_text " + plugin_option(), 0, "1.0\\x1b[31m\\xfe"},
      {"show fixture_hostile_schedule " + plugin_option(), 0, "halves \\x1b]2;title\\x07 the lr\\x0d"},
      {"show " + shell_word("adam\x1b[2J"), 1, "no optimizer or scheduler named 'adam\\x1b[2J' is registered"},
      {"check " + shell_word(config_) + " --params " + shell_word(params_) + " --no-default-path", 0,
       "    enc\\x1b[31m.w\\x00x [2, 3]"},
      {"check " + shell_word(dir_ / "missing\x1b[2J.yaml"), 1, "missing\\x1b[2J.yaml"},
      {"inspect " + shell_word(hostile_checkpoint_), 0, "  label\\x1b[2J: \"value\\x1b]0;t\\x07\\xff\\x00end\""},
      {"inspect " + shell_word(dir_ / "none\x1b[2J"), 1, "none\\x1b[2J"},
      {"conformance " + shell_word(plugins_ + "/libevil\x1b[31m\xff.so"), 0,
       "(plugin fixture_hostile_text 1.0\\x1b[31m\\xfe: 6 hyperparameters"},
      {"problems", 0, "quadratic  "},
      {"list " + shell_word("--bogus\x1b[2J"), 2, "unknown argument '--bogus\\x1b[2J'"},
  };
  for (const Case& c : cases) {
    const auto r = tool(c.args);
    const std::string shown = optreg::escape_text(c.args);
    EXPECT_EQ(r.status, c.status) << shown << "\n" << optreg::escape_text(r.out);
    EXPECT_EQ(first_live_byte(r.out), "") << shown;
    EXPECT_TRUE(contains(r.out, c.expected)) << shown << "\n" << r.out;
  }
}

TEST_F(UntrustedText, ListTellsHostileDescriptorTextApartAndNamesTheFiles) {
  const auto r = tool("list " + plugin_option());
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "fixture_hostile_text  1.0\\x1b[31m\\xfe  descent ")) << r.out;
  EXPECT_TRUE(contains(r.out, "  from " + optreg::escape_text(plugins_) + "/libevil\\x1b[31m\\xff.so")) << r.out;
  EXPECT_TRUE(contains(r.out, "mode            string  \"plain\\x1b[1m\"  plain\\x1b[1m|odd\\xff   a mode\\x0d\\x0afake: line "
                              "\\xc2\\x9b2J"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "trace          never created \\x1b]0;title\\x07 caf\\xe9 back\\x5cslash (tensor, optional, any value)"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "  " + optreg::escape_text(plugins_) + "/libjunk\\x1b[2J\\xc2\\x85.so: the dynamic loader "))
      << r.out;
}

TEST_F(UntrustedText, EveryJsonOutputParsesAndKeepsEveryByteRecoverable) {
  const std::vector<std::pair<std::string, int>> commands = {
      {"list --json " + plugin_option(), 1},
      {"show fixture_hostile_text --json " + plugin_option(), 0},
      {"show fixture_hostile_schedule --json " + plugin_option(), 0},
      {"show --json " + shell_word("adam\x1b[2J\xff"), 1},
      {"check --json " + shell_word(config_) + " --params " + shell_word(params_) + " --no-default-path", 0},
      {"check --json " + shell_word(config_) + " --no-default-path --plugin-path " + shell_word(params_), 0},
      {"inspect --json " + shell_word(hostile_checkpoint_), 0},
      {"inspect --json " + shell_word(dir_ / "none\x1b[2J\xff"), 1},
      {"conformance --json " + shell_word(plugins_ + "/libevil\x1b[31m\xff.so"), 0},
      {"conformance --json " + shell_word(plugins_ + "/libjunk\x1b[2J\xc2\x85.so"), 1},
  };
  for (const auto& [args, status] : commands) {
    const std::string shown = optreg::escape_text(args);
    const auto r = tool_stdout(args);
    EXPECT_EQ(r.status, status) << shown << "\n" << optreg::escape_text(r.out);
    parse_json(r.out, shown);
  }

  // Strings hold the bytes escaped: unescape_text() gives the original back.
  const auto list = tool_stdout("list --json " + plugin_option());
  const Json l = parse_json(list.out, "list");
  ASSERT_TRUE(l.is_object()) << list.out;
  const Json* hostile = nullptr;
  for (const auto& o : l["optimizers"]) {
    if (o["name"] == "fixture_hostile_text") hostile = &o;
  }
  ASSERT_NE(hostile, nullptr) << list.out;
  EXPECT_EQ(optreg::unescape_text((*hostile)["version"].get<std::string>()), "1.0\x1b[31m\xfe");
  EXPECT_EQ(optreg::unescape_text((*hostile)["source"].get<std::string>()),
            fs::canonical(plugins_ + "/libevil\x1b[31m\xff.so").string());
  EXPECT_EQ((*hostile)["hyperparameters"][1]["choices"][1], "odd\\xff");

  const auto inspect = tool_stdout("inspect --json " + shell_word(hostile_checkpoint_));
  const Json c = parse_json(inspect.out, "inspect");
  ASSERT_TRUE(c.is_object()) << inspect.out;
  EXPECT_EQ(c["valid"], true);
  EXPECT_EQ(optreg::unescape_text(c["file"].get<std::string>()), hostile_checkpoint_);
  EXPECT_EQ(c["optimizer"], "adam\\x1b[H");
  EXPECT_EQ(c["plugin_version"], "1.0\\xc0");
  EXPECT_EQ(c["metadata"]["ratio"], ".inf");
  EXPECT_EQ(c["metadata"]["nan"], ".nan");
  EXPECT_EQ(c["metadata"]["list"], Json::parse(R"([1.5, ".inf", "-.inf", ".nan"])"));
  EXPECT_EQ(optreg::unescape_text(c["metadata"]["label\\x1b[2J"].get<std::string>()),
            std::string("value\x1b]0;t\x07\xff\0end", 16));
  EXPECT_EQ(c["metadata"]["k\\x00ey"], "\\x5cx1b is not ESC") << "a literal backslash is told apart from an escape";
  EXPECT_EQ(optreg::unescape_text(c["parameters"][1]["name"].get<std::string>()), std::string("nul\0name", 8));
  EXPECT_EQ(c["parameters"][2]["name"], "bad\\xff\\xfe");
  EXPECT_EQ(c["parameters"][0]["value"]["non_finite"], 1);
  EXPECT_EQ(c["param_groups"][0]["options"]["odd\\x0akey"], Json::parse(R"([".inf", 1.0])"));
  EXPECT_EQ(c["state"]["0"]["st\\x1b[1mep"], 3);
  EXPECT_TRUE(c["state"]["1"].contains("buf\\x7f")) << c["state"]["1"];
  EXPECT_EQ(c["scheduler"]["name"], "step\\x9b");
  EXPECT_EQ(c["scheduler"]["state"]["hostile\\x1b"], Json::parse(R"(["-.inf"])"));
}

TEST_F(UntrustedText, CheckJsonPrintsAnObjectForEveryError) {
  TempDir other;
  write_file(other / "junk.so", "not a library\n");
  write_file(other / "ok.yaml", "optimizer: {name: sgd}\n");
  write_file(other / "unknown.yaml", "optimizer: {name: \"ad\\e[2Jam\"}\n");
  write_file(other / "plugin.yaml", "optimizer: {name: fixture_hostile_text}\n");
  write_file(other / "bad_params.yaml", "w: [2, -3]\n");
  struct Case {
    std::string args;
    int status;
    std::string error;  // what the "error" member must hold
  };
  const std::vector<Case> cases = {
      // The config itself.
      {shell_word(other / "unknown.yaml"), 1, "unknown optimizer 'ad\\x1b[2Jam'"},
      // A file that cannot be read.
      {shell_word(other / "missing.yaml"), 1, other / "missing.yaml"},
      {shell_word(other.path()), 1, other.path()},
      // A bad --params file, or a missing one.
      {shell_word(other / "ok.yaml") + " --params " + shell_word(other / "bad_params.yaml"), 1, "bad_params.yaml"},
      {shell_word(other / "ok.yaml") + " --params " + shell_word(other / "none.yaml"), 1, "none.yaml"},
      // A plugin that cannot be loaded: the optimizer the config names is then not registered.
      {shell_word(other / "plugin.yaml") + " --no-default-path --plugin-path " + shell_word(other / "junk.so"), 1,
       "unknown optimizer 'fixture_hostile_text'"},
      // A usage error: exit 2, and the object still comes.
      {"--bogus", 2, "unexpected argument '--bogus'"},
  };
  for (const Case& c : cases) {
    const auto r = tool_stdout("check --json " + c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.out;
    const Json j = parse_json(r.out, c.args);
    ASSERT_TRUE(j.is_object()) << c.args << "\n" << r.out;
    ASSERT_TRUE(j.contains("error")) << c.args << "\n" << r.out;
    EXPECT_TRUE(contains(j["error"].get<std::string>(), c.error)) << c.args << "\n" << r.out;
    if (c.status == 1) {
      EXPECT_EQ(j["valid"], false) << r.out;
    }
  }
  const auto refused = tool_stdout("check --json " + shell_word(other / "plugin.yaml") +
                                   " --no-default-path --plugin-path " + shell_word(other / "junk.so"));
  const Json j = parse_json(refused.out, "refused");
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["refused"].size(), 1U) << refused.out;
  EXPECT_EQ(j["refused"][0]["path"], other / "junk.so") << "the refusal that explains the error comes with it";
}

TEST_F(UntrustedText, OtherJsonCommandsPrintAnObjectForEveryErrorToo) {
  TempDir other;
  fs::create_directories(other / "plugins");
  const std::vector<std::pair<std::string, int>> cases = {
      {"inspect --json " + shell_word(other / "missing.ckpt"), 1},
      {"inspect --json " + shell_word(other.path()), 1},
      {"show --json nothing_of_the_kind --no-default-path", 1},
      {"show --json", 2},
      {"list --json --bogus", 2},
      {"conformance --json", 2},
      {"inspect --json a b", 2},
  };
  for (const auto& [args, status] : cases) {
    const auto r = tool_stdout(args);
    EXPECT_EQ(r.status, status) << args << "\n" << r.out;
    const Json j = parse_json(r.out, args);
    ASSERT_TRUE(j.is_object()) << args << "\n" << r.out;
    EXPECT_TRUE(j.contains("error")) << args << "\n" << r.out;
  }
}
