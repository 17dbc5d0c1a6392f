#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "registry_fixture.hpp"
#include "test_support.hpp"

#include <optreg/config.hpp>

namespace {

struct BadConfig {
  const char* name;
  const char* yaml;
  const char* message;
};

const BadConfig kBadConfigs[] = {
#include "cases.inc"
};

std::vector<optreg::Parameter> params() {
  return {optreg::Parameter("layer1.weight", optreg::Tensor({4, 3})), optreg::Parameter("layer1.bias", optreg::Tensor({4})),
          optreg::Parameter("layer2.weight", optreg::Tensor({2, 4})), optreg::Parameter("layer2.bias", optreg::Tensor({2}))};
}

const optreg::Registry& registry() { return optreg_test::reference_registry(); }

std::string message_of(const char* yaml) {
  try {
    const optreg::OptimizerConfig c = optreg::parse_config(yaml, "bad.yaml", "/configs");
    optreg::build_optimizer(c, params(), registry());
  } catch (const optreg::ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

class BadConfigs : public ::testing::TestWithParam<BadConfig> {};

}  // namespace

TEST_P(BadConfigs, GiveTheirExactMessage) { EXPECT_EQ(message_of(GetParam().yaml), GetParam().message); }

INSTANTIATE_TEST_SUITE_P(Config, BadConfigs, ::testing::ValuesIn(kBadConfigs),
                         [](const ::testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.name); });

TEST(Config, ThereAreAtLeastTwentyBadConfigs) { EXPECT_GE(std::size(kBadConfigs), 20U); }

namespace {

using optreg_test::TempDir;

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kExample = R"(optimizer:
  name: adam
  lr: 1.0e-3
  betas: [0.9, 0.999]
  weight_decay: 0.01
param_groups:
  - params: ["*.bias", "*norm*"]
    weight_decay: 0.0
  - params: "layer2.*"
    lr: 1.0e-4
)";

}  // namespace

TEST(Config, AverageAndAccumulateSectionsBuildTheirComponentsWithEverySettingRead) {
  const optreg::OptimizerConfig c = optreg::parse_config(
      "optimizer: {name: sgd, lr: 0.1}\n"
      "average: {kind: ema, decay: 0.995, warmup: true, every: 4, start: 100}\n"
      "accumulate: {steps: 8, reduce: sum}\n",
      "c.yaml");
  ASSERT_TRUE(c.average && c.accumulate);
  EXPECT_EQ(c.average->mark.line, 2);
  const std::vector<optreg::Parameter> ps = params();
  optreg::OptimizerPtr opt = optreg::build_optimizer(c, ps, registry());
  const auto average = optreg::build_average(c, *opt);
  ASSERT_NE(average, nullptr);
  EXPECT_EQ(average->settings().kind, optreg::AverageSettings::Kind::Ema);
  EXPECT_EQ(average->settings().decay, 0.995);
  EXPECT_TRUE(average->settings().warmup);
  EXPECT_EQ(average->settings().every, 4);
  EXPECT_EQ(average->settings().start, 100);
  EXPECT_EQ(average->parameters().size(), ps.size());
  const auto accumulator = optreg::build_accumulator(c, opt->parameters());
  ASSERT_NE(accumulator, nullptr);
  EXPECT_EQ(accumulator->settings().steps, 8);
  EXPECT_EQ(accumulator->settings().reduce, optreg::AccumulateSettings::Reduce::Sum);

  const optreg::OptimizerConfig plain = optreg::parse_config("optimizer: {name: sgd}\naverage: {kind: swa}\n", "p.yaml");
  optreg::OptimizerPtr other = optreg::build_optimizer(plain, params(), registry());
  EXPECT_EQ(optreg::build_average(plain, *other)->settings().kind, optreg::AverageSettings::Kind::Swa);
  EXPECT_EQ(optreg::build_accumulator(plain, other->parameters()), nullptr);
}

TEST(Config, BuildsTheSameOptimizerAsRegistryCreate) {
  auto ps = params();  // layer1.weight, layer1.bias, layer2.weight, layer2.bias
  ps.emplace_back("norm.scale", optreg::Tensor({4}));
  const auto opt = optreg::build_optimizer(optreg::parse_config(kExample), ps, registry());
  const auto same = registry().create(
      "adam",
      std::vector<optreg::ParamGroupSpec>{{{ps[0]}, {}},
                                          {{ps[1], ps[3], ps[4]}, {{"weight_decay", 0.0}}},
                                          {{ps[2]}, {{"lr", 1e-4}}}},
      {{"lr", 1e-3}, {"betas", {0.9, 0.999}}, {"weight_decay", 0.01}});
  ASSERT_EQ(opt->name(), same->name());
  ASSERT_EQ(opt->param_groups().size(), same->param_groups().size());
  for (std::size_t g = 0; g < same->param_groups().size(); ++g) {
    EXPECT_EQ(opt->param_groups()[g].options(), same->param_groups()[g].options()) << "group " << g;
    ASSERT_EQ(opt->param_groups()[g].params().size(), same->param_groups()[g].params().size());
    for (std::size_t i = 0; i < same->param_groups()[g].params().size(); ++i) {
      EXPECT_TRUE(opt->param_groups()[g].params()[i].same_as(same->param_groups()[g].params()[i]));
    }
  }
}

TEST(Config, ParametersNoGroupMatchesFormTheFirstGroup) {
  const auto c = optreg::parse_config("optimizer: {name: sgd}\nparam_groups:\n  - params: '*.bias'\n    lr: 0.5\n");
  const auto plan = optreg::plan_groups(c, {"a.weight", "a.bias", "b.weight"});
  ASSERT_EQ(plan.groups.size(), 2U);
  EXPECT_EQ(plan.groups[0].config_index, -1);
  EXPECT_EQ(plan.groups[0].params, (std::vector<std::size_t>{0, 2}));
  EXPECT_EQ(plan.groups[1].params, (std::vector<std::size_t>{1}));
}

TEST(Config, AParameterMatchedByTwoGroupsGoesToTheFirst) {
  const auto c = optreg::parse_config(
      "optimizer: {name: sgd}\nparam_groups:\n  - params: ['*.bias']\n  - params: ['a.*']\n");
  const auto plan = optreg::plan_groups(c, {"a.weight", "a.bias"});
  ASSERT_EQ(plan.groups.size(), 2U);  // no default group: every parameter is matched
  EXPECT_EQ(plan.groups[0].config_index, 0);
  EXPECT_EQ(plan.groups[0].params, (std::vector<std::size_t>{1}));
  EXPECT_EQ(plan.groups[1].params, (std::vector<std::size_t>{0}));
}

TEST(Config, GroupsSelectByNdimShapeAndRegexAndEverySelectorWrittenMustHold) {
  const auto c = optreg::parse_config(
      "optimizer: {name: adam, weight_decay: 0.1}\n"
      "param_groups:\n"
      "  - ndim: 1\n"
      "    weight_decay: 0.0\n"           // no decay for any vector
      "  - shape: [2, 4]\n"
      "    lr: 0.5\n"
      "  - regex: 'layer1\\..*'\n"
      "    params: '*.weight'\n"          // both: layer1.weight only
      "    lr: 0.25\n");
  const std::vector<optreg::ParamInfo> info = {
      {"layer1.weight", {4, 3}}, {"layer1.bias", {4}}, {"layer2.weight", {2, 4}}, {"layer2.bias", {2}}};
  const auto plan = optreg::plan_groups_with_shapes(c, info);
  ASSERT_EQ(plan.groups.size(), 3U);  // every parameter is selected: no default group
  EXPECT_EQ(plan.groups[0].params, (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(plan.groups[1].params, (std::vector<std::size_t>{2}));
  EXPECT_EQ(plan.groups[2].params, (std::vector<std::size_t>{0}));
  // Without shapes, ndim and shape cannot be decided.
  EXPECT_EQ(optreg_test::message_of<optreg::ConfigError>([&] {
              optreg::plan_groups(c, std::vector<std::string>{"layer1.weight", "layer1.bias"});
            }),
            "<string>:3:11: param_groups[0] selects parameters by ndim, which needs their shapes (optreg check --params "
            "FILE gives them)");
  // build_optimizer() has the shapes.
  auto opt = optreg::build_optimizer(c, params(), registry());
  ASSERT_EQ(opt->param_groups().size(), 3U);
  EXPECT_DOUBLE_EQ(opt->param_groups()[0].option("weight_decay").as_float(), 0.0);
  EXPECT_EQ(opt->param_groups()[0].params()[1].name(), "layer2.bias");
}

TEST(Config, LayerDecayMakesOneGroupPerLayerWithTheLrTimmGivesIt) {
  const auto c = optreg::parse_config(
      "optimizer: {name: adam, lr: 0.01}\n"
      "param_groups:\n"
      "  - regex: 'blocks\\.(\\d+)\\..*'\n"
      "    layer_decay: 0.5\n"
      "scheduler: {name: step, step_size: 1, gamma: 0.1}\n");
  std::vector<optreg::Parameter> ps;
  for (const char* n : {"embed.weight", "blocks.2.weight", "blocks.0.weight", "blocks.10.bias", "blocks.0.bias", "head.weight"}) {
    ps.emplace_back(n, optreg::Tensor({2}));
  }
  auto opt = optreg::build_optimizer(c, ps, registry());
  const auto& g = opt->param_groups();
  ASSERT_EQ(g.size(), 4U);  // the default group (embed, head), then layers 0, 2, 10
  EXPECT_DOUBLE_EQ(g[0].option("lr").as_float(), 0.01);
  EXPECT_EQ(g[1].params().size(), 2U);
  EXPECT_EQ(g[1].params()[0].name(), "blocks.0.weight");
  // num_layers defaults to the largest layer + 1 = 11: layer L takes 0.5^(11 - L).
  EXPECT_DOUBLE_EQ(g[1].option("lr").as_float(), 0.01 * std::pow(0.5, 11));
  EXPECT_DOUBLE_EQ(g[2].option("lr").as_float(), 0.01 * std::pow(0.5, 9));
  EXPECT_DOUBLE_EQ(g[3].option("lr").as_float(), 0.01 * 0.5);
  // The lrs are the groups' real ones: a scheduler scales each.
  auto sched = optreg::build_scheduler(c, *opt, registry());
  sched->step();
  EXPECT_DOUBLE_EQ(opt->param_groups()[3].option("lr").as_float(), 0.01 * 0.5 * 0.1);
  const auto plan = optreg::plan_groups(c, std::vector<std::string>{"blocks.3.w", "blocks.1.w"});
  ASSERT_EQ(plan.groups.size(), 2U);
  EXPECT_EQ(plan.groups[0].layer, 1);
  EXPECT_DOUBLE_EQ(plan.groups[0].lr_scale, 0.125);
  EXPECT_EQ(plan.groups[1].layer, 3);
  EXPECT_DOUBLE_EQ(plan.groups[1].lr_scale, 0.5);
}

TEST(Config, RegexSelectorsMatchLongNamesAndRefuseUnboundedBacktrackingAtTheirLine) {
  // A name of a million characters: std::regex's matcher recursed once per character.
  const auto c = optreg::parse_config(
      "optimizer: {name: sgd}\nparam_groups:\n  - regex: 'blocks\\.(\\d+)\\..*'\n"
      "    layer_decay: 0.5\n",
      "ok.yaml");
  const std::string long_name = "blocks.2." + std::string(1000000, 'w');
  const auto plan = optreg::plan_groups(c, std::vector<std::string>{long_name, "head"});
  ASSERT_EQ(plan.groups.size(), 2U);
  EXPECT_EQ(plan.groups[1].layer, 2);
  // A repetition inside a repetition against a name it almost matches backtracks without
  // bound: an error naming the regex, its line and the parameter, not a hang.
  const auto bad = optreg::parse_config("optimizer: {name: sgd}\nparam_groups:\n  - regex: '(a*)*b'\n", "bad.yaml");
  const std::string name(40, 'a');
  const std::string message =
      optreg_test::message_of<optreg::ConfigError>([&] { optreg::plan_groups(bad, std::vector<std::string>{name}); });
  EXPECT_EQ(message,
            "bad.yaml:3:12: regex '(a*)*b' of param_groups[0]: matching it against a name of 40 characters exceeds "
            "the matcher's bounds on steps and memory (a repetition inside a repetition, as in '(a*)*', or a "
            "repeated group over a long name can grow without bound) (parameter '" +
                name + "')");
}

TEST(Config, TwoParametersWithOneNameAreRefused) {
  const auto c = optreg::parse_config("optimizer: {name: sgd}\n");
  EXPECT_THROW(optreg::plan_groups(c, {"w", "w"}), optreg::UsageError);
}

TEST(Config, ValuesAreTypedByTheYamlCoreSchema) {
  const auto c = optreg::parse_config(
      "optimizer:\n  name: sgd\n  lr: 1\n  momentum: 9.0e-1\n  nesterov: True\n  dampening: 0.\n");
  ASSERT_EQ(c.options.size(), 4U);
  EXPECT_EQ(c.options[0].value, optreg::Value(1));
  EXPECT_EQ(c.options[1].value, optreg::Value(0.9));
  EXPECT_EQ(c.options[2].value, optreg::Value(true));
  EXPECT_EQ(c.options[3].value, optreg::Value(0.0));
  EXPECT_EQ(c.options[1].key_mark.line, 4);
  EXPECT_EQ(c.options[1].value_mark.column, 13);
  // An integer is accepted for a float option.
  const auto opt = optreg::build_optimizer(c, params(), registry());
  EXPECT_EQ(opt->param_groups()[0].option("lr").as_float(), 1.0);
}

TEST(Config, RelativePluginPathsResolveAgainstTheConfigFolderNotTheCurrentOne) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/conf/plugins");
  std::filesystem::copy_file(OPTREG_TEST_ADAM_PLUGIN, dir.path() + "/conf/plugins/liboptreg_adam.so");
  write(dir.path() + "/conf/opt.yaml", "optimizer: {name: adam}\nplugins:\n  paths: [plugins/]\n");
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());  // a folder that has no plugins/ of its own
  const auto c = optreg::load_config("conf/opt.yaml");
  std::filesystem::current_path(cwd);
  ASSERT_EQ(c.plugin_paths.size(), 1U);
  EXPECT_EQ(c.plugin_paths[0], std::filesystem::canonical(dir.path()).string() + "/conf/plugins/");
  optreg::Registry r;
  ::setenv("OPTREG_PLUGIN_PATH", "", 1);
  optreg::load_config_plugins(c, r);
  ASSERT_TRUE(r.find("adam").has_value());
  EXPECT_EQ(r.find("adam")->source, std::filesystem::canonical(dir.path()).string() + "/conf/plugins/liboptreg_adam.so");
}

TEST(Config, ConfigPluginPathsComeBeforeTheEnvironmentAndTheInstalledFolder) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/mine");
  std::filesystem::create_directories(dir.path() + "/env");
  std::filesystem::copy_file(OPTREG_TEST_SGD_PLUGIN, dir.path() + "/mine/liboptreg_sgd.so");
  std::filesystem::copy_file(OPTREG_TEST_SGD_PLUGIN, dir.path() + "/env/liboptreg_sgd.so");
  write(dir.path() + "/opt.yaml", "optimizer: {name: sgd}\nplugins: {paths: mine}\n");
  ::setenv("OPTREG_PLUGIN_PATH", (dir.path() + "/env").c_str(), 1);
  optreg::Registry r;
  const auto refused = optreg::load_config_plugins(optreg::load_config(dir.path() + "/opt.yaml"), r);
  ::unsetenv("OPTREG_PLUGIN_PATH");
  const std::string root = std::filesystem::canonical(dir.path()).string();
  EXPECT_EQ(r.find("sgd")->source, root + "/mine/liboptreg_sgd.so");
  ASSERT_GE(refused.size(), 1U);
  EXPECT_EQ(refused[0].path, root + "/env/liboptreg_sgd.so");
}

TEST(Config, AMissingPluginPathIsAnErrorAtItsPosition) {
  TempDir dir;
  write(dir.path() + "/opt.yaml", "optimizer: {name: sgd}\nplugins:\n  paths: [nowhere/]\n");
  optreg::Registry r;
  try {
    optreg::load_config_plugins(optreg::load_config(dir.path() + "/opt.yaml"), r);
    FAIL() << "no ConfigError";
  } catch (const optreg::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.path() + "/opt.yaml:3:11: plugin path " + dir.path() + "/nowhere/ does not exist");
  }
}

TEST(Config, AMissingFileIsAnErrorNamingIt) {
  try {
    optreg::load_config("/nonexistent/opt.yaml");
    FAIL() << "no ConfigError";
  } catch (const optreg::ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/opt.yaml: cannot open the config file: No such file or directory");
  }
}

namespace {

/// The ConfigError message of loading `path` as a config (or, with `params`, as a parameter list),
/// in a child process so that a reader that blocks fails the test instead of hanging it.
std::string load_message(const std::string& path, bool params = false) {
  const optreg_test::CommandRun r = optreg_test::run_in_child([&] {
    if (params) {
      optreg::load_param_list(path);
    } else {
      optreg::load_config(path);
    }
  });
  EXPECT_EQ(r.status, 1) << "0: loaded, -1: killed (blocked?): " << path;
  return r.out;
}

}  // namespace

TEST(Config, AFifoIsRefusedWithoutWaitingForAWriter) {
  TempDir dir;
  const std::string fifo = dir.path() + "/opt.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(load_message(fifo), fifo + ": the config file is a FIFO (named pipe), not a regular file");
  EXPECT_EQ(load_message(fifo, true), fifo + ": the parameter list is a FIFO (named pipe), not a regular file");
}

TEST(Config, AFolderIsRefusedAsAFolder) {
  TempDir dir;
  EXPECT_EQ(load_message(dir.path()), dir.path() + ": the config file is a folder, not a regular file");
}

TEST(Config, ADeviceIsRefusedWithoutReadingIt) {
  EXPECT_EQ(load_message("/dev/zero"), "/dev/zero: the config file is a character device, not a regular file");
  EXPECT_EQ(load_message("/dev/urandom"), "/dev/urandom: the config file is a character device, not a regular file");
}

TEST(Config, ASymlinkLoopIsNamedAsOne) {
  TempDir dir;
  const std::string loop = dir.path() + "/loop.yaml";
  std::filesystem::create_symlink(loop, loop);
  EXPECT_EQ(load_message(loop), loop + ": the config file is a symbolic link loop (Too many levels of symbolic links)");
}

TEST(Config, AFileAboveTheSizeLimitIsRefusedAndOneAtTheLimitIsRead) {
  TempDir dir;
  const std::string head = "optimizer: {name: sgd}\n";
  std::string text = head + std::string(optreg::kMaxConfigFileBytes - head.size() - 1, '#') + "\n";
  ASSERT_EQ(text.size(), optreg::kMaxConfigFileBytes);
  write(dir.path() + "/limit.yaml", text);
  EXPECT_EQ(optreg::load_config(dir.path() + "/limit.yaml").optimizer, "sgd");
  write(dir.path() + "/above.yaml", text + "\n");
  EXPECT_EQ(load_message(dir.path() + "/above.yaml"),
            dir.path() + "/above.yaml: the config file is 1048577 bytes, above the limit of 1048576 bytes (1 MiB)");
}

TEST(Config, APluginPathThatIsASymlinkLoopSaysSo) {
  TempDir dir;
  std::filesystem::create_symlink(dir.path() + "/plugins", dir.path() + "/plugins");
  write(dir.path() + "/opt.yaml", "optimizer: {name: sgd}\nplugins:\n  paths: [plugins]\n");
  optreg::Registry r;
  EXPECT_EQ(optreg_test::message_of<optreg::ConfigError>(
                [&] { optreg::load_config_plugins(optreg::load_config(dir.path() + "/opt.yaml"), r); }),
            dir.path() + "/opt.yaml:3:11: plugin path " + dir.path() +
                "/plugins is a symbolic link loop (Too many levels of symbolic links)");
}

TEST(Config, ErrorsOfAFileNameTheFile) {
  TempDir dir;
  write(dir.path() + "/opt.yaml", "optimizer:\n  name: adam\n  lr: fast\n");
  try {
    optreg::build_optimizer(optreg::load_config(dir.path() + "/opt.yaml"), params(), registry());
    FAIL() << "no ConfigError";
  } catch (const optreg::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir.path() + "/opt.yaml:3:7: optimizer 'adam': option 'lr' = \"fast\" has the "
                                                  "wrong type: expected a float, got a string");
  }
}

TEST(Config, ParamListReadsNamesAndShapesInOrder) {
  TempDir dir;
  write(dir.path() + "/params.yaml", "embed.weight: [1000, 64]\nfc.bias: [10]\nscale: []\n");
  const auto list = optreg::load_param_list(dir.path() + "/params.yaml");
  ASSERT_EQ(list.size(), 3U);
  EXPECT_EQ(list[0].name, "embed.weight");
  EXPECT_EQ(list[0].shape, (optreg::Shape{1000, 64}));
  EXPECT_EQ(list[2].shape, optreg::Shape{});
  write(dir.path() + "/bad.yaml", "fc.bias: [ten]\n");
  EXPECT_THROW(optreg::load_param_list(dir.path() + "/bad.yaml"), optreg::ConfigError);
}

TEST(Config, ExplicitCoreTagsGiveTheirType) {
  const auto c = optreg::parse_config(
      "optimizer:\n  name: sgd\n  lr: !!float 1\n  momentum: !!str 0.9\n  nesterov: !!bool true\n  dampening: !!int 0\n"
      "  maximize: !<tag:yaml.org,2002:bool> false\n");
  ASSERT_EQ(c.options.size(), 5U);
  EXPECT_EQ(c.options[0].value, optreg::Value(1.0));
  EXPECT_EQ(c.options[0].value.type(), optreg::ValueType::Float);
  EXPECT_EQ(c.options[1].value, optreg::Value("0.9"));
  EXPECT_EQ(c.options[2].value, optreg::Value(true));
  EXPECT_EQ(c.options[3].value, optreg::Value(0));
  EXPECT_EQ(c.options[4].value, optreg::Value(false));
  EXPECT_NO_THROW(optreg::parse_config("!!map\noptimizer: !!map {name: !!str adam, betas: !!seq [0.9, 0.99]}\n"));
}

TEST(Config, NumbersOfAnyLengthGiveAValueOrAnErrorAtTheirPlace) {
  const std::string digits(30000, '9');
  const std::string zeros(30000, '0');
  EXPECT_EQ(message_of(("optimizer:\n  name: sgd\n  lr: " + digits + "\n").c_str()),
            "bad.yaml:3:7: option 'lr' = 999999999999999999999999... (30000 characters) is too large for an integer (at "
            "most 9223372036854775807)");
  EXPECT_EQ(message_of(("optimizer:\n  name: sgd\n  lr: " + digits + ".5\n").c_str()),
            "bad.yaml:3:7: option 'lr' = 999999999999999999999999... (30002 characters) is too large for a float (at most "
            "1.8e308 in magnitude)");
  EXPECT_EQ(message_of(("optimizer:\n  name: sgd\n  lr: 0." + zeros + "1\n").c_str()),
            "bad.yaml:3:7: option 'lr' = 0.0000000000000000000000... (30003 characters) is too small for a float: it is not "
            "0, but would be 0 (the smallest is 4.9e-324 in magnitude)");
  EXPECT_EQ(message_of(("optimizer:\n  name: sgd\n  lr: 1e" + digits + "\n").c_str()),
            "bad.yaml:3:7: option 'lr' = 1e9999999999999999999999... (30002 characters) is too large for a float (at most "
            "1.8e308 in magnitude)");
  const auto c = optreg::parse_config("optimizer:\n  name: sgd\n  lr: 0." + zeros + "5e30000\n  momentum: 0e" + digits + "\n");
  EXPECT_EQ(c.options[0].value, optreg::Value(0.5));
  EXPECT_EQ(c.options[1].value, optreg::Value(0.0));
}

TEST(Config, NestingDeeperThanTheLimitIsPlacedWhereItStarts) {
  const auto nested = [](int lists) {
    return "optimizer: {name: sgd, lr: " + std::string(static_cast<std::size_t>(lists), '[') +
           std::string(static_cast<std::size_t>(lists), ']') + "}\n";
  };
  // The top-level map and the optimizer's map are two levels: 98 lists make 100.
  EXPECT_EQ(message_of(nested(98).c_str()), "bad.yaml:1:29: option 'lr' must be a list of numbers; this element is not a number");
  const std::string too_deep = "bad.yaml:1:126: maps and lists are nested more than 100 deep here; a config nests at most 100";
  EXPECT_EQ(message_of(nested(99).c_str()), too_deep);
  EXPECT_EQ(message_of(nested(100000).c_str()), too_deep);
  std::string block = "optimizer:\n  name: sgd\n";
  for (int i = 0; i < 600; ++i) block += std::string(static_cast<std::size_t>(2 * i + 2), ' ') + "k" + std::to_string(i) + ":\n";
  EXPECT_EQ(message_of(block.c_str()),
            "bad.yaml:102:201: maps and lists are nested more than 100 deep here; a config nests at most 100");
}

TEST(Config, ParamListExtentsOfAnyLengthAreCheckedAtTheirPlace) {
  TempDir dir;
  const auto message = [&](const std::string& text) {
    write(dir.path() + "/p.yaml", text);
    try {
      optreg::load_param_list(dir.path() + "/p.yaml");
    } catch (const optreg::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(no ConfigError)");
  };
  const std::string at = dir.path() + "/p.yaml:2:";
  EXPECT_EQ(message("a: [1]\nw: [4, 12345678901234567890]\n"),
            at + "8: an extent of 'w' = 12345678901234567890 is too large for an integer (at most 9223372036854775807)");
  EXPECT_EQ(message("a: [1]\nw: [" + std::string(30000, '7') + "]\n"),
            at + "5: an extent of 'w' = 777777777777777777777777... (30000 characters) is too large for an integer (at most "
                 "9223372036854775807)");
  EXPECT_EQ(message("a: [1]\nw: [-3]\n"), at + "5: the shape of 'w' must hold non-negative integers");
  EXPECT_EQ(message("a: [1]\nw: [!!str 3]\n"), at + "5: the shape of 'w' must hold non-negative integers");
  EXPECT_EQ(message("a: [1]\n---\nw: [3]\n"),
            at + "1: a second YAML document starts here; a config is one document (a second one would be ignored): remove "
                 "this '---' line and what follows it, or merge it into the first");
}

TEST(ResolveConfig, ValidateOptionsReportsEveryBadOptionOfTheDefaultsAndOfEachGroup) {
  const std::vector<optreg::OptionError> found = registry().validate_options(
      "sgd", {{"lr", optreg::Value(-1.0)}, {"momentun", optreg::Value(0.9)}},
      {{{"nesterov", optreg::Value(true)}}, {{"dampening", optreg::Value("x")}}});
  // The defaults' bad value keeps every rule unchecked; each group's bad option is reported.
  ASSERT_EQ(found.size(), 3U);
  EXPECT_EQ(found[0].group(), -1);
  EXPECT_EQ(found[0].option(), "lr");
  EXPECT_EQ(found[0].part(), optreg::OptionPart::Value);
  EXPECT_EQ(found[1].option(), "momentun");
  EXPECT_EQ(found[1].part(), optreg::OptionPart::Name);
  EXPECT_EQ(found[2].group(), 1);
  EXPECT_EQ(found[2].option(), "dampening");
  EXPECT_TRUE(registry().validate_options("sgd", {{"momentum", optreg::Value(0.9)}}, {{{"nesterov", optreg::Value(true)}}})
                  .empty());
}

TEST(ResolveConfig, ARuleOfAGroupIsReportedWithItsGroupAndTheOptionItNames) {
  const std::vector<optreg::OptionError> found =
      registry().validate_options("sgd", {}, {{}, {{"nesterov", optreg::Value(true)}}});
  ASSERT_EQ(found.size(), 1U);
  EXPECT_EQ(found[0].group(), 1);
  EXPECT_EQ(found[0].option(), "nesterov");
  EXPECT_EQ(found[0].part(), optreg::OptionPart::Rule);
}

TEST(ResolveConfig, AValidConfigIsResolvedWithEveryDefaultAndItsGrouping) {
  const auto c = optreg::parse_config(kExample, "opt.yaml");
  auto names = std::vector<std::string>{"layer1.weight", "layer1.bias", "layer2.weight", "norm.scale"};
  const optreg::ConfigCheck check = optreg::resolve_config(c, registry(), names);
  ASSERT_TRUE(check.errors.empty()) << check.errors.front().what();
  const optreg::ResolvedConfig& r = *check.resolved;
  EXPECT_EQ(r.optimizer.name, "adam");
  EXPECT_EQ(r.defaults.at("eps").as_float(), 1e-8);
  EXPECT_EQ(r.defaults.at("weight_decay").as_float(), 0.01);
  ASSERT_EQ(r.groups.size(), 2U);
  EXPECT_EQ(r.groups[0].at("weight_decay").as_float(), 0.0);
  EXPECT_EQ(r.groups[1].at("lr").as_float(), 1e-4);
  ASSERT_TRUE(r.plan.has_value());
  EXPECT_EQ(r.plan->groups.size(), 3U);
}

TEST(ResolveConfig, EveryErrorComesWithItsFileLineAndColumnInTheOrderOfTheFile) {
  const auto c = optreg::parse_config(
      "scheduler: {name: cosine, T_max: -1}\noptimizer:\n  name: adam\n  betas: [2, 0.9]\n  eps: -1\n", "opt.yaml");
  const optreg::ConfigCheck check = optreg::resolve_config(c, registry());
  EXPECT_FALSE(check.resolved.has_value());
  ASSERT_EQ(check.errors.size(), 3U);
  EXPECT_EQ(check.errors[0].line(), 1);
  EXPECT_EQ(check.errors[0].column(), 34);
  EXPECT_EQ(check.errors[1].line(), 4);
  EXPECT_EQ(check.errors[2].line(), 5);
  EXPECT_EQ(check.errors[2].file(), "opt.yaml");
  EXPECT_EQ(std::string(check.errors[2].what()), "opt.yaml:5:8: " + check.errors[2].reason());
}

TEST(ResolveConfig, ParsingGoesOnPastAMalformedSection) {
  const optreg::ConfigNode root =
      optreg::parse_config_document("clip: []\noptimizer: {name: sgd, lr: 0.5}\nparam_groups: 3\n", "opt.yaml");
  std::vector<optreg::ConfigError> errors;
  const optreg::OptimizerConfig c = optreg::parse_config_sections(root, "", {}, errors);
  ASSERT_EQ(errors.size(), 2U);
  EXPECT_EQ(errors[0].line(), 1);
  EXPECT_EQ(errors[1].line(), 3);
  EXPECT_EQ(c.optimizer, "sgd");
  EXPECT_EQ(c.options.size(), 1U);
  EXPECT_THROW(optreg::parse_config_sections(root, "", {}), optreg::ConfigError);
}
