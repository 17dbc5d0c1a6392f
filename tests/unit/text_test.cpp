// The one escaping rule for untrusted text (<optreg/text.hpp>), and the places that apply it by
// construction: every optreg::Error message and every printed Value.
#include <cstdint>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include <optreg/error.hpp>
#include <optreg/text.hpp>
#include <optreg/value.hpp>

using optreg::escape_message;
using optreg::escape_text;
using optreg::quoted_name;
using optreg::unescape_text;

namespace {

/// Whether every byte of `s` is printable ASCII or part of a valid UTF-8 character other than
/// a C1 control: what may reach a terminal.
bool inert(const std::string& s) { return escape_message(s) == s; }

}  // namespace

TEST(Text, PrintableAsciiAndValidUtf8StayAsTheyAre) {
  for (const std::string s : {"adam", "layer.0.weight", "lr = 0.1 (step 3/4) ~!@#$%^&*()_+{}|:<>?'\"", "café",
                              "\u5b66\u4e60\u7387", "\U0001F642 emoji", "\u00a0no-break space", "\uffff", "\U0010FFFF"}) {
    EXPECT_EQ(escape_text(s), s);
    EXPECT_EQ(escape_message(s), s);
  }
}

TEST(Text, ControlCharactersAndTheBackslashBecomeHex) {
  EXPECT_EQ(escape_text("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
  EXPECT_EQ(escape_text(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_text("line\nnext\ttab\rcr\x7f"), "line\\x0anext\\x09tab\\x0dcr\\x7f");
  EXPECT_EQ(escape_text("C:\\dir"), "C:\\x5cdir");
  EXPECT_EQ(escape_text("\\x1b"), "\\x5cx1b") << "a literal \\x1b is told apart from an escaped ESC";
}

TEST(Text, C1ControlsAndEveryByteOfInvalidUtf8BecomeHex) {
  EXPECT_EQ(escape_text("\xc2\x85 \xc2\x9b"), "\\xc2\\x85 \\xc2\\x9b") << "NEL and CSI as UTF-8";
  EXPECT_EQ(escape_text("\x9b""31m"), "\\x9b31m") << "a lone 8-bit CSI";
  EXPECT_EQ(escape_text("caf\xe9"), "caf\\xe9") << "Latin-1";
  EXPECT_EQ(escape_text("\xc0\xaf"), "\\xc0\\xaf") << "overlong";
  EXPECT_EQ(escape_text("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate";
  EXPECT_EQ(escape_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "above U+10FFFF";
  EXPECT_EQ(escape_text("\xe2\x82"), "\\xe2\\x82") << "cut short at the end";
  EXPECT_EQ(escape_text("\xe2\x82x"), "\\xe2\\x82x") << "cut short by another character";
  EXPECT_EQ(escape_text("\xff\xfe"), "\\xff\\xfe");
}

TEST(Text, EscapedTextIsInertAndGivesBackEveryByte) {
  std::mt19937_64 random(12);
  for (int n = 0; n < 2000; ++n) {
    std::string s(static_cast<std::size_t>(random() % 24), '\0');
    for (char& c : s) c = static_cast<char>(random() % 256);
    const std::string e = escape_text(s);
    ASSERT_TRUE(inert(e)) << e;
    ASSERT_EQ(unescape_text(e), s) << e;
    ASSERT_EQ(escape_text(unescape_text(e)), e);
  }
}

TEST(Text, AMessageKeepsItsBackslashesSoThatEscapingTwiceChangesNothing) {
  const std::string inner = escape_message("unknown option 'l\x1br' in C:\\config");
  EXPECT_EQ(inner, "unknown option 'l\\x1br' in C:\\config");
  EXPECT_EQ(escape_message("checkpoint x: " + inner), "checkpoint x: " + inner);
  EXPECT_EQ(escape_message(std::string("a\0\n\xff", 4)), "a\\x00\\x0a\\xff");
}

TEST(Text, AQuotedNameIsCutAtACharacterBoundaryAndGivesItsLength) {
  EXPECT_EQ(quoted_name("adam"), "'adam'");
  EXPECT_EQ(quoted_name(std::string("st\0p", 4)), "'st\\x00p'");
  EXPECT_EQ(quoted_name(std::string(64, 'a')), "'" + std::string(64, 'a') + "'");
  EXPECT_EQ(quoted_name(std::string(70000, 'a')), "'" + std::string(64, 'a') + "'... (70000 bytes)");
  // 63 bytes, then a 3-byte character that does not fit in the 64 shown.
  EXPECT_EQ(quoted_name(std::string(63, 'b') + "\u20ac" + "tail"), "'" + std::string(63, 'b') + "'... (70 bytes)");
  EXPECT_EQ(quoted_name("\x1b" + std::string(100, 'c')), "'\\x1b" + std::string(63, 'c') + "'... (101 bytes)");
}

TEST(Text, AnErrorMessageIsInertAndANulDoesNotCutIt) {
  constexpr char kRaw[] = "config.yaml:2:9: unknown optimizer 'ad\0am\x1b]0;title\x07'";
  const optreg::ConfigError e(std::string(kRaw, sizeof kRaw - 1));
  EXPECT_EQ(std::string(e.what()), "config.yaml:2:9: unknown optimizer 'ad\\x00am\\x1b]0;title\\x07'");
  const optreg::Error multi_line("first line\nsecond line");
  EXPECT_EQ(std::string(multi_line.what()), "first line\\x0asecond line") << "a message is one line";
  const optreg::PluginError from_c_string("plugin \xff.so");
  EXPECT_EQ(std::string(from_c_string.what()), "plugin \\xff.so");
}

TEST(Text, AStringValuePrintsInertAndStillQuoted) {
  EXPECT_EQ(optreg::Value("plain").to_string(), "\"plain\"");
  EXPECT_EQ(optreg::Value(std::string("a\"b\\c\x1b\0", 7)).to_string(), "\"a\\\"b\\x5cc\\x1b\\x00\"");
  EXPECT_TRUE(inert(optreg::Value(std::string("\x9b\n\xff")).to_string()));
}

TEST(Text, AShortStringOfAValueForMessagesIsBounded) {
  EXPECT_EQ(optreg::Value(0.5).to_short_string(), "0.5");
  EXPECT_EQ(optreg::Value({0.9, 0.999}).to_short_string(), "[0.9, 0.999]");
  EXPECT_EQ(optreg::Value(std::vector<double>(100000, 0.5)).to_short_string(),
            "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, ...] (100000 elements)");
  EXPECT_EQ(optreg::Value(std::string(1000, 'x')).to_short_string(),
            "\"" + std::string(64, 'x') + "\"... (1000 bytes)");
}
