// The formatter module: options as text, and JSON with the documented encodings and layout.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include <optreg/train/format.hpp>

namespace {

using optreg::Options;
using optreg::Value;
using namespace optreg::train;

TEST(Format, OptionsTextEscapesNamesAndQuotesStrings) {
  const Options o = {{"lr", Value(0.1)}, {"mo\x1b[2Jde", Value(std::string("max"))}};
  EXPECT_EQ(options_text(o), "{lr: 0.1, mo\\x1b[2Jde: \"max\"}");
}

TEST(Format, OptionsAssignmentsKeepTheFormACheckpointRecords) {
  const Options o = {{"dim", Value(std::int64_t{10})}, {"noise", Value(0.5)}};
  EXPECT_EQ(options_assignments(o), "dim=10, noise=0.5");
}

TEST(Format, NonFiniteNumbersAreTheStringsYamlWrites) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(json_line(json_number(inf)), "\".inf\"");
  EXPECT_EQ(json_line(json_number(-inf)), "\"-.inf\"");
  EXPECT_EQ(json_line(json_number(std::nan(""))), "\".nan\"");
  EXPECT_EQ(json_line(json_value(Value(std::vector<double>{0.9, inf}))), "[0.9, \".inf\"]");
}

TEST(Format, NumbersReadBackTheSameDoubleOrHaveTheDigitsAskedFor) {
  for (const double d : {0.001, 1e-08, 2.0, 0.1 + 0.2, 123456789.125, 5e-324}) {
    EXPECT_EQ(std::strtod(json_line(json_number(d)).c_str(), nullptr), d) << json_line(json_number(d));
  }
  EXPECT_EQ(json_line(json_number(0.1f, 6)), "0.1");
  EXPECT_EQ(json_line(json_number(2.0 / 3.0, 6)), "0.666667");
}

TEST(Format, JsonStringsAreInertAndMessagesKeepTheirBackslashes) {
  EXPECT_EQ(json_line(json_text(std::string("w\0b\\", 4))), "\"w\\\\x00b\\\\x5c\"");
  EXPECT_EQ(json_line(json_message("C:\\config\n")), "\"C:\\\\config\\\\x0a\"");
  EXPECT_EQ(json_line(json_text("学习率")), "\"学习率\"");
}

TEST(Format, AnErrorObjectIsOneLine) {
  EXPECT_EQ(json_line(Json{{"error", json_message("no")}, {"refused", Json::array()}}), "{\"error\": \"no\", \"refused\": []}");
}

TEST(Format, AReportListsEachMemberAndEachObjectOfAListOnALine) {
  const Json j = {{"plugin", "x"},
                  {"results", {Json{{"check", "a"}}, Json{{"check", "b"}}}},
                  {"state", {{"0", Json{{"step", 1}}}}},
                  {"metadata", {{"seed", 7}}},
                  {"empty", Json::array()}};
  EXPECT_EQ(json_block(j),
            "{\n  \"plugin\": \"x\",\n  \"results\": [\n    {\"check\": \"a\"},\n    {\"check\": \"b\"}\n  ],\n"
            "  \"state\": {\n    \"0\": {\"step\": 1}\n  },\n  \"metadata\": {\"seed\": 7},\n  \"empty\": []\n}");
}

}  // namespace
