// Reading damaged and hostile checkpoint files. Every input here is a valid checkpoint with one
// fault put in: every failure must be a CheckpointError naming the file and the fault, nothing
// may crash, a forged count may not make the reader allocate more than the file's size, and a
// refused load leaves the optimizer and its parameters exactly as they were.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using optreg::OptimizerPtr;
using optreg::Parameter;
using optreg::Tensor;

namespace {

using Bytes = std::string;

constexpr std::size_t kHeader = 32;
constexpr std::uint64_t kForged = std::uint64_t{1} << 62;

// ------------------------------------------------------------------ bytes

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}
std::string f64(double d) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  return le64(bits);
}
/// A string as the archive stores it: its 64-bit length, then its bytes.
std::string stored(const std::string& s) { return le64(s.size()) + s; }

std::uint64_t get_le(const Bytes& b, std::size_t off, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[off + static_cast<std::size_t>(i)])) << (8 * i);
  }
  return v;
}
void put_le(Bytes& b, std::size_t off, std::uint64_t v, int width) {
  for (int i = 0; i < width; ++i) b[off + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
}

/// Recomputes the header's checksum, so that a forged payload passes it.
void reseal(Bytes& b) { put_le(b, 24, XXH3_64bits(b.data() + kHeader, b.size() - kHeader), 8); }
/// Makes the header's payload length agree with the file, then reseals.
void reseal_length(Bytes& b) {
  put_le(b, 16, b.size() - kHeader, 8);
  reseal(b);
}

std::string hex(std::uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// ------------------------------------------------------------------ outcomes

/// Every description a refused payload may carry (the parser's faults, the envelope's and
/// Boost's, which checkpoint.cpp wraps). "out of memory" is deliberately not among them.
const std::vector<std::string>& payload_faults() {
  static const std::vector<std::string> faults = {
      "exceeds what the remaining",  // a count bounded by the payload
      "the checksum does not match",
      "bytes follow the archive",
      "does not begin with a Boost.Serialization archive signature",
      "the archive is malformed",
      "is from the future",
      "negative extent",
      "element count overflows",
      "unknown value type code",
      "has the unknown dtype code",
      "has the unknown kind",
      "a boolean value holds the invalid byte",
      "the scheduler flag holds the invalid byte",
      "appears twice",
      "a duplicate",
      "announces a payload of",
  };
  return faults;
}

/// The message of the CheckpointError that `read` throws, or a failure naming what it did instead.
template <typename F>
::testing::AssertionResult checkpoint_error(F&& read, std::string& message) {
  try {
    read();
  } catch (const optreg::CheckpointError& e) {
    message = e.what();
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw " << typeid(e).name() << " instead of CheckpointError: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "the input was accepted";
}

/// `read` throws CheckpointError and its message holds every one of `words`.
template <typename F>
::testing::AssertionResult refused(F&& read, const std::vector<std::string>& words) {
  std::string m;
  ::testing::AssertionResult r = checkpoint_error(read, m);
  if (!r) return r;
  for (const auto& w : words) {
    if (m.find(w) == std::string::npos) return ::testing::AssertionFailure() << "the message lacks \"" << w << "\": " << m;
  }
  return ::testing::AssertionSuccess() << m;
}

/// `read` throws CheckpointError naming `name` and one of the known payload faults.
template <typename F>
::testing::AssertionResult refused_as_damaged(F&& read, const std::string& name) {
  std::string m;
  ::testing::AssertionResult r = checkpoint_error(read, m);
  if (!r) return r;
  if (m.rfind("checkpoint " + name + ": ", 0) != 0) return ::testing::AssertionFailure() << "the message does not name " << name << ": " << m;
  for (const auto& f : payload_faults()) {
    if (m.find(f) != std::string::npos) return ::testing::AssertionSuccess() << m;
  }
  return ::testing::AssertionFailure() << "the message names no known fault: " << m;
}

/// Either the forged payload still parses (a changed number is still a number) or it is refused
/// as damaged; never another exception, never a crash.
template <typename F>
::testing::AssertionResult parsed_or_refused(F&& read, const std::string& name, bool& accepted) {
  accepted = false;
  try {
    read();
    accepted = true;
    return ::testing::AssertionSuccess();
  } catch (...) {
  }
  return refused_as_damaged(read, name);
}

// ------------------------------------------------------------------ counting

std::uint64_t g_total = 0;

class TotalReport : public ::testing::Environment {
 public:
  void TearDown() override {
    std::cout << "[ corrupt  ] " << g_total << " corrupted checkpoint inputs tried in total" << std::endl;
  }
};
::testing::Environment* const g_report = ::testing::AddGlobalTestEnvironment(new TotalReport);

// ------------------------------------------------------------------ snapshots

std::string bits_of(const Tensor& t) {
  std::ostringstream s;
  s << optreg::to_string(t.shape()) << '@' << static_cast<const void*>(t.data()) << '{';
  for (std::size_t i = 0; i < t.numel(); ++i) {
    std::uint32_t b = 0;
    std::memcpy(&b, t.data() + i, sizeof b);
    s << std::hex << b << ' ';
  }
  s << '}';
  return s.str();
}
std::string bits_of(const optreg::Value& v) {
  std::ostringstream s;
  s << optreg::to_string(v.type()) << ':';
  switch (v.type()) {
    case optreg::ValueType::Float: s << hex(get_le(f64(v.as_float()), 0, 8)); break;
    case optreg::ValueType::FloatList:
      for (double d : v.as_float_list()) s << hex(get_le(f64(d), 0, 8)) << ' ';
      break;
    default: s << v.to_string(); break;
  }
  return s.str();
}

/// Everything a load could change, bit for bit: every option of every group, every state tensor
/// (its memory included) and scalar, and every parameter's value.
std::string fingerprint(const optreg::Optimizer& opt) {
  std::ostringstream s;
  const optreg::StateDict sd = opt.state_dict(optreg::TensorCopy::Shared);
  s << sd.optimizer << ' ' << sd.plugin_version << '\n';
  for (const auto& g : sd.param_groups) {
    s << "group";
    for (std::uint64_t id : g.params) s << ' ' << id;
    s << '\n';
    for (const auto& [k, v] : g.options) s << "  " << k << '=' << bits_of(v) << '\n';
  }
  for (const auto& [id, st] : sd.state) {
    for (const auto& [name, t] : st.tensors()) s << id << ' ' << name << ' ' << bits_of(t) << '\n';
    for (const auto& [name, v] : st.scalars()) {
      s << id << ' ' << name << ' ';
      if (v.index() == 0) {
        s << std::get<std::int64_t>(v);
      } else {
        s << hex(get_le(f64(std::get<double>(v)), 0, 8));
      }
      s << '\n';
    }
  }
  for (const Parameter& p : opt.parameters()) s << p.name() << ' ' << bits_of(p.value()) << '\n';
  return s.str();
}

// ------------------------------------------------------------------ fixture

class CheckpointCorrupt : public optreg_test::RegistryTest {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("optreg-corrupt-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    RecordProperty("corrupted_inputs", std::to_string(tried_));
    std::cout << "[ corrupt  ] " << tried_ << " corrupted inputs tried" << std::endl;
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  /// Counts one corrupted input.
  void tried(std::uint64_t n = 1) {
    tried_ += n;
    g_total += n;
  }

  /// The parameters of the model every test saves: a matrix, a vector and a scalar.
  static std::vector<Parameter> model_params(const optreg::Shape& weight_shape = {3, 5}) {
    std::vector<float> w(optreg::numel_of(weight_shape));
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.1F * static_cast<float>(i) - 0.4F;
    std::vector<float> b(11);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = 0.05F * static_cast<float>(i);
    return {Parameter("weight", Tensor(weight_shape, w)), Parameter("bias", Tensor({11}, b)),
            Parameter("gain", Tensor(optreg::Shape{}, {1.5F}))};
  }
  /// `steps` updates with gradients that depend on `seed`.
  static void train(optreg::Optimizer& opt, int steps, float seed) {
    for (int s = 0; s < steps; ++s) {
      for (Parameter p : opt.parameters()) {
        std::vector<float> g(p.value().numel());
        for (std::size_t i = 0; i < g.size(); ++i) g[i] = seed * static_cast<float>(s + 1) - 0.03F * static_cast<float>(i);
        p.accumulate_grad(Tensor(p.value().shape(), g));
      }
      opt.step().clear_grad();
    }
  }
  /// Adam (amsgrad: three state tensors) over model_params(), after three steps.
  static OptimizerPtr trained_adam(std::vector<Parameter> params, double lr = 0.01, float seed = 0.2F) {
    OptimizerPtr opt = registry().create("adam", std::move(params), {{"lr", lr}, {"amsgrad", true}});
    train(*opt, 3, seed);
    return opt;
  }

  /// A valid checkpoint file of trained_adam(), with metadata; checked to load.
  Bytes valid_checkpoint() {
    OptimizerPtr opt = trained_adam(model_params());
    const std::string file = path("valid.ckpt");
    optreg::save_optimizer(file, *opt, {{"marker", "forgery"}, {"step", 3}});
    Bytes b = read_file(file);
    EXPECT_NO_THROW(optreg::parse_checkpoint(b.data(), b.size(), "valid.ckpt"));
    EXPECT_GT(b.size(), 600U);
    return b;
  }

  /// The first offset of `pattern` in `b`; fails the test when absent.
  static std::size_t find(const Bytes& b, const std::string& pattern) {
    const std::size_t at = b.find(pattern, kHeader);
    EXPECT_NE(at, Bytes::npos) << "the pattern is not in the checkpoint";
    return at == Bytes::npos ? 0 : at;
  }

  /// Where each kind of count lies in valid_checkpoint(), found by the bytes around it.
  struct CountSite {
    std::string label;
    std::size_t offset;
    std::uint64_t original;
    /// How the reader names it in "the <what> count N exceeds ...".
    std::string what;
  };
  std::vector<CountSite> count_sites(const Bytes& b) {
    const std::string version = registry().find("adam")->plugin_version;
    const std::size_t group_count = find(b, stored(version)) + 8 + version.size();
    const std::size_t option_key = find(b, stored("amsgrad"));
    const std::size_t ids = find(b, le64(3) + le64(0) + le64(1) + le64(2));
    const std::size_t first_state_name = find(b, stored("exp_avg"));
    std::vector<CountSite> sites = {
        {"optimizer name length", find(b, stored("adam")), 4, "string length"},
        {"option name length", option_key, 7, "string length"},
        {"metadata string length", find(b, stored("forgery")), 7, "string length"},
        {"param group count", group_count, 1, "param group"},
        {"option count", option_key - 8, 10, "option"},
        {"betas list length", find(b, le64(2) + f64(0.9) + f64(0.999)), 2, "list element"},
        {"parameter id count", ids, 3, "parameter id"},
        {"state entry count", ids + 32, 3, "state entry"},
        {"state tensor count", first_state_name - 8, 3, "state tensor"},
        {"state scalar count", find(b, stored("step")) - 8, 1, "state scalar"},
        {"tensor dimension count", find(b, le64(2) + le64(3) + le64(5)), 2, "tensor dimension"},
        {"tensor extent", find(b, le64(1) + le64(11)) + 8, 11, "tensor element"},
        {"parameter count", find(b, le64(3) + stored("weight")), 3, "parameter"},
        {"metadata entry count", find(b, le64(2) + stored("marker")), 2, "metadata entry"},
    };
    for (const auto& s : sites) EXPECT_EQ(get_le(b, s.offset, 8), s.original) << s.label << " is not where it was sought";
    return sites;
  }

  /// Writes `b` to a file of its own and reads it back.
  void read_as_file(const Bytes& b, const std::string& file) {
    write_file(file, b);
    optreg::read_checkpoint(file);
  }

 private:
  fs::path dir_;
  std::uint64_t tried_ = 0;
};

}  // namespace

// ------------------------------------------------------------------ truncation

TEST_F(CheckpointCorrupt, EveryTruncationIsRefusedByReadCheckpoint) {
  const Bytes valid = valid_checkpoint();
  const std::string file = path("truncated.ckpt");
  for (std::size_t n = 0; n < valid.size(); ++n) {
    tried();
    write_file(file, valid.substr(0, n));
    const std::vector<std::string> words =
        n < kHeader ? std::vector<std::string>{"checkpoint " + file + ": ", "the file is " + std::to_string(n) + " bytes",
                                               "shorter than the 32-byte header", "truncated"}
                    : std::vector<std::string>{"checkpoint " + file + ": ",
                                               "announces a payload of " + std::to_string(valid.size() - kHeader),
                                               "the file holds " + std::to_string(n - kHeader), "truncated"};
    ASSERT_TRUE(refused([&] { optreg::read_checkpoint(file); }, words)) << "truncated to " << n << " bytes";
  }
}

TEST_F(CheckpointCorrupt, EveryTruncationIsRefusedByParseCheckpoint) {
  const Bytes valid = valid_checkpoint();
  for (std::size_t n = 0; n < valid.size(); ++n) {
    tried();
    const Bytes cut = valid.substr(0, n);
    const std::vector<std::string> words =
        n < kHeader ? std::vector<std::string>{"checkpoint in-memory.ckpt: ", "shorter than the 32-byte header", "truncated"}
                    : std::vector<std::string>{"checkpoint in-memory.ckpt: ", "the file holds " + std::to_string(n - kHeader),
                                               "truncated"};
    ASSERT_TRUE(refused([&] { optreg::parse_checkpoint(cut.data(), cut.size(), "in-memory.ckpt"); }, words))
        << "truncated to " << n << " bytes";
  }
}

TEST_F(CheckpointCorrupt, EveryTruncatedArchiveBehindAConsistentHeaderIsRefused) {
  // The header is made to agree with the shorter payload, so only the archive can tell.
  const Bytes valid = valid_checkpoint();
  const std::string file = path("short-archive.ckpt");
  for (std::size_t n = kHeader; n < valid.size(); ++n) {
    Bytes cut = valid.substr(0, n);
    reseal_length(cut);
    tried(2);
    ASSERT_TRUE(refused_as_damaged([&] { optreg::parse_checkpoint(cut.data(), cut.size(), "short.ckpt"); }, "short.ckpt"))
        << "archive cut to " << n - kHeader << " bytes";
    ASSERT_TRUE(refused_as_damaged([&] { read_as_file(cut, file); }, file)) << "archive cut to " << n - kHeader << " bytes";
  }
}

// ------------------------------------------------------------------ single-byte flips

TEST_F(CheckpointCorrupt, EverySingleByteFlipIsRefused) {
  const Bytes valid = valid_checkpoint();
  const std::string file = path("flipped.ckpt");
  for (const unsigned mask : {0xFFU, 0x01U}) {
    for (std::size_t at = 0; at < valid.size(); ++at) {
      Bytes b = valid;
      b[at] = static_cast<char>(static_cast<unsigned char>(b[at]) ^ mask);
      std::vector<std::string> words;
      if (at < 8) {
        words = {"wrong magic"};
      } else if (at < 12) {
        words = {"envelope version " + std::to_string(get_le(b, 8, 4)), "is not supported"};
      } else if (at < 16) {
        words = {"archive format " + std::to_string(get_le(b, 12, 4)), "is not supported"};
      } else if (at < 24) {
        words = {"announces a payload of " + std::to_string(get_le(b, 16, 8))};
      } else if (at < kHeader) {
        words = {"the checksum does not match the payload; the file is damaged"};
      }
      tried(2);
      const auto in_memory = [&] { optreg::parse_checkpoint(b.data(), b.size(), "flipped.ckpt"); };
      const auto from_file = [&] { read_as_file(b, file); };
      if (at < kHeader) {
        words.insert(words.begin(), "checkpoint flipped.ckpt: ");
        ASSERT_TRUE(refused(in_memory, words)) << "byte " << at << " ^ " << hex(mask);
        words.front() = "checkpoint " + file + ": ";
        ASSERT_TRUE(refused(from_file, words)) << "byte " << at << " ^ " << hex(mask);
      } else {
        ASSERT_TRUE(refused_as_damaged(in_memory, "flipped.ckpt")) << "byte " << at << " ^ " << hex(mask);
        ASSERT_TRUE(refused_as_damaged(from_file, file)) << "byte " << at << " ^ " << hex(mask);
      }
    }
  }
}

TEST_F(CheckpointCorrupt, EveryFlipBehindARecomputedChecksumParsesOrIsRefused) {
  // A hostile file carries a valid checksum: the parser alone must hold.
  const Bytes valid = valid_checkpoint();
  std::uint64_t accepted = 0;
  std::uint64_t refusals = 0;
  for (const unsigned mask : {0xFFU, 0x01U, 0x80U}) {
    for (std::size_t at = kHeader; at < valid.size(); ++at) {
      Bytes b = valid;
      b[at] = static_cast<char>(static_cast<unsigned char>(b[at]) ^ mask);
      reseal(b);
      tried();
      bool ok = false;
      ASSERT_TRUE(parsed_or_refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "hostile.ckpt"); }, "hostile.ckpt", ok))
          << "byte " << at << " ^ " << hex(mask);
      (ok ? accepted : refusals) += 1;
    }
  }
  std::cout << "[ corrupt  ] " << refusals << " refused, " << accepted << " still well-formed (a changed tensor or float value)"
            << std::endl;
  EXPECT_GT(refusals, 0U);
}

// ------------------------------------------------------------------ forged counts

TEST_F(CheckpointCorrupt, ForgedCountsAreRefusedByTheBoundBeforeAllocating) {
  const Bytes valid = valid_checkpoint();
  const std::string file = path("forged.ckpt");
  const std::string huge = std::to_string(kForged);
  for (const CountSite& site : count_sites(valid)) {
    Bytes b = valid;
    put_le(b, site.offset, kForged, 8);
    reseal(b);
    tried(2);
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "forged.ckpt"); },
                        {"checkpoint forged.ckpt: ", "the " + site.what + " count " + huge,
                         "exceeds what the remaining", "bytes of the payload can hold"}))
        << site.label;
    EXPECT_TRUE(refused([&] { read_as_file(b, file); }, {"checkpoint " + file + ": ", "the " + site.what + " count " + huge}))
        << site.label;
  }
}

TEST_F(CheckpointCorrupt, ForgedTensorExtentsAreRefused) {
  const Bytes valid = valid_checkpoint();
  const std::size_t dims = find(valid, le64(2) + le64(3) + le64(5));
  struct Case {
    std::uint64_t extent;
    std::string words;
  };
  for (const Case& c : {Case{kForged, "a tensor's element count overflows"},  // 2^62 * 5
                        Case{~std::uint64_t{0}, "a tensor has the negative extent -1"},
                        Case{std::uint64_t{1} << 40, "the tensor element count 5497558138880 exceeds"}}) {
    Bytes b = valid;
    put_le(b, dims + 8, c.extent, 8);
    reseal(b);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "extent.ckpt"); },
                        {"checkpoint extent.ckpt: ", c.words}));
  }
}

TEST_F(CheckpointCorrupt, ForgedArchiveSignatureLengthIsRefused) {
  // Boost would allocate the signature's stored length before reading it.
  const Bytes valid = valid_checkpoint();
  ASSERT_EQ(get_le(valid, kHeader, 8), 22U);  // strlen("serialization::archive")
  for (const std::uint64_t n : {kForged, std::uint64_t{1} << 32, std::uint64_t{21}, std::uint64_t{0}}) {
    Bytes b = valid;
    put_le(b, kHeader, n, 8);
    reseal(b);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "signature.ckpt"); },
                        {"checkpoint signature.ckpt: ", "does not begin with a Boost.Serialization archive signature",
                         "its length field reads " + std::to_string(n)}));
  }
}

TEST_F(CheckpointCorrupt, InvalidBooleanByteIsRefused) {
  const Bytes valid = valid_checkpoint();
  const std::size_t value = find(valid, stored("amsgrad")) + 15 + 5 + 1;  // class info, type code, then the byte
  ASSERT_EQ(get_le(valid, value - 1, 2), 0x0101U) << "amsgrad is the boolean true";
  for (const std::uint64_t byte : {std::uint64_t{2}, std::uint64_t{0xFF}}) {
    Bytes b = valid;
    put_le(b, value, byte, 1);
    reseal(b);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "bool.ckpt"); },
                        {"checkpoint bool.ckpt: ", "a boolean value holds the invalid byte " + std::to_string(byte)}));
  }
}

TEST_F(CheckpointCorrupt, NamesFromTheFileAreEscapedInMessages) {
  // A NUL inside a name would otherwise end the message before it says what is wrong.
  const Bytes valid = valid_checkpoint();
  const std::size_t name = find(valid, stored("step"));
  ASSERT_EQ(get_le(valid, name + 12, 1), 1U) << "the kind byte of the integer 'step' follows its name";
  Bytes b = valid;
  b[name + 8 + 2] = '\0';
  put_le(b, name + 12, 9, 1);
  reseal(b);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "names.ckpt"); },
                      {"checkpoint names.ckpt: ", "state scalar 'st\\x00p' has the unknown kind 9"}));
}

// ------------------------------------------------------------------ envelope

TEST_F(CheckpointCorrupt, WrongMagicIsRefused) {
  const Bytes valid = valid_checkpoint();
  for (const std::string& magic : {std::string("OPTREGCX"), std::string(8, '\0'), std::string("PK\x03\x04\x14\0\0\0", 8),
                                  std::string("optregck")}) {
    Bytes b = valid;
    b.replace(0, 8, magic);
    tried();
    const std::string file = path("magic.ckpt");
    write_file(file, b);
    EXPECT_TRUE(refused([&] { optreg::read_checkpoint(file); },
                        {"checkpoint " + file + ": ", "it is not an optreg checkpoint (wrong magic)"}));
  }
}

TEST_F(CheckpointCorrupt, EnvelopeVersionFromTheFutureIsRefused) {
  const Bytes valid = valid_checkpoint();
  for (const std::uint64_t v : {std::uint64_t{2}, std::uint64_t{0xFFFFFFFF}}) {
    Bytes b = valid;
    put_le(b, 8, v, 4);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "future.ckpt"); },
                        {"checkpoint future.ckpt: ", "envelope version " + std::to_string(v) + " is not supported",
                         "supports 1 to 1", "written by a newer optreg"}));
  }
  Bytes zero = valid;
  put_le(zero, 8, 0, 4);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(zero.data(), zero.size(), "zero.ckpt"); },
                      {"checkpoint zero.ckpt: ", "envelope version 0 is not supported"}));
}

TEST_F(CheckpointCorrupt, UnknownArchiveFormatIsRefused) {
  const Bytes valid = valid_checkpoint();
  for (const std::uint64_t f : {std::uint64_t{0}, std::uint64_t{2}, std::uint64_t{0xFFFFFFFF}}) {
    Bytes b = valid;
    put_le(b, 12, f, 4);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "format.ckpt"); },
                        {"checkpoint format.ckpt: ", "archive format " + std::to_string(f) + " is not supported",
                         "supports 1, binary"}));
  }
}

TEST_F(CheckpointCorrupt, PayloadLengthThatDisagreesWithTheFileIsRefused) {
  const Bytes valid = valid_checkpoint();
  const std::uint64_t payload = valid.size() - kHeader;
  for (const std::uint64_t announced : {payload - 1, payload + 1, std::uint64_t{0}, ~std::uint64_t{0}}) {
    Bytes b = valid;
    put_le(b, 16, announced, 8);
    tried();
    EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "length.ckpt"); },
                        {"checkpoint length.ckpt: ", "announces a payload of " + std::to_string(announced) + " bytes",
                         "the file holds " + std::to_string(payload)}));
  }
  // Bytes appended to the file, and bytes appended inside the payload behind a valid header.
  Bytes appended = valid + "trailing";
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(appended.data(), appended.size(), "appended.ckpt"); },
                      {"checkpoint appended.ckpt: ", "the file holds " + std::to_string(payload + 8)}));
  reseal_length(appended);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(appended.data(), appended.size(), "appended.ckpt"); },
                      {"checkpoint appended.ckpt: ", "8 bytes follow the archive inside the payload"}));
}

TEST_F(CheckpointCorrupt, WrongChecksumIsRefused) {
  const Bytes valid = valid_checkpoint();
  Bytes b = valid;
  put_le(b, 24, get_le(b, 24, 8) + 1, 8);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "sum.ckpt"); },
                      {"checkpoint sum.ckpt: ", "the checksum does not match the payload"}));
  // A changed tensor element is well-formed: only the checksum can tell.
  Bytes element = valid;
  const std::size_t first_element = find(valid, le64(2) + le64(3) + le64(5)) + 28;  // shape, dtype code
  element[first_element] = static_cast<char>(element[first_element] ^ 0x10);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(element.data(), element.size(), "sum.ckpt"); },
                      {"checkpoint sum.ckpt: ", "the checksum does not match the payload; the file is damaged"}));
}

// ------------------------------------------------------------------ versions inside the archive

TEST_F(CheckpointCorrupt, LayoutVersionFromTheFutureIsRefused) {
  // A binary archive stores, the first time each class appears, a tracking byte and a 32-bit
  // class version right before the object's own data.
  const Bytes valid = valid_checkpoint();
  const std::size_t name = find(valid, stored("adam"));           // StateDict's first field
  const std::size_t option = find(valid, stored("amsgrad")) + 15;  // the first Value
  const std::size_t state = find(valid, stored("exp_avg")) - 8;     // the first ParamState's first field
  const std::size_t tensor = find(valid, stored("exp_avg")) + 15;   // the first Tensor
  struct Site {
    std::string cls;
    std::size_t version;  // offset of the 32-bit version; the tracking byte precedes it
    std::uint64_t current;  // the version this optreg writes
    std::string words;      // the message for version current + 1
  };
  const std::vector<Site> sites = {
      {"Checkpoint", name - 9, 2, "checkpoint layout version 3 is from the future (this reader supports 0 to 2); upgrade optreg"},
      {"StateDict", name - 4, 0, "state dict layout version 1 is from the future (this reader supports 0); upgrade optreg"},
      {"Value", option + 1, 0, "value layout version 1 is from the future"},
      {"ParamState", state - 4, 0, "state layout version 1 is from the future"},
      {"Tensor", tensor + 1, 2, "tensor layout version 3 is from the future"},
  };
  ASSERT_EQ(get_le(valid, option + 5, 1), 1U) << "the first value is the boolean amsgrad";
  ASSERT_EQ(get_le(valid, tensor + 5, 8), 2U) << "the first tensor is the 3x5 exp_avg";
  for (const Site& s : sites) {
    ASSERT_EQ(get_le(valid, s.version - 1, 5), s.current << 8)
        << s.cls << ": tracking 0 and version " << s.current << " are expected here";
    const std::uint64_t next = s.current + 1;
    for (const std::uint64_t future : {next, std::uint64_t{0xFFFFFFFF}}) {
      Bytes b = valid;
      put_le(b, s.version, future, 4);
      reseal(b);
      tried();
      std::string words = s.words;
      const std::string shown = " " + std::to_string(next) + " ";
      if (future != next) words.replace(words.find(shown), shown.size(), " " + std::to_string(future) + " ");
      EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "layout.ckpt"); },
                          {"checkpoint layout.ckpt: ", words}))
          << s.cls;
    }
  }
  // The archive library's own version (a 16-bit field after the signature).
  const std::size_t library = kHeader + 8 + 22;
  Bytes b = valid;
  put_le(b, library, 0xFF, 2);
  reseal(b);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(b.data(), b.size(), "library.ckpt"); },
                      {"checkpoint library.ckpt: ", "the archive is malformed (unsupported version)"}));
}

TEST_F(CheckpointCorrupt, AnUnknownDtypeCodeAndAQuantizedOneBeforeTensorLayout2AreRefused) {
  const Bytes valid = valid_checkpoint();
  const std::size_t tensor = find(valid, stored("exp_avg")) + 15;  // the first Tensor: its tracking byte
  const std::size_t code = tensor + 5 + 8 + 2 * 8;                   // after its version, rank and shape
  ASSERT_EQ(get_le(valid, tensor + 1, 4), 2U) << "tensor layout version 2";
  ASSERT_EQ(get_le(valid, code, 4), 1U) << "the first tensor is float32";
  Bytes unknown = valid;
  put_le(unknown, code, 7, 4);
  reseal(unknown);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(unknown.data(), unknown.size(), "code.ckpt"); },
                      {"checkpoint code.ckpt: ", "a tensor has the unknown dtype code 7 (tensor layout version 2)"}));
  // Layout 1 knew no quantized dtype: its code 5 is damage, not qint8.
  Bytes early = valid;
  put_le(early, tensor + 1, 1, 4);
  put_le(early, code, 5, 4);
  reseal(early);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(early.data(), early.size(), "early.ckpt"); },
                      {"checkpoint early.ckpt: ", "a tensor has the unknown dtype code 5 (tensor layout version 1)"}));
}

TEST_F(CheckpointCorrupt, CheckpointLayoutVersions0And1WithoutSchedulerOrSectionsStillLoad) {
  // A version 1 checkpoint is a version 2 one without the trailing section count (8 bytes);
  // a version 0 one lacks the scheduler flag byte before it too.
  const Bytes valid = valid_checkpoint();
  const std::size_t version = find(valid, stored("adam")) - 9;
  ASSERT_EQ(get_le(valid, version, 4), 2U);
  ASSERT_EQ(get_le(valid, valid.size() - 8, 8), 0U) << "the last 8 bytes are the section count, 0";
  ASSERT_EQ(static_cast<unsigned char>(valid[valid.size() - 9]), 0U) << "then the scheduler flag, 0: no scheduler";
  const optreg::Checkpoint now = optreg::parse_checkpoint(valid.data(), valid.size(), "now.ckpt");
  for (const std::uint64_t old_version : {1U, 0U}) {
    Bytes old = valid;
    put_le(old, version, old_version, 4);
    old.resize(old.size() - (old_version == 1 ? 8 : 9));
    reseal_length(old);
    tried();
    const optreg::Checkpoint then = optreg::parse_checkpoint(old.data(), old.size(), "old.ckpt");
    EXPECT_FALSE(then.scheduler.has_value());
    EXPECT_TRUE(then.sections.empty());
    EXPECT_EQ(then.metadata, now.metadata);
    EXPECT_EQ(then.optimizer.optimizer, "adam");
    EXPECT_EQ(then.parameters.size(), now.parameters.size());
  }
  // The same bytes read as version 2 lack the count: refused, never misread.
  Bytes cut = valid;
  cut.resize(cut.size() - 8);
  reseal_length(cut);
  tried();
  EXPECT_TRUE(refused_as_damaged([&] { optreg::parse_checkpoint(cut.data(), cut.size(), "cut.ckpt"); }, "cut.ckpt"));
}

TEST_F(CheckpointCorrupt, ASectionNamedTwiceOrWithAForgedCountIsRefused) {
  optreg::Checkpoint c = optreg::parse_checkpoint(valid_checkpoint().data(), valid_checkpoint().size(), "v.ckpt");
  c.sections.push_back({"average", {{"steps", optreg::Value(std::int64_t{1})}}, {{"w", optreg::Tensor({2}, 1.0f)}}});
  c.sections.push_back({"average", {}, {}});
  const std::string twice = optreg::encode_checkpoint(c);
  tried();
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(twice.data(), twice.size(), "twice.ckpt"); },
                      {"checkpoint twice.ckpt: ", "the section 'average' appears twice"}));
  c.sections.pop_back();
  const std::string once = optreg::encode_checkpoint(c);
  const optreg::Checkpoint back = optreg::parse_checkpoint(once.data(), once.size(), "once.ckpt");
  ASSERT_EQ(back.sections.size(), 1U);
  EXPECT_EQ(back.sections[0].name, "average");
  EXPECT_EQ(back.sections[0].scalars.at("steps").as_int(), 1);
  EXPECT_TRUE(optreg_test::same_bits(back.sections[0].tensors[0].value, optreg::Tensor({2}, 1.0f)));
  // A section count of 2^62 is refused before anything is allocated.
  Bytes forged = once;
  const std::size_t count = find(forged, stored("average")) - 8;
  ASSERT_EQ(get_le(forged, count, 8), 1U);
  put_le(forged, count, std::uint64_t{1} << 62, 8);
  reseal(forged);
  tried();
  EXPECT_TRUE(refused_as_damaged([&] { optreg::parse_checkpoint(forged.data(), forged.size(), "forged.ckpt"); },
                                 "forged.ckpt"));
}

// ------------------------------------------------------------------ loading into an optimizer

TEST_F(CheckpointCorrupt, CheckpointOfAnotherOptimizerLeavesTheOptimizerUnchanged) {
  OptimizerPtr sgd = registry().create("sgd", model_params(), {{"lr", 0.1}, {"momentum", 0.9}});
  train(*sgd, 2, 0.5F);
  const std::string file = path("sgd.ckpt");
  optreg::save_optimizer(file, *sgd);
  OptimizerPtr adam = trained_adam(model_params());
  const std::string before = fingerprint(*adam);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *adam); },
                      {"checkpoint " + file + ": ", "the state dict is of optimizer 'sgd', but this optimizer is 'adam'"}));
  EXPECT_EQ(fingerprint(*adam), before);
}

TEST_F(CheckpointCorrupt, GroupCountMismatchLeavesTheOptimizerUnchanged) {
  std::vector<Parameter> p = model_params();
  OptimizerPtr two = registry().create("adam", std::vector<optreg::ParamGroupSpec>{{{p[0], p[1]}, {}}, {{p[2]}, {{"lr", 0.5}}}});
  train(*two, 2, 0.3F);
  const std::string file = path("two-groups.ckpt");
  optreg::save_optimizer(file, *two);
  OptimizerPtr one = trained_adam(model_params());
  const std::string before = fingerprint(*one);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *one); },
                      {"checkpoint " + file + ": ", "the state dict has 2 param groups, but this optimizer has 1"}));
  EXPECT_EQ(fingerprint(*one), before);
}

TEST_F(CheckpointCorrupt, ParameterShapeMismatchLeavesTheOptimizerUnchanged) {
  OptimizerPtr saved = trained_adam(model_params({5, 3}));
  const std::string file = path("transposed.ckpt");
  optreg::save_optimizer(file, *saved);
  OptimizerPtr live = trained_adam(model_params({3, 5}));
  const std::string before = fingerprint(*live);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *live); },
                      {"checkpoint " + file + ": ", "parameter id 0 is 'weight' of shape [5, 3] in the file",
                       "but 'weight' of shape [3, 5] in the optimizer"}));
  EXPECT_EQ(fingerprint(*live), before);
}

TEST_F(CheckpointCorrupt, ParameterCountMismatchLeavesTheOptimizerUnchanged) {
  std::vector<Parameter> fewer = model_params();
  fewer.pop_back();
  OptimizerPtr saved = trained_adam(fewer);
  const std::string file = path("fewer.ckpt");
  optreg::save_optimizer(file, *saved);
  OptimizerPtr live = trained_adam(model_params());
  const std::string before = fingerprint(*live);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *live); },
                      {"checkpoint " + file + ": ", "it holds 2 parameter values, but optimizer 'adam' has 3 parameters"}));
  EXPECT_EQ(fingerprint(*live), before);
}

TEST_F(CheckpointCorrupt, StateShapeMismatchInTheLastParameterLeavesEverythingUnchanged) {
  // Everything before the fault differs from the live optimizer (other lr, other values), so a
  // load that applied part of the file would show.
  OptimizerPtr saved = trained_adam(model_params(), 0.5, 0.7F);
  optreg::Checkpoint c;
  c.optimizer = saved->state_dict();
  for (const Parameter& p : saved->parameters()) c.parameters.push_back({p.name(), p.value().clone()});
  optreg::ParamState& last = c.optimizer.state.at(2);
  optreg::ParamState reshaped;
  for (const auto& [name, t] : last.tensors()) reshaped.add_tensor(name, name == "exp_avg_sq" ? Tensor({2}) : t);
  for (const auto& [name, v] : last.scalars()) reshaped.add_scalar(name, v);
  last = reshaped;
  const std::string file = path("state-shape.ckpt");
  optreg::save_checkpoint(file, c);
  OptimizerPtr live = trained_adam(model_params());
  const std::string before = fingerprint(*live);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *live); },
                      {"checkpoint " + file + ": ", "state tensor 'exp_avg_sq' of parameter id 2 ('gain'",
                       "has shape [2], expected []"}));
  EXPECT_EQ(fingerprint(*live), before);
}

TEST_F(CheckpointCorrupt, ParameterValuesOfAnotherDTypeAreRefusedBeforeAnythingChanges) {
  // The state dict fits; one parameter's value in the file is bfloat16 while the optimizer's is
  // float32. Loading it would round nothing and change the state before failing on the values.
  OptimizerPtr saved = trained_adam(model_params(), 0.5, 0.7F);
  optreg::Checkpoint c;
  c.optimizer = saved->state_dict();
  for (const Parameter& p : saved->parameters()) c.parameters.push_back({p.name(), p.value().clone()});
  c.parameters[1].value = c.parameters[1].value.to(optreg::DType::BFloat16);
  const std::string file = path("value-dtype.ckpt");
  optreg::save_checkpoint(file, c);
  OptimizerPtr live = trained_adam(model_params());
  const std::string before = fingerprint(*live);
  tried();
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *live); },
                      {"checkpoint " + file + ": ", "parameter id 1 (", "is bfloat16 in the file, but float32 in the optimizer"}));
  EXPECT_EQ(fingerprint(*live), before);
}

TEST_F(CheckpointCorrupt, DamagedOrMissingFileLeavesTheOptimizerUnchanged) {
  OptimizerPtr saved = trained_adam(model_params(), 0.5, 0.7F);
  const std::string file = path("damaged.ckpt");
  optreg::save_optimizer(file, *saved);
  Bytes b = read_file(file);
  const std::size_t first_element = find(b, le64(2) + le64(3) + le64(5)) + 28;  // a tensor element
  b[first_element] = static_cast<char>(b[first_element] ^ 0x01);
  write_file(file, b);
  OptimizerPtr live = trained_adam(model_params());
  const std::string before = fingerprint(*live);
  tried(2);
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(file, *live); }, {"checkpoint " + file + ": ", "checksum does not match"}));
  EXPECT_EQ(fingerprint(*live), before);
  const std::string missing = path("missing.ckpt");
  EXPECT_TRUE(refused([&] { optreg::load_optimizer(missing, *live); },
                      {"checkpoint " + missing + ": ", "cannot open it: No such file or directory"}));
  EXPECT_EQ(fingerprint(*live), before);
}

// ------------------------------------------------------------------ not a checkpoint at all

TEST_F(CheckpointCorrupt, DirectoryIsRefused) {
  const std::string dir = path("a-folder.ckpt");
  fs::create_directories(dir);
  tried();
  EXPECT_TRUE(refused([&] { optreg::read_checkpoint(dir); }, {"checkpoint " + dir + ": ", "it is a folder, not a regular file"}));
}

TEST_F(CheckpointCorrupt, AFifoIsRefusedWithoutWaitingForAWriter) {
  const std::string fifo = path("fifo.ckpt");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  tried(2);
  // In a child, so that a reader that blocks is killed rather than hanging the suite.
  const optreg_test::CommandRun read = optreg_test::run_in_child([&] { optreg::read_checkpoint(fifo); });
  EXPECT_EQ(read.status, 1) << "0: read, -1: killed (blocked?)";
  EXPECT_EQ(read.out, "checkpoint " + fifo + ": it is a FIFO (named pipe), not a regular file");
  OptimizerPtr live = trained_adam(model_params());
  const optreg_test::CommandRun load = optreg_test::run_in_child([&] { optreg::load_optimizer(fifo, *live); });
  EXPECT_EQ(load.status, 1) << "0: loaded, -1: killed (blocked?)";
  EXPECT_EQ(load.out, read.out);
}

TEST_F(CheckpointCorrupt, ADeviceIsRefusedWithoutReadingIt) {
  tried();
  EXPECT_TRUE(refused([&] { optreg::read_checkpoint("/dev/zero"); },
                      {"checkpoint /dev/zero: ", "it is a character device, not a regular file"}));
}

TEST_F(CheckpointCorrupt, MissingFileIsRefused) {
  const std::string missing = path("no-such.ckpt");
  tried();
  EXPECT_TRUE(refused([&] { optreg::read_checkpoint(missing); },
                      {"checkpoint " + missing + ": ", "cannot open it: No such file or directory"}));
}

TEST_F(CheckpointCorrupt, EmptyFileIsRefused) {
  const std::string empty = path("empty.ckpt");
  write_file(empty, "");
  tried(2);
  EXPECT_TRUE(refused([&] { optreg::read_checkpoint(empty); },
                      {"checkpoint " + empty + ": ", "the file is 0 bytes, shorter than the 32-byte header"}));
  EXPECT_TRUE(refused([&] { optreg::parse_checkpoint(nullptr, 0, "empty"); },
                      {"checkpoint empty: ", "the file is 0 bytes, shorter than the 32-byte header"}));
}

// ------------------------------------------------------------------ memory bound

namespace {

/// One input the capped child parses: it must be refused unless `may_parse`.
struct Hostile {
  std::string label;
  Bytes bytes;
  bool may_parse = false;
};

std::uint64_t address_space_in_use() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

/// Parses every input in a child process whose address space is capped at what it already uses
/// plus `headroom`. The child exits with 0 when every input was handled: refused with a
/// CheckpointError that is not an out-of-memory one, or parsed where allowed. Returns what went
/// wrong, or "" when the child exited with 0.
std::string parse_under_address_cap(const std::vector<Hostile>& inputs, std::uint64_t headroom, const std::string& file) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork failed: ") + std::strerror(errno);
  if (pid == 0) {
    const std::uint64_t cap = address_space_in_use() + headroom;
    const rlimit limit{cap, cap};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(10);
    // The cap holds: a quarter of a GiB cannot be had.
    void* volatile probe = std::malloc(std::size_t{256} << 20);
    if (probe != nullptr) ::_exit(11);
    int failures = 0;
    for (const Hostile& h : inputs) {
      for (int via_file = 0; via_file < 2; ++via_file) {
        try {
          if (via_file != 0) {
            write_file(file, h.bytes);
            optreg::read_checkpoint(file);
          } else {
            optreg::parse_checkpoint(h.bytes.data(), h.bytes.size(), "capped.ckpt");
          }
          if (!h.may_parse) {
            std::fprintf(stderr, "%s: accepted\n", h.label.c_str());
            ++failures;
          }
        } catch (const optreg::CheckpointError& e) {
          if (std::strstr(e.what(), "out of memory") != nullptr) {
            std::fprintf(stderr, "%s: ran out of memory: %s\n", h.label.c_str(), e.what());
            ++failures;
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s: threw %s: %s\n", h.label.c_str(), typeid(e).name(), e.what());
          ++failures;
        } catch (...) {
          std::fprintf(stderr, "%s: threw a non-std exception\n", h.label.c_str());
          ++failures;
        }
      }
    }
    std::fflush(nullptr);
    ::_exit(failures == 0 ? 0 : 1);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return std::string("waitpid failed: ") + std::strerror(errno);
  }
  if (WIFSIGNALED(status)) return "the child died of signal " + std::to_string(WTERMSIG(status));
  if (!WIFEXITED(status)) return "the child did not exit";
  switch (WEXITSTATUS(status)) {
    case 0: return "";
    case 10: return "the child could not set RLIMIT_AS";
    case 11: return "the child could allocate 256 MiB despite the cap, so the cap proves nothing";
    default: return "the child exited with " + std::to_string(WEXITSTATUS(status)) + " (see its stderr)";
  }
}

constexpr std::uint64_t kHeadroom = std::uint64_t{64} << 20;

}  // namespace

TEST_F(CheckpointCorrupt, ForgedCountsStayWithinAFewMiBOfAddressSpace) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  const Bytes valid = valid_checkpoint();
  std::vector<Hostile> inputs;
  std::vector<std::pair<std::string, std::size_t>> sites;
  for (const CountSite& s : count_sites(valid)) sites.emplace_back(s.label, s.offset);
  sites.emplace_back("archive signature length", kHeader);
  // Every value from 2^30 to 2^63, and all ones: large enough to need far more than the cap,
  // small enough (most of them) that an allocator would try.
  std::vector<std::uint64_t> values = {~std::uint64_t{0}};
  for (int bit = 30; bit < 64; ++bit) values.push_back(std::uint64_t{1} << bit);
  for (const auto& [label, offset] : sites) {
    for (const std::uint64_t v : values) {
      Bytes b = valid;
      put_le(b, offset, v, 8);
      reseal(b);
      inputs.push_back({label + " = " + hex(v), std::move(b), false});
    }
  }
  tried(2 * inputs.size());
  EXPECT_EQ(parse_under_address_cap(inputs, kHeadroom, path("capped.ckpt")), "");
  std::cout << "[ corrupt  ] " << 2 * inputs.size() << " forged counts parsed under an address-space cap of +"
            << (kHeadroom >> 20) << " MiB" << std::endl;
}

TEST_F(CheckpointCorrupt, FlipsAndTruncationsStayWithinAFewMiBOfAddressSpace) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  const Bytes valid = valid_checkpoint();
  std::vector<Hostile> inputs;
  for (const unsigned mask : {0xFFU, 0x01U}) {
    for (std::size_t at = kHeader; at < valid.size(); ++at) {
      Bytes b = valid;
      b[at] = static_cast<char>(static_cast<unsigned char>(b[at]) ^ mask);
      reseal(b);
      inputs.push_back({"byte " + std::to_string(at) + " ^ " + hex(mask), std::move(b), true});
    }
  }
  for (std::size_t n = kHeader; n < valid.size(); ++n) {
    Bytes b = valid.substr(0, n);
    reseal_length(b);
    inputs.push_back({"archive cut to " + std::to_string(n - kHeader), std::move(b), false});
  }
  tried(2 * inputs.size());
  EXPECT_EQ(parse_under_address_cap(inputs, kHeadroom, path("capped.ckpt")), "");
}
