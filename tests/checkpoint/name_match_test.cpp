// Loads by name (load_optimizer_by_name()): a checkpoint into a model that changed a little,
// parameters matched by name, renamed by glob, with a report of what was matched, kept and
// left out, all or nothing.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

using optreg::NameMatchPolicy;
using optreg::NameMatchReport;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;

namespace {

const optreg::Registry& registry() { return optreg_test::reference_registry(); }

Tensor ramp(const optreg::Shape& shape, float start) {
  Tensor t(shape);
  for (std::size_t i = 0; i < t.numel(); ++i) t[i] = start + 0.25F * static_cast<float>(i);
  return t;
}

/// Adam over `params`, three steps taken with gradients of their values.
OptimizerPtr stepped_adam(std::vector<Parameter> params) {
  OptimizerPtr opt = registry().create("adam", params, {{"lr", 0.01}});
  for (int s = 0; s < 3; ++s) {
    for (Parameter p : params) p.set_grad(p.value().clone());
    opt->step().clear_grad();
  }
  return opt;
}

std::string saved(const std::string& name, std::vector<Parameter> params) {
  const std::string path = ::testing::TempDir() + "optreg_name_match_" + name + ".ckpt";
  optreg::save_optimizer(path, *stepped_adam(std::move(params)));
  return path;
}

std::vector<std::string> names_of(const std::vector<std::string>& v) { return v; }

}  // namespace

TEST(NameMatch, AReorderedModelTakesEachParametersStateByName) {
  Parameter a("encoder.weight", ramp({2, 3}, 1)), b("encoder.bias", ramp({2}, 2)), c("head.weight", ramp({3}, 3));
  const std::string path = saved("reordered", {a, b, c});
  // The same model with its parameters in another order and other groups.
  Parameter a2("encoder.weight", Tensor({2, 3})), b2("encoder.bias", Tensor({2})), c2("head.weight", Tensor({3}));
  std::vector<optreg::ParamGroupSpec> groups(2);
  groups[0].params = {c2, b2};
  groups[1].params = {a2};
  groups[1].options = {{"lr", 0.5}};
  OptimizerPtr opt = registry().create("adam", std::move(groups), {{"lr", 0.01}});
  const NameMatchReport report = optreg::load_optimizer_by_name(path, *opt, NameMatchPolicy{});
  ASSERT_EQ(report.matched.size(), 3U);
  EXPECT_EQ(report.matched[0].param, "head.weight");
  EXPECT_TRUE(report.created.empty());
  EXPECT_TRUE(report.dropped.empty());
  EXPECT_EQ(a2.value().to_vector(), a.value().to_vector());  // the saved values
  // head.weight was id 2 in the file and is id 0 now.
  EXPECT_EQ(opt->state(c2).tensor("exp_avg").to_vector(),
            optreg::read_checkpoint(path).optimizer.state.at(2).tensor("exp_avg").to_vector());
  EXPECT_EQ(std::get<std::int64_t>(opt->state(a2).scalar("step")), 3);
  EXPECT_DOUBLE_EQ(opt->param_groups()[1].option("lr").as_float(), 0.5);  // the optimizer's options stay
  std::filesystem::remove(path);
}

TEST(NameMatch, MissingAndUnexpectedParametersAreErrorsUnlessThePolicyAllowsThem) {
  Parameter a("encoder.weight", ramp({2, 3}, 1)), old("old.bias", ramp({4}, 2));
  const std::string path = saved("policy", {a, old});
  Parameter a2("encoder.weight", Tensor({2, 3})), fresh("new.bias", Tensor({4}, {7, 7, 7, 7}));
  OptimizerPtr opt = registry().create("adam", {a2, fresh});
  const auto before = opt->state_dict();
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>(
                [&] { optreg::load_optimizer_by_name(path, *opt, NameMatchPolicy{}); }),
            "checkpoint " + path +
                ": parameter 'new.bias' (id 1) has no state in it; NameMatchPolicy::fresh_for_missing keeps its own");
  NameMatchPolicy keep;
  keep.fresh_for_missing = true;
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { optreg::load_optimizer_by_name(path, *opt, keep); }),
            "checkpoint " + path +
                ": its parameter 'old.bias' (id 1) matches no parameter of the optimizer; "
                "NameMatchPolicy::drop_unexpected leaves it out");
  EXPECT_EQ(a2.value().to_vector(), std::vector<float>(6, 0.0F));  // nothing changed
  keep.drop_unexpected = true;
  const NameMatchReport report = optreg::load_optimizer_by_name(path, *opt, keep);
  EXPECT_EQ(report.created, names_of({"new.bias"}));
  EXPECT_EQ(report.dropped, names_of({"old.bias"}));
  EXPECT_EQ(fresh.value().to_vector(), (std::vector<float>{7, 7, 7, 7}));
  EXPECT_EQ(opt->state(fresh).tensor("exp_avg").to_vector(), before.state.at(1).tensor("exp_avg").to_vector());
  EXPECT_EQ(std::get<std::int64_t>(opt->state(a2).scalar("step")), 3);
  std::filesystem::remove(path);
}

TEST(NameMatch, RenamesByGlobCarryWhatTheirStarsMatched) {
  Parameter a("encoder.layer1.weight", ramp({2}, 1)), b("encoder.layer2.weight", ramp({2}, 5));
  const std::string path = saved("rename", {a, b});
  Parameter a2("backbone.layer1.weight", Tensor({2})), b2("backbone.layer2.weight", Tensor({2}));
  OptimizerPtr opt = registry().create("adam", {b2, a2});
  NameMatchPolicy policy;
  policy.renames = {{"encoder.*", "backbone.*"}};
  const NameMatchReport report = optreg::load_optimizer_by_name(path, *opt, policy);
  ASSERT_EQ(report.matched.size(), 2U);
  EXPECT_EQ(report.matched[0].param, "backbone.layer2.weight");
  EXPECT_EQ(report.matched[0].saved, "encoder.layer2.weight");
  EXPECT_EQ(b2.value().to_vector(), b.value().to_vector());
  // Two names renamed to one are refused.
  policy.renames = {{"encoder.layer?.weight", "backbone.weight"}};
  EXPECT_NE(optreg_test::message_of<optreg::CheckpointError>([&] { optreg::load_optimizer_by_name(path, *opt, policy); })
                .find("both load as 'backbone.weight'"),
            std::string::npos);
  policy.renames = {{"encoder.x", "backbone.*"}};
  EXPECT_THROW(optreg::load_optimizer_by_name(path, *opt, policy), optreg::UsageError);
  std::filesystem::remove(path);
}

TEST(NameMatch, AnEscapedLetterOrDigitInARenameStandsForItself) {
  // As in fnmatch(): '\\Q' is the letter Q (not Perl's quote-to-the-end, which would swallow the
  // star's group) and '\\d' the letter d (not a digit class).
  Parameter a("wQd.7", ramp({2}, 1));
  const std::string path = saved("rename_escapes", {a});
  Parameter a2("x.7", Tensor({2}));
  OptimizerPtr opt = registry().create("adam", {a2});
  NameMatchPolicy policy;
  policy.renames = {{"w\\Q\\d.*", "x.*"}};
  const NameMatchReport report = optreg::load_optimizer_by_name(path, *opt, policy);
  ASSERT_EQ(report.matched.size(), 1U);
  EXPECT_EQ(report.matched[0].saved, "wQd.7");
  EXPECT_EQ(a2.value().to_vector(), a.value().to_vector());
  policy.renames = {{"w\\d*", "x.*"}};  // 'd' is no digit class: "wQd.7" keeps its name, which no parameter has
  EXPECT_THROW(optreg::load_optimizer_by_name(path, *opt, policy), optreg::CheckpointError);
  std::filesystem::remove(path);
}

TEST(NameMatch, ARenameWithManyStarsOverALongNameIsAnErrorNotAHang) {
  // Each '*' is a group that takes any run of characters: six of them over a name of 3,000
  // characters that ends wrong would backtrack through some 10^17 splits.
  const std::string name(3000, 'a');
  Parameter a(name, ramp({2}, 1));
  const std::string path = saved("rename_stars", {a});
  Parameter a2("x", Tensor({2}));
  OptimizerPtr opt = registry().create("adam", {a2});
  NameMatchPolicy policy;
  policy.renames = {{"*a*a*a*a*a*b", "x"}};
  const std::string message =
      optreg_test::message_of<optreg::UsageError>([&] { optreg::load_optimizer_by_name(path, *opt, policy); });
  EXPECT_NE(
      message.find("rename '*a*a*a*a*a*b' -> 'x': matching it against a name of 3000 characters exceeds the matcher"),
      std::string::npos)
      << message;
  std::filesystem::remove(path);
}

TEST(NameMatch, AShapeThatDiffersIsAlwaysAnErrorAndChangesNothing) {
  Parameter a("w", ramp({2, 3}, 1));
  const std::string path = saved("shape", {a});
  Parameter a2("w", Tensor({3, 2}));
  OptimizerPtr opt = registry().create("adam", {a2});
  NameMatchPolicy lenient;
  lenient.fresh_for_missing = true;
  lenient.drop_unexpected = true;
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { optreg::load_optimizer_by_name(path, *opt, lenient); }),
            "checkpoint " + path + ": parameter 'w' (id 0) has shape [3, 2], but 'w' (id 0) has shape [2, 3] in the file");
  EXPECT_EQ(std::get<std::int64_t>(opt->state(a2).scalar("step")), 0);
  std::filesystem::remove(path);
}

TEST(NameMatch, StateOfAnotherOptimizerIsRefused) {
  Parameter a("w", ramp({2}, 1));
  const std::string path = saved("other", {a});
  Parameter a2("w", Tensor({2}));
  OptimizerPtr sgd = registry().create("sgd", {a2}, {{"momentum", 0.9}});
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>(
                [&] { optreg::load_optimizer_by_name(path, *sgd, NameMatchPolicy{}); }),
            "checkpoint " + path + ": it holds the state of optimizer 'adam', but this optimizer is 'sgd'");
  EXPECT_EQ(a2.value().to_vector(), (std::vector<float>{0, 0}));
  std::filesystem::remove(path);
}

TEST(NameMatch, AnotherOptimizersCheckpointIsRefusedEvenWhenItsEntriesFit) {
  // An adam checkpoint renamed radam: the same entries, another update rule.
  Parameter a("w", ramp({2}, 1));
  const std::string path = saved("identity", {a});
  optreg::Checkpoint c = optreg::read_checkpoint(path);
  std::filesystem::remove(path);
  c.optimizer.optimizer = "radam";
  Parameter a2("w", Tensor({2}));
  OptimizerPtr adam = registry().create("adam", {a2});
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>(
                [&] { optreg::load_optimizer_by_name(c, "c.ckpt", *adam, NameMatchPolicy{}); }),
            "checkpoint c.ckpt: it holds the state of optimizer 'radam', but this optimizer is 'adam'");
}

TEST(NameMatch, RenamesReadGlobSetsAndEscapesAsFnmatchDoes) {
  Parameter a("enc.l1.w", ramp({2}, 1)), b("enc.l2.w", ramp({2}, 3)), star("enc.*", ramp({2}, 5));
  const std::string path = saved("sets", {a, b, star});
  Parameter a2("net.l1.w", Tensor({2})), b2("enc.l2.w", Tensor({2})), star2("net.star", Tensor({2}));
  OptimizerPtr opt = registry().create("adam", {a2, b2, star2});
  NameMatchPolicy policy;
  policy.renames = {{"enc.l[!2].*", "net.l1.*"}, {"enc.\\*", "net.star"}};
  const NameMatchReport report = optreg::load_optimizer_by_name(path, *opt, policy);
  ASSERT_EQ(report.matched.size(), 3U);
  EXPECT_EQ(report.matched[0].saved, "enc.l1.w");
  EXPECT_EQ(report.matched[2].saved, "enc.*");
  EXPECT_EQ(star2.value().to_vector(), star.value().to_vector());
  policy.renames = {{"enc.[]x]", "y"}, {"enc.*", "*"}};  // a set holding ']' and 'x' matches neither name
  EXPECT_THROW(optreg::load_optimizer_by_name(path, *opt, policy), optreg::CheckpointError);
  std::filesystem::remove(path);
}
