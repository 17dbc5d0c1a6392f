// The config document: the tree a host reads its own sections from, with the positions, rules
// and messages of the optimizer's sections.
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <optreg/config.hpp>
#include <optreg/config_document.hpp>

namespace {

using optreg::ConfigNode;
using optreg_test::message_of;

ConfigNode parse(const std::string& yaml) { return optreg::parse_config_document(yaml, "host.yaml"); }

std::string parse_message(const std::string& yaml) {
  return message_of<optreg::ConfigError>([&] { parse(yaml); });
}

std::string position(const ConfigNode& n) {
  return std::to_string(n.mark().line) + ":" + std::to_string(n.mark().column);
}

}  // namespace

TEST(ConfigDocument, NodesCarryTheirKindTextAndOneBasedPosition) {
  const ConfigNode root = parse("train:\n  seed: 7\n  tags: [a, 'b']\nempty:\n");
  ASSERT_TRUE(root.is_map());
  EXPECT_EQ(root.source(), "host.yaml");
  const auto entries = root.entries("the config");
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(entries[0].key.text(), "train");
  EXPECT_EQ(position(entries[0].key), "1:1");
  const auto train = entries[0].value.entries("section 'train'");
  EXPECT_EQ(train[0].value.text(), "7");
  EXPECT_EQ(position(train[0].value), "2:9");
  const auto tags = train[1].value.items();
  ASSERT_EQ(tags.size(), 2U);
  EXPECT_EQ(position(tags[1]), "3:13");
  EXPECT_FALSE(tags[0].is_string());
  EXPECT_TRUE(tags[1].is_string());
  EXPECT_TRUE(entries[1].value.is_null());
  EXPECT_STREQ(entries[1].value.kind_name(), "nothing");
  EXPECT_STREQ(train[1].value.kind_name(), "a list");
  EXPECT_STREQ(parse("{}").kind_name(), "an empty map");
}

TEST(ConfigDocument, AnEmptyDocumentIsNothingAtTheFirstLine) {
  for (const char* text : {"", "# only a comment\n"}) {
    const ConfigNode root = parse(text);
    EXPECT_TRUE(root.is_null());
    EXPECT_EQ(position(root), "1:1");
  }
  EXPECT_TRUE(ConfigNode().is_null());
}

TEST(ConfigDocument, EntriesRefuseADuplicateKeyNamingTheFirst) {
  const ConfigNode root = parse("train:\n  seed: 1\n  steps: 5\n  seed: 2\n");
  // Parsing keeps the duplicate: it is refused when its map is read.
  const ConfigNode train = root.entries("the config")[0].value;
  EXPECT_EQ(train.size(), 3U);
  EXPECT_EQ(message_of<optreg::ConfigError>([&] { train.entries("section 'train'"); }),
            "host.yaml:4:3: duplicate key 'seed' in section 'train' (first at line 2, column 3)");
}

TEST(ConfigDocument, EntriesRefuseAKeyThatIsNotAName) {
  const ConfigNode root = parse("? [a, b]\n: 1\n");
  EXPECT_EQ(message_of<optreg::ConfigError>([&] { root.entries("the config"); }),
            "host.yaml:1:3: a key of the config must be a name, not a list");
}

TEST(ConfigDocument, FindGivesTheValueOfAKeyOrNothing) {
  const ConfigNode root = parse("a: 1\nb: [2]\n");
  ASSERT_TRUE(root.find("b").has_value());
  EXPECT_TRUE(root.find("b")->is_list());
  EXPECT_FALSE(root.find("c").has_value());
  EXPECT_FALSE(root.find("a")->find("a").has_value());
}

TEST(ConfigDocument, ScalarsBecomeValuesByTheCoreSchemaAndTheirTags) {
  const ConfigNode root = parse(
      "i: 3\nf: 1.5e-3\nb: True\ns: '3'\nt: !!str 4\nx: !!float 5\ninf: -.inf\nword: adam\nl: [0.9, 1]\n");
  std::vector<optreg::Value> values;
  for (const auto& e : root.entries("the config")) values.push_back(e.value.to_value(e.key.text()));
  ASSERT_EQ(values.size(), 9U);
  EXPECT_EQ(values[0], optreg::Value(3));
  EXPECT_EQ(values[1], optreg::Value(1.5e-3));
  EXPECT_EQ(values[2], optreg::Value(true));
  EXPECT_EQ(values[3], optreg::Value("3"));
  EXPECT_EQ(values[4], optreg::Value("4"));
  EXPECT_EQ(values[5], optreg::Value(5.0));
  EXPECT_EQ(values[6], optreg::Value(-HUGE_VAL));
  EXPECT_EQ(values[7], optreg::Value("adam"));
  EXPECT_EQ(values[8], optreg::Value({0.9, 1.0}));
}

TEST(ConfigDocument, WhatIsNotAValueIsRefusedAtItsPlace) {
  const ConfigNode root = parse("a: ~\nb: {c: 1}\nd: [1, 'x']\ne: 1e999\n");
  const auto e = root.entries("the config");
  const auto value_message = [&](std::size_t i) {
    return message_of<optreg::ConfigError>([&] { e[i].value.to_value(e[i].key.text()); });
  };
  EXPECT_EQ(value_message(0), "host.yaml:1:4: option 'a' has no value");
  EXPECT_EQ(value_message(1), "host.yaml:2:4: option 'b' must be a value, not a map");
  EXPECT_EQ(value_message(2), "host.yaml:3:8: option 'd' must be a list of numbers; this element is not a number");
  EXPECT_EQ(value_message(3), "host.yaml:4:4: option 'e' = 1e999 is too large for a float (at most 1.8e308 in magnitude)");
}

TEST(ConfigDocument, AnAliasIsTheNodeItsAnchorNamesAndCostsNothing) {
  const ConfigNode root = parse("base: &b {lr: 0.1}\ncopy: *b\n");
  const auto e = root.entries("the config");
  // Placed where the anchored node begins (at its anchor), not at the alias.
  EXPECT_EQ(position(e[1].value), "1:7");
  EXPECT_EQ(e[1].value.entries("copy")[0].value.to_value("lr"), optreg::Value(0.1));
  // Nine levels of ten aliases each would be a billion nodes if aliases were copied.
  std::string laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    laughs += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + prev;
    for (int k = 1; k < 10; ++k) laughs += ", " + prev;
    laughs += "]\n";
  }
  const ConfigNode many = parse(laughs);
  EXPECT_EQ(many.find("l9")->items().size(), 10U);
  EXPECT_EQ(many.find("l9")->items()[0].items()[0].items().size(), 10U);
}

TEST(ConfigDocument, TheTextIsCheckedAsEveryConfigIs) {
  EXPECT_EQ(parse_message("a: 1\n---\nb: 2\n"),
            "host.yaml:2:1: a second YAML document starts here; a config is one document (a second one would be "
            "ignored): remove this '---' line and what follows it, or merge it into the first");
  EXPECT_EQ(parse_message("a: !custom 1\n"),
            "host.yaml:1:4: the tag '!custom' is not one a config takes on a scalar; a scalar takes !!str, !!int, "
            "!!float, !!bool or !!null, or no tag");
  EXPECT_EQ(parse_message("a: !!int 1.5\n"), "host.yaml:1:4: '1.5' is tagged !!int but is not an integer");
  EXPECT_EQ(parse_message("a: " + std::string(100, '[') + std::string(100, ']') + "\n"),
            "host.yaml:1:103: maps and lists are nested more than 100 deep here; a config nests at most 100");
  EXPECT_EQ(parse_message("a: [1, 2\n"), "host.yaml:2:1: YAML syntax error: end of sequence flow not found");
}

TEST(ConfigDocument, LoadReadsARegularFileWithinTheSizeLimitOnly) {
  optreg_test::TempDir dir;
  const std::string path = dir / "host.yaml";
  std::ofstream(path) << "problem: {name: quadratic}\n";
  EXPECT_EQ(optreg::load_config_document(path).source(), path);
  std::ofstream(path) << std::string(optreg::kMaxConfigFileBytes + 1, '#');
  EXPECT_EQ(message_of<optreg::ConfigError>([&] { optreg::load_config_document(path, "run config"); }),
            path + ": the run config is 1048577 bytes, above the limit of 1048576 bytes (1 MiB)");
  EXPECT_EQ(message_of<optreg::ConfigError>([&] { optreg::load_config_document(dir.path()); }),
            dir.path() + ": the config file is a folder, not a regular file");
}

TEST(ConfigDocument, HostSectionsLieBesideTheOptimizerSections) {
  const ConfigNode root = parse("problem: {name: mlp}\noptimizer: {name: sgd, lr: 0.1}\n");
  const optreg::OptimizerConfig config = optreg::parse_config_sections(root, "/configs", {"problem"});
  EXPECT_EQ(config.optimizer, "sgd");
  EXPECT_EQ(config.source, "host.yaml");
  EXPECT_EQ(message_of<optreg::ConfigError>([&] { optreg::parse_config_sections(root, "/configs", {"train"}); }),
            "host.yaml:1:1: unknown section 'problem'; known sections: optimizer, param_groups, plugins, scheduler, "
            "clip, average, accumulate, train");
}

TEST(ConfigDocument, AHostPlacesItsOwnErrors) {
  EXPECT_EQ(message_of<optreg::ConfigError>([] { optreg::throw_config_error("run.yaml", {3, 7}, "too few steps"); }),
            "run.yaml:3:7: too few steps");
  EXPECT_EQ(message_of<optreg::ConfigError>([] { parse("a: 1\n").find("a")->fail("not here"); }),
            "host.yaml:1:4: not here");
}
