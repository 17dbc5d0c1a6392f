#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/value.hpp>

using optreg::Hyperparameter;
using optreg::OptionError;
using optreg::Range;
using optreg::Schema;
using optreg::Value;
using optreg::ValueType;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Schema test_schema() {
  std::vector<Hyperparameter> h(5);
  h[0] = {"lr", ValueType::Float, Value(1e-3), Range{0, kInf, false, true}, 0, {}, "learning rate"};
  h[1] = {"betas", ValueType::FloatList, Value({0.9, 0.999}), Range{0, 1, false, true}, 2, {}, "moment decay"};
  h[2] = {"steps", ValueType::Int, Value(10), Range{1, 100, false, false}, 0, {}, "how many"};
  h[3] = {"mode", ValueType::String, Value("min"), Range{-kInf, kInf, false, false}, 0, {"min", "max"}, "direction"};
  h[4] = {"nesterov", ValueType::Bool, Value(false), Range{-kInf, kInf, false, false}, 0, {}, "nesterov"};
  return Schema(h);
}

std::string message_of(const Schema& s, const std::string& name, const Value& v) {
  try {
    s.check(name, v, "optimizer 'x'");
  } catch (const OptionError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no OptionError for " << name << " = " << v.to_string();
  return {};
}

}  // namespace

TEST(Value, HoldsEachTypeAndPrintsItAsConfigText) {
  EXPECT_EQ(Value(true).to_string(), "true");
  EXPECT_EQ(Value(3).to_string(), "3");
  EXPECT_EQ(Value(0.001).to_string(), "0.001");
  EXPECT_EQ(Value(1.0).to_string(), "1.0");
  EXPECT_EQ(Value("a\"b").to_string(), "\"a\\\"b\"");
  EXPECT_EQ(Value({0.9, 0.999}).to_string(), "[0.9, 0.999]");
  EXPECT_EQ(Value(std::numeric_limits<double>::infinity()).to_string(), ".inf");
  EXPECT_EQ(Value(3).type(), ValueType::Int);
  EXPECT_EQ(Value(2.0F).type(), ValueType::Float);
}

TEST(Value, FloatTextReadsBackTheSameDouble) {
  for (double d : {0.1, 1e-8, 0.999, 1.0 / 3.0, 123456.789}) EXPECT_EQ(std::stod(Value(d).to_string()), d);
}

TEST(Value, WrongTypedAccessNamesBothTypes) {
  try {
    (void)Value("fast").as_float();
    FAIL();
  } catch (const OptionError& e) {
    EXPECT_STREQ(e.what(), "expected a float, got the string \"fast\"");
  }
  EXPECT_EQ(Value(2).as_float(), 2.0);
  EXPECT_THROW((void)Value(2.5).as_int(), OptionError);
}

TEST(Range, ContainsRespectsOpenAndClosedEnds) {
  const Range r{0, 1, false, true};
  EXPECT_TRUE(r.contains(0));
  EXPECT_FALSE(r.contains(1));
  EXPECT_FALSE(r.contains(std::nan("")));
  EXPECT_EQ(r.to_string(), "[0.0, 1.0)");
  EXPECT_EQ((Range{0, kInf, true, true}).to_string(), "(0.0, inf)");
}

TEST(Range, AnInfiniteEndIsPrintedAsContainsTreatsIt) {
  const Range open{0, kInf, false, true};
  EXPECT_EQ(open.to_string(), "[0.0, inf)");
  EXPECT_FALSE(open.contains(kInf));
  EXPECT_TRUE(open.contains(1e308));
  const Range closed{0, kInf, false, false};
  EXPECT_EQ(closed.to_string(), "[0.0, inf]");
  EXPECT_TRUE(closed.contains(kInf));
  const Range finite{-kInf, kInf, true, true};
  EXPECT_EQ(finite.to_string(), "(-inf, inf)");
  EXPECT_FALSE(finite.contains(kInf));
  EXPECT_FALSE(finite.contains(-kInf));
  const Range not_nan{-kInf, kInf, false, false};
  EXPECT_EQ(not_nan.to_string(), "[-inf, inf]");
  EXPECT_TRUE(not_nan.contains(-kInf));
  EXPECT_FALSE(not_nan.contains(std::nan("")));
}

TEST(Range, IntegersAreComparedExactlyAndPrintedAsIntegers) {
  const Range counts{0, 9007199254740992.0, false, false};
  EXPECT_TRUE(counts.contains_integer(9007199254740992));
  // 2^53 + 1 rounds to 2^53 as a double: the comparison must not go through one.
  EXPECT_FALSE(counts.contains_integer(9007199254740993));
  EXPECT_FALSE(counts.contains_integer(-1));
  EXPECT_FALSE(counts.contains_integer(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(counts.to_string(ValueType::Int), "[0, 9007199254740992]");
  const Range half_open{0, 5, true, false};
  EXPECT_FALSE(half_open.contains_integer(0));
  EXPECT_TRUE(half_open.contains_integer(5));
  const Range fractional{0.5, 2.5, false, false};
  EXPECT_FALSE(fractional.contains_integer(0));
  EXPECT_TRUE(fractional.contains_integer(1));
  EXPECT_TRUE(fractional.contains_integer(2));
  EXPECT_FALSE(fractional.contains_integer(3));
  // An int is never infinite: an infinite end bounds nothing, whether open or closed.
  const Range unbounded{0, kInf, false, false};
  EXPECT_TRUE(unbounded.contains_integer(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(unbounded.to_string(ValueType::Int), "[0, inf)");
  EXPECT_TRUE((Range{-kInf, 0, true, false}).contains_integer(std::numeric_limits<std::int64_t>::min()));
}

TEST(Schema, AnIntBeyondItsRangeIsRefusedEvenWhereDoublesRound) {
  std::vector<Hyperparameter> h(1);
  h[0] = {"steps", ValueType::Int, Value(1), Range{0, 9007199254740992.0, false, false}, 0, {}, "how many"};
  EXPECT_EQ(message_of(Schema(h), "steps", Value(std::int64_t{9007199254740993})),
            "optimizer 'x': option 'steps' = 9007199254740993 is out of range: the value must be in "
            "[0, 9007199254740992] (how many)");
}

TEST(Schema, UnknownOptionSuggestsTheClosestName) {
  const std::string m = message_of(test_schema(), "betaz", Value({0.9, 0.99}));
  EXPECT_NE(m.find("optimizer 'x': unknown option 'betaz' (did you mean 'betas'?)"), std::string::npos) << m;
  EXPECT_NE(m.find("known options: lr, betas, steps, mode, nesterov"), std::string::npos) << m;
}

TEST(Schema, WrongTypeNamesOptionValueAndBothTypes) {
  EXPECT_EQ(message_of(test_schema(), "lr", Value("fast")),
            "optimizer 'x': option 'lr' = \"fast\" has the wrong type: expected a float, got a string");
  EXPECT_EQ(message_of(test_schema(), "nesterov", Value(1)),
            "optimizer 'x': option 'nesterov' = 1 has the wrong type: expected a bool, got an int");
}

TEST(Schema, OutOfRangeNamesOptionValueAndRange) {
  EXPECT_EQ(message_of(test_schema(), "lr", Value(-1.0)),
            "optimizer 'x': option 'lr' = -1.0 is out of range: the value must be in [0.0, inf) (learning rate)");
  EXPECT_EQ(message_of(test_schema(), "betas", Value({0.9, 1.0})),
            "optimizer 'x': option 'betas' = [0.9, 1.0] is out of range: element 1 must be in [0.0, 1.0) "
            "(moment decay)");
  EXPECT_NE(message_of(test_schema(), "steps", Value(0)).find("option 'steps' = 0 is out of range"), std::string::npos);
  EXPECT_NE(message_of(test_schema(), "lr", Value(std::nan(""))).find("out of range"), std::string::npos);
}

TEST(Schema, ListLengthIsChecked) {
  EXPECT_EQ(message_of(test_schema(), "betas", Value({0.9})),
            "optimizer 'x': option 'betas' = [0.9] has 1 elements, expected 2");
}

TEST(Schema, StringMustBeOneOfTheChoices) {
  EXPECT_EQ(message_of(test_schema(), "mode", Value("sideways")),
            "optimizer 'x': option 'mode' = \"sideways\" is not one of: min, max");
}

TEST(Schema, IntegerIsAcceptedForAFloatAndConverted) {
  const Value v = test_schema().check("lr", Value(1), "");
  EXPECT_EQ(v.type(), ValueType::Float);
  EXPECT_EQ(v.as_float(), 1.0);
}

TEST(Schema, ResolveAppliesOverridesOnTopOfDefaults) {
  const Schema s = test_schema();
  const optreg::Options o = s.resolve(s.defaults(), {{"lr", 0.5}, {"steps", 3}}, "");
  EXPECT_EQ(o.at("lr").as_float(), 0.5);
  EXPECT_EQ(o.at("steps").as_int(), 3);
  EXPECT_EQ(o.at("betas"), Value({0.9, 0.999}));
  EXPECT_EQ(o.size(), 5U);
}

TEST(ClosestNames, RanksByEditDistanceAndSkipsDistantNames) {
  const std::vector<std::string> known = {"momentum", "lr", "weight_decay", "nesterov", "dampening"};
  EXPECT_EQ(optreg::closest_names("momentom", known), (std::vector<std::string>{"momentum"}));
  EXPECT_EQ(optreg::closest_names("weight-decay", known).front(), "weight_decay");
  EXPECT_TRUE(optreg::closest_names("zzzzzzzz", known).empty());
}

TEST(UnknownNameMessage, SuggestsTheClosestNameThenListsEveryRegisteredOne) {
  EXPECT_EQ(optreg::unknown_name_message("unknown optimizer 'adm'", "adm", {"adam", "sgd"}),
            "unknown optimizer 'adm' (did you mean 'adam'?); registered: adam, sgd");
  EXPECT_EQ(optreg::unknown_name_message("unknown scheduler 'zzzzzz'", "zzzzzz", {"cosine", "step"}),
            "unknown scheduler 'zzzzzz'; registered: cosine, step");
}

TEST(UnknownNameMessage, SaysNoPluginIsLoadedWhenNothingIsRegistered) {
  EXPECT_EQ(optreg::unknown_name_message("no optimizer named 'sgd' is registered", "sgd", {}),
            "no optimizer named 'sgd' is registered; no plugin is loaded");
}

TEST(UnknownNameMessage, LeavesTheListOutWhenAskedTo) {
  EXPECT_EQ(optreg::unknown_name_message("no optimizer or scheduler named 'cosin' is registered", "cosin",
                                         {"adam", "cosine"}, optreg::ListKnown::No),
            "no optimizer or scheduler named 'cosin' is registered (did you mean 'cosine'?)");
}
