// The error classes: each keeps its facts as fields and builds its message from them, and an
// error crossing call_plugin() keeps its class, its message and its fields.
#include <string>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/plugin_call.hpp>
#include <optreg/value.hpp>

namespace {

template <typename E, typename F>
E caught(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  ADD_FAILURE() << "nothing was thrown";
  return E("");
}

}  // namespace

TEST(Errors, AConfigErrorBuildsItsMessageFromFileLineColumnAndReason) {
  const optreg::ConfigError e("opt.yaml", 5, 3, "option 'x' is bad");
  EXPECT_STREQ(e.what(), "opt.yaml:5:3: option 'x' is bad");
  EXPECT_EQ(e.file(), "opt.yaml");
  EXPECT_EQ(e.line(), 5);
  EXPECT_EQ(e.column(), 3);
  EXPECT_EQ(e.reason(), "option 'x' is bad");
  const optreg::ConfigError whole("opt.yaml", 0, 9, "cannot be read");
  EXPECT_STREQ(whole.what(), "opt.yaml: cannot be read");
  EXPECT_EQ(whole.column(), 0);
}

TEST(Errors, AnOptionErrorOfASchemaNamesTheOptionItsValueAndThePartAtFault) {
  const optreg::Schema schema({optreg::Hyperparameter{"lr", optreg::ValueType::Float, optreg::Value(0.1),
                                                      optreg::Range{0, 1, false, false}, 0, {}, "learning rate"}});
  const auto range = caught<optreg::OptionError>([&] { schema.check("lr", optreg::Value(2.0), "optimizer 'x'"); });
  EXPECT_EQ(range.option(), "lr");
  EXPECT_EQ(range.value(), "2.0");
  EXPECT_EQ(range.part(), optreg::OptionPart::Value);
  EXPECT_EQ(range.where(), "optimizer 'x'");
  EXPECT_EQ(std::string(range.what()), "optimizer 'x': " + range.reason());
  const auto unknown = caught<optreg::OptionError>([&] { schema.check("rl", optreg::Value(2.0), ""); });
  EXPECT_EQ(unknown.option(), "rl");
  EXPECT_EQ(unknown.part(), optreg::OptionPart::Name);
  EXPECT_EQ(std::string(unknown.what()), unknown.reason());
}

TEST(Errors, APluginErrorAUsageErrorAndACheckpointErrorKeepTheirFacts) {
  const optreg::PluginError plugin("/p/lib.so", "it exports no entry");
  EXPECT_STREQ(plugin.what(), "plugin /p/lib.so: it exports no entry");
  EXPECT_EQ(plugin.path(), "/p/lib.so");
  EXPECT_EQ(plugin.reason(), "it exports no entry");
  EXPECT_EQ(plugin.versions().found, -1);
  const optreg::UsageError usage("optimizer 'sgd', param group 1", "w", 0, "its gradient has shape [3]");
  EXPECT_STREQ(usage.what(), "optimizer 'sgd', param group 1, parameter 'w' (position 0): its gradient has shape [3]");
  EXPECT_EQ(usage.parameter(), "w");
  EXPECT_EQ(usage.position(), 0);
  const optreg::CheckpointError version("a.ckpt", "envelope version 9 is not supported", {9, 1});
  EXPECT_STREQ(version.what(), "checkpoint a.ckpt: envelope version 9 is not supported");
  EXPECT_EQ(version.path(), "a.ckpt");
  EXPECT_EQ(version.versions().found, 9);
  EXPECT_EQ(version.versions().expected, 1);
  // Both are errors about a file: one handler reads the file of either.
  for (const optreg::FileError* e : {static_cast<const optreg::FileError*>(&plugin), static_cast<const optreg::FileError*>(&version)}) {
    EXPECT_FALSE(e->path().empty());
  }
}

TEST(Errors, FactsAreMadeInertLikeTheMessage) {
  const optreg::ConfigError e("a\x1b[2J.yaml", 1, 1, "bad \x1b name");
  EXPECT_EQ(std::string(e.what()).find('\x1b'), std::string::npos);
  EXPECT_EQ(e.reason().find('\x1b'), std::string::npos);
}

TEST(Errors, AnErrorThroughCallPluginKeepsItsClassMessageAndFields) {
  const auto e = caught<optreg::OptionError>([] {
    optreg::call_plugin("optimizer", "x", "/p/x.so", "validate()", []() -> int {
      throw optreg::OptionError(optreg::OptionFacts{"optimizer 'x'", "beta", "2.0", optreg::OptionPart::Rule, 3,
                                                    "option 'beta' must be below 1"});
    });
  });
  EXPECT_STREQ(e.what(), "optimizer 'x': option 'beta' must be below 1");
  EXPECT_EQ(e.option(), "beta");
  EXPECT_EQ(e.value(), "2.0");
  EXPECT_EQ(e.part(), optreg::OptionPart::Rule);
  EXPECT_EQ(e.group(), 3);
  const auto other = caught<optreg::PluginError>([] {
    optreg::call_plugin("optimizer", "x", "/p/x.so", "update_group()", []() -> int { throw std::runtime_error("boom"); });
  });
  EXPECT_STREQ(other.what(), "optimizer 'x' (plugin /p/x.so): update_group() threw: boom");
  EXPECT_EQ(other.path(), "/p/x.so");
}
