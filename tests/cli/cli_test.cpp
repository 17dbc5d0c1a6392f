// The optreg command line, run as a user runs it: output and exit status.
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <limits>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

using optreg_test::contains;
using optreg_test::TempDir;
using ToolRun = optreg_test::CommandRun;

ToolRun run(const std::string& args) {
  // OPTREG_PLUGIN_PATH is emptied so that only what a test names is loaded besides the
  // in-tree folder found beside the core library.
  return optreg_test::run_command("OPTREG_PLUGIN_PATH= '" + std::string(OPTREG_TEST_TOOL) + "' " + args);
}

std::string plugin_dir() { return std::string("'") + OPTREG_TEST_PLUGIN_DIR + "'"; }

}  // namespace

TEST(Cli, ListShowsEveryInTreeOptimizerWithVersionSourceAndSchema) {
  const ToolRun r = run("list --no-default-path --plugin-path " + plugin_dir());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "adam  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "sgd  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out, "liboptreg_sgd.so (plugin sgd)")) << r.out;
  EXPECT_TRUE(contains(r.out, "betas           list of floats  [0.9, 0.999]  2 x [0.0, 1.0)")) << r.out;
  EXPECT_TRUE(contains(r.out, "nesterov        bool    false      true|false             use Nesterov momentum")) << r.out;
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
  EXPECT_TRUE(contains(r.out, "momentum        float   0.0")) << r.out;
  EXPECT_FALSE(contains(r.out, "adam")) << r.out;
  const ToolRun miss = run("show adm");
  EXPECT_EQ(miss.status, 1) << miss.out;
  EXPECT_TRUE(contains(miss.out, "no optimizer or scheduler named 'adm' is registered (did you mean 'adam'?)")) << miss.out;
}

TEST(Cli, ShowPrintsTheStateDtypesAndTheStateBytesInEach) {
  const ToolRun r = run("show adam");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "state float32, float64, bfloat16, int8\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  state bytes per parameter element: float32 8 bfloat16 4 int8 2.016 (state_dtype)\n")) << r.out;
  const ToolRun adagrad = run("show adagrad");
  EXPECT_TRUE(contains(adagrad.out, "  state bytes per parameter element: float32 4 (state_dtype)\n")) << adagrad.out;
  const ToolRun j = run("show sgd --json");
  EXPECT_TRUE(contains(j.out, "\"state_bytes_per_element_by_state_dtype\": {\"float32\": 0.0, \"bfloat16\": 0.0, \"int8\": 0.0}"))
      << j.out << " (sgd's momentum buffer is optional)";
  EXPECT_TRUE(contains(j.out,
                       "\"state_not_counted\": [{\"name\": \"momentum_buffer\", \"why\": \"optional\"}, "
                       "{\"name\": \"master_weight\", \"why\": \"optional\"}]"))
      << j.out;
}

TEST(Cli, ShowNamesTheStateItsBytesPerElementLeaveOut) {
  const ToolRun adafactor = run("show adafactor");
  EXPECT_EQ(adafactor.status, 0) << adafactor.out;
  EXPECT_TRUE(contains(adafactor.out, "  not counted above: exp_avg_sq_row (own shape), exp_avg_sq_col (own shape)"))
      << adafactor.out;
  const ToolRun adam = run("show adam");
  EXPECT_TRUE(contains(adam.out, "  not counted above: max_exp_avg_sq (optional), master_weight (optional)\n"))
      << adam.out;
  // The core's float32 master copy of a half-precision parameter (master_weights) is optional in
  // every optimizer's state.
  const ToolRun adagrad = run("show adagrad");
  EXPECT_TRUE(contains(adagrad.out, "  not counted above: master_weight (optional)\n")) << adagrad.out;
}

TEST(Cli, ShowPrintsAnOptimizersFlagsAndListJsonHoldsThem) {
  const ToolRun lbfgs = run("show lbfgs");
  EXPECT_EQ(lbfgs.status, 0) << lbfgs.out;
  EXPECT_TRUE(contains(lbfgs.out, "\n  dtypes: parameters float32, float64; state float32, float64\n  flags: needs_closure\n"))
      << lbfgs.out;
  EXPECT_TRUE(contains(run("show muon").out, "\n  flags: matrices_only\n"));
  EXPECT_TRUE(contains(run("show schedulefree_adamw").out, "\n  flags: eval_weights\n"));
  EXPECT_FALSE(contains(run("show adam").out, "flags:")) << "an optimizer without flags shows no line";
  const ToolRun j = run("list --json --no-default-path --plugin-path " + plugin_dir());
  EXPECT_TRUE(contains(j.out, "\"flags\": [\"needs_closure\"]")) << j.out;
  EXPECT_TRUE(contains(j.out, "\"flags\": []")) << j.out;
}

TEST(Cli, ShowPrintsTheDomainOfEveryStateEntry) {
  const ToolRun r = run("show adam");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "    step            updates applied to this parameter (int, in [0, 9007199254740992])\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "    exp_avg_sq      second moment estimate (tensor, in [0.0, inf])\n")) << r.out;
  const ToolRun rprop = run("show rprop");
  EXPECT_TRUE(contains(rprop.out, "(0 where its sign flipped) (tensor, any value)\n")) << rprop.out;

  const ToolRun j = run("show adam --json");
  EXPECT_EQ(j.status, 0) << j.out;
  EXPECT_TRUE(contains(j.out, "{\"name\": \"step\", \"kind\": \"int\", \"optional\": false, \"own_shape\": false, "
                              "\"domain\": {\"min\": 0, \"min_inclusive\": true, \"max\": 9007199254740992, "
                              "\"max_inclusive\": true}, \"meaning\": \"updates applied to this parameter\"}"))
      << j.out;
  // +inf itself lies in a second moment's domain: an infinite end that is inclusive.
  EXPECT_TRUE(contains(j.out, "\"name\": \"exp_avg_sq\", \"kind\": \"tensor\", \"optional\": false, \"own_shape\": false, "
                              "\"domain\": {\"min\": 0.0, \"min_inclusive\": true, \"max\": null, \"max_inclusive\": true}"))
      << j.out;
  const ToolRun rprop_json = run("show rprop --json");
  EXPECT_TRUE(contains(rprop_json.out, "\"name\": \"prev\", \"kind\": \"tensor\", \"optional\": false, "
                                       "\"own_shape\": false, \"domain\": null"))
      << rprop_json.out;
}

TEST(Cli, HelpAndVersion) {
  const ToolRun help = run("--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_TRUE(contains(help.out, "usage: optreg <command>")) << help.out;
  const ToolRun list_help = run("list --help");
  EXPECT_TRUE(contains(list_help.out, "--allow-refused")) << list_help.out;
  const ToolRun version = run("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_TRUE(contains(version.out, "optreg 0.1.0 (plugin ABI 3, libstdc++")) << version.out;
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run("").status, 2);
  const ToolRun r = run("list --bogus");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.out, "optreg list: unknown argument '--bogus'")) << r.out;
  EXPECT_EQ(run("frobnicate").status, 2);
  EXPECT_EQ(run("list --plugin-path").status, 2);
}

namespace {

/// Writes a checkpoint of an adam optimizer over two parameters after two steps.
std::string write_checkpoint(const TempDir& dir) {
  const optreg::Registry& registry = optreg_test::reference_registry();
  optreg::Parameter w("layer.weight", optreg::Tensor({2, 3}, {1, 2, 3, 4, 5, 6}));
  optreg::Parameter b("layer.bias", optreg::Tensor({2}, {0.5F, -0.5F}));
  auto opt = registry.create("adam", std::vector<optreg::ParamGroupSpec>{{{w}, {}}, {{b}, {{"lr", 0.01}}}},
                             {{"amsgrad", true}});
  for (int i = 0; i < 2; ++i) {
    w.accumulate_grad(optreg::Tensor({2, 3}, 1.0F));
    b.accumulate_grad(optreg::Tensor({2}, {1.0F, -1.0F}));
    opt->step().clear_grad();
  }
  b.value()[1] = std::numeric_limits<float>::infinity();
  const std::string path = dir.path() + "/run.ckpt";
  optreg::save_optimizer(path, *opt, {{"step", 2}, {"seed", 7}});
  return path;
}

}  // namespace

TEST(Cli, InspectShowsGroupsStateStatisticsAndTheVerifiedChecksum) {
  TempDir dir;
  const std::string path = write_checkpoint(dir);
  const ToolRun r = run("inspect '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint " + path)) << r.out;
  EXPECT_TRUE(contains(r.out, "verified")) << r.out;
  EXPECT_TRUE(contains(r.out, "optimizer: adam (plugin version 1.0.0)")) << r.out;
  EXPECT_TRUE(contains(r.out, "  - options: {amsgrad: true, betas: [0.9, 0.999], eps: 1e-08, lr: 0.01, master_weights: false, "
                              "maximize: false, rounding: \"nearest\", rounding_seed: 0, state_dtype: \"float32\", weight_decay: 0.0}\n    params: [1]"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "  0 ('layer.weight'):\n    step: 2 (int)\n    exp_avg: tensor [2, 3] float32 (24 bytes)  min 0.19  max 0.19  "
                              "mean 0.19  non-finite 0"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "max_exp_avg_sq: tensor [2] float32 (8 bytes)")) << r.out;
  EXPECT_TRUE(contains(r.out, "  1 'layer.bias': tensor [2] float32 (8 bytes)  min ")) << r.out;
  EXPECT_TRUE(contains(r.out, "non-finite 1")) << r.out;
  EXPECT_TRUE(contains(r.out, "metadata:\n  seed: 7\n  step: 2")) << r.out;
}

TEST(Cli, InspectJsonIsMachineReadable) {
  TempDir dir;
  const std::string path = write_checkpoint(dir);
  const ToolRun r = run("inspect --json '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "\"checksum_verified\": true")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"optimizer\": \"adam\"")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"0\": {\"step\": 2, \"exp_avg\": {\"shape\": [2, 3], \"dtype\": \"float32\", \"bytes\": 24, \"min\": 0.19")) << r.out;
  EXPECT_TRUE(contains(r.out, "\"metadata\": {\"seed\": 7, \"step\": 2}")) << r.out;
}

TEST(Cli, InspectAgainstAConfigPreviewsALoadByName) {
  TempDir dir;
  const std::string path = write_checkpoint(dir);  // layer.weight [2, 3], layer.bias [2]
  std::ofstream(dir.path() + "/opt.yaml") << "optimizer: {name: adam, amsgrad: true}\n";
  std::ofstream(dir.path() + "/params.yaml") << "net.layer.weight: [2, 3]\nhead.bias: [4]\n";
  const std::string base = "inspect '" + path + "' --against '" + dir.path() + "/opt.yaml' --params '" + dir.path() +
                           "/params.yaml'";
  const ToolRun strict = run(base);
  EXPECT_EQ(strict.status, 1) << strict.out;
  EXPECT_TRUE(contains(strict.out, "optreg inspect: checkpoint " + path +
                                       ": parameter 'net.layer.weight' (id 0) has no state in it"))
      << strict.out;
  const ToolRun r = run(base + " --fresh-missing --drop-unexpected --rename 'layer.*=net.layer.*'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "matched: 1\n  net.layer.weight <- layer.weight\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "kept their own state (no saved state): 1\n  head.bias\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "left out (no parameter): 1\n  layer.bias\n")) << r.out;
  const ToolRun json = run(base + " --json --fresh-missing --drop-unexpected");
  EXPECT_EQ(json.status, 0) << json.out;
  EXPECT_TRUE(contains(json.out, "\"created\": [\"net.layer.weight\", \"head.bias\"]")) << json.out;
  EXPECT_TRUE(contains(json.out, "\"dropped\": [\"layer.weight\", \"layer.bias\"]")) << json.out;
  EXPECT_EQ(run("inspect '" + path + "' --params '" + dir.path() + "/params.yaml'").status, 2);
}

TEST(Cli, InspectShowsTheSchedulerState) {
  TempDir dir;
  const optreg::Registry& registry = optreg_test::reference_registry();
  optreg::Parameter w("w", optreg::Tensor({2}, {1, 2}));
  auto opt = registry.create("sgd", {w}, {{"lr", 0.5}});
  auto sched = registry.create_scheduler("step", *opt, {{"step_size", 1}, {"gamma", 0.5}});
  sched->step();
  const std::string path = dir.path() + "/sched.ckpt";
  optreg::save_optimizer(path, *opt, *sched);
  const ToolRun r = run("inspect '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "scheduler: step (plugin version 1.0.0)\n  base_lrs: [0.5]\n  last_lr: [0.25]\n  last_step: 1\n"))
      << r.out;
  const ToolRun j = run("inspect --json '" + path + "'");
  EXPECT_TRUE(contains(j.out, "\"scheduler\": {\"name\": \"step\", \"plugin_version\": \"1.0.0\", \"state\": {\"base_lrs\": [0.5], "
                              "\"last_lr\": [0.25], \"last_step\": 1}}"))
      << j.out;
}

TEST(Cli, ListShowsSchedulersInASecondTableAndInJson) {
  const ToolRun r = run("list");
  EXPECT_EQ(r.status, 0) << r.out;
  const auto table = r.out.find("learning-rate schedulers:\n");
  ASSERT_NE(table, std::string::npos) << r.out;
  EXPECT_GT(table, r.out.find("sgd  1.0.0")) << r.out;
  EXPECT_TRUE(contains(r.out.substr(table), "cosine  1.0.0  Cosine annealing")) << r.out;
  EXPECT_TRUE(contains(r.out, "sequential  0.1.0  Runs schedulers one after another")) << r.out;
  EXPECT_TRUE(contains(r.out, "stepped with a metric: step(metric)")) << r.out;
  const ToolRun j = run("list --json");
  EXPECT_TRUE(contains(j.out, "\"schedulers\": [\n    {\"name\": \"chained\", \"version\": \"0.1.0\", \"plugin\": \"optreg\"")) << j.out;
  EXPECT_TRUE(contains(j.out, "{\"name\": \"constant\", \"version\": \"1.0.0\", \"plugin\": \"optreg_schedulers\"")) << j.out;
  EXPECT_TRUE(contains(j.out, "\"name\": \"plateau\", \"version\": \"1.0.0\", \"plugin\": \"optreg_schedulers\", \"source\": ")) << j.out;
}

TEST(Cli, ShowPrintsAScheduler) {
  const ToolRun r = run("show cosine");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "    T_max    int    0        [0, 9007199254740992]  steps of one half cosine period (required)")) << r.out;
  const ToolRun j = run("show onecycle --json");
  EXPECT_TRUE(contains(j.out, "{\"name\": \"onecycle\"")) << j.out;
  EXPECT_TRUE(contains(j.out, "\"needs_metric\": false")) << j.out;
}

TEST(Cli, InspectRefusesADamagedFileWithTheReason) {
  TempDir dir;
  const std::string path = write_checkpoint(dir);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-12, std::ios::end);  // before the scheduler flag and the section count
    f.put('\x7f');
  }
  const ToolRun r = run("inspect '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg inspect: checkpoint " + path + ": the checksum does not match")) << r.out;
  EXPECT_EQ(run("inspect").status, 2);
}

TEST(Cli, CheckPrintsTheResolvedConfigAndWhereEachParameterLands) {
  TempDir dir;
  std::ofstream(dir.path() + "/opt.yaml") << "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n"
                                             "param_groups:\n  - params: '*.bias'\n    lr: 0.01\n";
  std::ofstream(dir.path() + "/params.yaml") << "fc.weight: [10, 784]\nfc.bias: [10]\n";
  const ToolRun r = run("check '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "config " + dir.path() + "/opt.yaml is valid")) << r.out;
  EXPECT_TRUE(contains(r.out, "optimizer: sgd 1.0.0 (from ")) << r.out;
  EXPECT_TRUE(contains(r.out, "defaults: {dampening: 0.0, lr: 0.1, master_weights: false, maximize: false, momentum: 0.9, "
                              "nesterov: false, rounding: \"nearest\", rounding_seed: 0, state_dtype: \"float32\", weight_decay: 0.0}"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "default group (parameters no pattern matches): {dampening: 0.0, lr: 0.1, master_weights: "
                              "false, maximize: false, momentum: 0.9, nesterov: false, rounding: \"nearest\", "
                              "rounding_seed: 0, state_dtype: \"float32\", weight_decay: 0.0}\n    fc.weight [10, 784]\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "param_groups[0] (params \"*.bias\"): {dampening: 0.0, lr: 0.01, master_weights: false, "
                              "maximize: false, momentum: 0.9, nesterov: false, rounding: \"nearest\", rounding_seed: 0, "
                              "state_dtype: \"float32\", weight_decay: 0.0}\n    fc.bias [10]\n"))
      << r.out;

  const ToolRun json = run("check --json '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(json.status, 0) << json.out;
  EXPECT_TRUE(contains(json.out, "\"valid\": true")) << json.out;
  EXPECT_TRUE(contains(json.out, "\"params\": [{\"name\": \"fc.bias\", \"shape\": \"[10]\"}]")) << json.out;
}

TEST(Cli, CheckShowsWhichOptimizerStepsEachGroupAndRefusesAShapeItCannotStep) {
  TempDir dir;
  std::ofstream(dir.path() + "/opt.yaml") << "optimizer: {name: sgd, lr: 0.1}\n"
                                             "param_groups:\n  - params: 'fc*'\n    optimizer: muon\n    lr: 0.02\n";
  std::ofstream(dir.path() + "/params.yaml") << "fc.weight: [10, 784]\nout.bias: [10]\n";
  const ToolRun r = run("check '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "param_groups[0] (params \"fc*\"), optimizer muon: {adjust_lr: \"original\", eps: 1e-07, "
                              "lr: 0.02, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "    fc.weight [10, 784]\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "default group (parameters no pattern matches): {dampening: 0.0, lr: 0.1, ")) << r.out;
  const ToolRun json = run("check --json '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_TRUE(contains(json.out, "\"optimizer\": \"muon\"")) << json.out;
  EXPECT_TRUE(contains(json.out, "\"optimizer\": \"sgd\"")) << json.out;

  std::ofstream(dir.path() + "/params.yaml") << "fc.weight: [10, 784]\nfc.bias: [10]\n";
  const ToolRun bias = run("check '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(bias.status, 1) << bias.out;
  EXPECT_TRUE(contains(bias.out, "optreg check: " + dir.path() +
                                     "/opt.yaml:4:16: param_groups[0]: parameter 'fc.bias' has shape [10], but optimizer "
                                     "'muon' steps matrices (2-dimensional parameters) only"))
      << bias.out;
}

TEST(Cli, CheckPrintsEachLayersRealLrAndTheSelectorsOfEachGroup) {
  TempDir dir;
  std::ofstream(dir.path() + "/opt.yaml") << "optimizer: {name: sgd, lr: 0.1}\n"
                                             "param_groups:\n  - ndim: 1\n    weight_decay: 0.01\n"
                                             "  - regex: 'blocks[.]([0-9]+)[.].*'\n    layer_decay: 0.5\n";
  std::ofstream(dir.path() + "/params.yaml") << "blocks.0.weight: [4, 4]\nblocks.0.bias: [4]\nblocks.1.weight: [4, 4]\n"
                                                "head.weight: [2, 4]\n";
  const ToolRun r = run("check '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "param_groups[0] (ndim 1): {dampening: 0.0, lr: 0.1, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "param_groups[1] layer 0 (regex \"blocks[.]([0-9]+)[.].*\", layer_decay 0.5): "
                              "{dampening: 0.0, lr: 0.025, ")) << r.out;
  EXPECT_TRUE(contains(r.out, "    blocks.0.weight [4, 4]\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "param_groups[1] layer 1 (regex \"blocks[.]([0-9]+)[.].*\", layer_decay 0.5): "
                              "{dampening: 0.0, lr: 0.05, ")) << r.out;
  // Without --params nothing is sorted into groups, so ndim needs no shapes.
  const ToolRun bare = run("check '" + dir.path() + "/opt.yaml'");
  EXPECT_EQ(bare.status, 0) << bare.out;
}

TEST(Cli, CheckReportsAnInvalidConfigWithItsPositionAndExitsOne) {
  TempDir dir;
  std::ofstream(dir.path() + "/opt.yaml") << "optimizer:\n  name: adam\n  betas: [0.9, 1.5]\n";
  const ToolRun r = run("check '" + dir.path() + "/opt.yaml'");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "optreg check: " + dir.path() + "/opt.yaml:3:10: optimizer 'adam': option 'betas' = "
                              "[0.9, 1.5] is out of range: element 1 must be in [0.0, 1.0)"))
      << r.out;
  const ToolRun json = run("check --json '" + dir.path() + "/opt.yaml'");
  EXPECT_EQ(json.status, 1);
  EXPECT_TRUE(contains(json.out, "\"valid\": false, \"error\": \"" + dir.path() + "/opt.yaml:3:10: ")) << json.out;
  EXPECT_EQ(run("check").status, 2);
}

TEST(Cli, CheckPlacesNumbersOfAnyLengthInTheConfigAndTheParamsFile) {
  TempDir dir;
  std::ofstream(dir.path() + "/ok.yaml") << "optimizer:\n  name: sgd\n";
  std::ofstream(dir.path() + "/params.yaml") << "fc.weight: [10, 12345678901234567890]\n";
  const ToolRun extent = run("check '" + dir.path() + "/ok.yaml' --params '" + dir.path() + "/params.yaml'");
  EXPECT_EQ(extent.status, 1) << extent.out;
  EXPECT_TRUE(contains(extent.out, "optreg check: " + dir.path() + "/params.yaml:1:17: an extent of 'fc.weight' = "
                                       "12345678901234567890 is too large for an integer (at most 9223372036854775807)\n"))
      << extent.out;
  std::ofstream(dir.path() + "/long.yaml") << "optimizer:\n  name: sgd\n  lr: " << std::string(100000, '1') << "e-5\n";
  const ToolRun number = run("check '" + dir.path() + "/long.yaml'");
  EXPECT_EQ(number.status, 1) << "not a crash: " << number.out.substr(0, 300);
  EXPECT_TRUE(contains(number.out, "/long.yaml:3:7: option 'lr' = 111111111111111111111111... (100003 characters) is too "
                                   "large for a float (at most 1.8e308 in magnitude)\n"))
      << number.out.substr(0, 300);
}

TEST(Cli, EveryCommandReportsAStandardOutputItCannotWrite) {
  TempDir dir;
  optreg_test::write_file(dir / "opt.yaml", "optimizer: {name: sgd, lr: 0.1}\n");
  for (const std::string& command :
       std::vector<std::string>{"--version", "--help", "list", "show adam", "check " + dir / "opt.yaml", "problems"}) {
    // Only standard output goes to the full device; the message comes back on standard error.
    const ToolRun r = optreg_test::run_command("{ OPTREG_PLUGIN_PATH= '" + std::string(OPTREG_TEST_TOOL) + "' " + command +
                                               " > /dev/full; }");
    EXPECT_EQ(r.status, 1) << command << '\n' << r.out;
    EXPECT_TRUE(contains(r.out, "optreg: standard output: cannot write (is the disk full?)")) << command << '\n' << r.out;
  }
}

TEST(Cli, EveryCommandsHelpBeginsWithItsUsageAndExplainsItsOptions) {
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"list", "--isolate"},  {"show", "--plugin-path DIR|FILE"}, {"check", "--params FILE"}, {"inspect", "--json"},
      {"conformance", "--in-process"}, {"train", "--steps N"},  {"compare", "--plot FILE"},   {"problems", "-h,--help"},
  };
  for (const auto& [command, option] : commands) {
    const ToolRun r = run(command + " --help");
    EXPECT_EQ(r.status, 0) << command << '\n' << r.out;
    EXPECT_EQ(r.out.rfind("usage: optreg " + command, 0), 0u) << r.out;
    EXPECT_TRUE(contains(r.out, "\n  " + option + " ")) << command << '\n' << r.out;
    EXPECT_TRUE(contains(run("--help").out, "\n  " + command + " ")) << command << " is listed in the tool's help";
  }
  EXPECT_EQ(run("help").out, run("--help").out);
}

TEST(Cli, UsageErrorsNameTheCommandAndTheArgument) {
  const ToolRun missing = run("check opt.yaml --params");
  EXPECT_EQ(missing.status, 2) << missing.out;
  EXPECT_TRUE(contains(missing.out, "optreg: optreg check: --params")) << missing.out;
  const ToolRun second = run("show adam sgd");
  EXPECT_EQ(second.status, 2) << second.out;
  EXPECT_TRUE(contains(second.out, "optreg: optreg show: unexpected argument 'sgd'")) << second.out;
  const ToolRun unknown = run("frobnicate --json");
  EXPECT_EQ(unknown.status, 2) << unknown.out;
  EXPECT_TRUE(contains(unknown.out, "{\"error\": \"unknown command 'frobnicate'\"}\n")) << unknown.out;
}

namespace {

/// The value column of each data block of a plot's PATH.dat, in order.
std::vector<std::vector<double>> plot_blocks(const std::string& dat) {
  std::vector<std::vector<double>> blocks;
  std::ifstream in(dat);
  std::string line;
  bool fresh = true;
  while (std::getline(in, line)) {
    if (line.empty()) {
      fresh = true;
      continue;
    }
    if (line[0] == '#') continue;
    if (fresh) blocks.emplace_back();
    fresh = false;
    blocks.back().push_back(std::stod(line.substr(line.find(' ') + 1)));
  }
  return blocks;
}

}  // namespace

TEST(Cli, ShowPlotDrawsASchedulersLearningRateWithTheOptionsGiven) {
  TempDir dir;
  const std::string svg = dir.path() + "/cosine.svg";
  const ToolRun r = run("show cosine --plot '" + svg + "' --with '{T_max: 10, eta_min: 0.001}' --steps 20 --lr 0.5");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "plot: " + svg + " (20 steps; lr 0.5")) << r.out;  // 0.5 give or take a few ulps
  const auto blocks = plot_blocks(svg + ".dat");
  ASSERT_EQ(blocks.size(), 1U);
  ASSERT_EQ(blocks[0].size(), 21U);  // step 0 (after setup) and 20 steps
  EXPECT_EQ(blocks[0][0], 0.5);
  EXPECT_NEAR(blocks[0][10], 0.001, 1e-12);  // the minimum after T_max steps
  EXPECT_NEAR(blocks[0][20], 0.5, 1e-12);    // and back after 2 T_max
  EXPECT_EQ(optreg_test::run_command("xmllint --noout '" + svg + "'").status, 0);
  EXPECT_TRUE(contains(optreg_test::read_file(svg), ">learning rate</text>"));
}

TEST(Cli, ShowPlotRefusesWhatHasNoScheduleToDraw) {
  TempDir dir;
  const std::string svg = " --plot '" + dir.path() + "/x.svg'";
  ToolRun r = run("show plateau" + svg);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "scheduler 'plateau' is driven by a metric")) << r.out;
  r = run("show adam" + svg);
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.out, "'adam' is not a scheduler")) << r.out;
  r = run("show cosine" + svg + " --with '{T_maxx: 5}'");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "--with:1:2: scheduler 'cosine': unknown option 'T_maxx' (did you mean 'T_max'?)")) << r.out;
  r = run("show cosine" + svg);
  EXPECT_TRUE(contains(r.out, "option 'T_max' is required")) << r.out;
  r = run("show onecycle" + svg + " --with '{max_lr: 1, total_steps: 10}' --steps 20");
  EXPECT_TRUE(contains(r.out, "refused step 11 of the 20 to draw")) << r.out;
  r = run("show cosine --with '{T_max: 5}'");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.out, "--with requires --plot")) << r.out;
  r = run("show cosine --plot '" + dir.path() + "/x.txt' --with '{T_max: 5}'");
  EXPECT_TRUE(contains(r.out, "the file name must end in .svg or .png")) << r.out;
  // A FIFO would block gnuplot, a folder fail it late: both refused before anything is drawn.
  ASSERT_EQ(::mkfifo((dir.path() + "/fifo.svg").c_str(), 0600), 0);
  r = run("show cosine --plot '" + dir.path() + "/fifo.svg' --with '{T_max: 5}'");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "fifo.svg: it exists and is not a regular file (a FIFO)")) << r.out;
  std::filesystem::create_directory(dir.path() + "/folder.png");
  r = run("show cosine --plot '" + dir.path() + "/folder.png' --with '{T_max: 5}'");
  EXPECT_TRUE(contains(r.out, "folder.png: it exists and is not a regular file (a folder)")) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/x.svg"));
}

TEST(Cli, CheckPlotLrDrawsTheConfigsScheduleForEachParamGroup) {
  TempDir dir;
  optreg_test::write_file(dir.path() + "/opt.yaml",
                          "optimizer: {name: sgd, lr: 0.1, momentum: 0.9}\n"
                          "param_groups:\n  - params: '*.bias'\n    lr: 0.02\n"
                          "scheduler:\n  name: sequential\n"
                          "  schedulers: [{name: linear, start_factor: 0.01, total_iters: 10}, {name: cosine, T_max: 90}]\n"
                          "  milestones: [10]\n");
  optreg_test::write_file(dir.path() + "/params.yaml", "fc.weight: [10, 784]\nfc.bias: [10]\n");
  const std::string png = dir.path() + "/lr.png";
  ToolRun r = run("check '" + dir.path() + "/opt.yaml' --params '" + dir.path() + "/params.yaml' --plot-lr '" + png + "'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "plot: " + png + " (100 steps of 2 param groups)")) << r.out;
  auto blocks = plot_blocks(png + ".dat");
  ASSERT_EQ(blocks.size(), 2U);
  EXPECT_NEAR(blocks[0][0], 0.001, 1e-15);  // the warm-up's first factor of 0.1
  EXPECT_NEAR(blocks[0][10], 0.1, 1e-15);   // the cosine from the base lr
  EXPECT_NEAR(blocks[1][10], 0.02, 1e-15);  // the bias group's own lr
  // Without --params: one group at the config's defaults.
  r = run("check '" + dir.path() + "/opt.yaml' --plot-lr '" + png + "' --steps 30");
  ASSERT_EQ(r.status, 0) << r.out;
  blocks = plot_blocks(png + ".dat");
  ASSERT_EQ(blocks.size(), 1U);
  EXPECT_EQ(blocks[0].size(), 31U);
  optreg_test::write_file(dir.path() + "/plain.yaml", "optimizer: {name: sgd, lr: 0.1}\n");
  r = run("check '" + dir.path() + "/plain.yaml' --plot-lr '" + png + "'");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.out, "plain.yaml has no scheduler section")) << r.out;
}
