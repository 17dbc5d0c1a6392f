// The built-in problems, their data files, run configs, the data order and in-process resume.
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/train/random.hpp>
#include <optreg/train/run.hpp>

#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

namespace {

using namespace optreg::train;
using optreg_test::TempDir;

// ---------------------------------------------------------------------------------------------
// Gradients against central finite differences.

/// The loss of `problem` on `batch` with parameter `p` element `i` moved by `h` (the step
/// actually taken in float is returned through `step`).
double loss_moved(Problem& problem, const std::vector<std::uint32_t>& batch, std::size_t p, std::size_t i, float h,
                  double* step) {
  float& x = const_cast<optreg::Parameter&>(problem.params()[p]).value()[i];
  const float old = x;
  x = old + h;
  *step = static_cast<double>(x) - static_cast<double>(old);
  const double loss = problem.loss_and_grad(batch);
  x = old;
  return loss;
}

struct GradientCheck {
  double max_abs_error = 0;
  double error_norm = 0;    // || fd - analytic ||
  double gradient_norm = 0;  // || analytic ||
  std::size_t elements = 0;
};

GradientCheck check_gradient(Problem& problem, const std::vector<std::uint32_t>& batch, float h) {
  problem.loss_and_grad(batch);
  std::vector<std::vector<float>> analytic;
  for (const auto& p : problem.params()) analytic.push_back(p.grad().to_vector());
  GradientCheck c;
  for (std::size_t p = 0; p < problem.params().size(); ++p) {
    for (std::size_t i = 0; i < analytic[p].size(); ++i) {
      double up = 0;
      double down = 0;
      const double fp = loss_moved(problem, batch, p, i, h, &up);
      const double fm = loss_moved(problem, batch, p, i, -h, &down);
      const double fd = (fp - fm) / (up - down);
      const double err = std::abs(fd - analytic[p][i]);
      c.max_abs_error = std::max(c.max_abs_error, err);
      c.error_norm += err * err;
      c.gradient_norm += static_cast<double>(analytic[p][i]) * analytic[p][i];
      ++c.elements;
    }
  }
  c.error_norm = std::sqrt(c.error_norm);
  c.gradient_norm = std::sqrt(c.gradient_norm);
  return c;
}

ProblemPtr make(const std::string& name, const optreg::Options& given, std::uint64_t seed = 7) {
  const ProblemKind* kind = find_problem(name);
  EXPECT_NE(kind, nullptr) << name;
  static DataCache cache;
  return kind->create(kind->schema.resolve(kind->schema.defaults(), given, name), seed, cache);
}

/// A small random classification dataset held in memory.
std::shared_ptr<const ImageData> synthetic_data(std::size_t count, std::size_t features, std::size_t classes) {
  auto d = std::make_shared<ImageData>();
  Random rng(3, 0);
  for (Dataset* s : {&d->train, &d->test}) {
    s->count = count;
    s->features = features;
    s->classes = classes;
    for (std::size_t i = 0; i < count * features; ++i) s->x.push_back(static_cast<float>(rng.uniform()));
    for (std::size_t i = 0; i < count; ++i) s->y.push_back(static_cast<std::uint8_t>(rng.below(classes)));
  }
  return d;
}

std::vector<std::uint32_t> first(std::uint32_t n) {
  std::vector<std::uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0U);
  return v;
}

TEST(ProblemGradients, QuadraticMatchesFiniteDifferences) {
  auto q = make("quadratic", {{"dim", 12}, {"condition", 100.0}, {"train_size", 50}});
  const GradientCheck c = check_gradient(*q, {3, 17, 42, 8}, 1e-2F);
  EXPECT_EQ(c.elements, 12U);
  EXPECT_GT(c.gradient_norm, 0.1);
  // A quadratic has no third derivative: central differences are exact up to rounding.
  EXPECT_LT(c.max_abs_error, 1e-5 * c.gradient_norm + 1e-6);
}

TEST(ProblemGradients, RosenbrockMatchesFiniteDifferencesAwayFromTheStart) {
  auto r = make("rosenbrock", {{"dim", 6}, {"start", "random"}});
  const GradientCheck c = check_gradient(*r, {}, 1e-3F);
  EXPECT_EQ(c.elements, 6U);
  EXPECT_GT(c.gradient_norm, 1.0);
  EXPECT_LT(c.max_abs_error, 1e-3 * c.gradient_norm);
}

TEST(ProblemGradients, LogisticRegressionMatchesFiniteDifferencesElementwise) {
  auto p = make_classifier("logreg", synthetic_data(40, 9, 4), {}, 5);
  const GradientCheck c = check_gradient(*p, {0, 5, 9, 11, 20, 33, 39}, 1e-2F);
  EXPECT_EQ(c.elements, 9U * 4 + 4);
  EXPECT_GT(c.gradient_norm, 0.05);
  EXPECT_LT(c.max_abs_error, 2e-4);
}

TEST(ProblemGradients, MlpMatchesFiniteDifferences) {
  auto p = make_classifier("mlp", synthetic_data(40, 7, 3), {6, 5}, 11);
  ASSERT_EQ(p->param_names(), (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                                         "fc3.weight", "fc3.bias"}));
  const GradientCheck c = check_gradient(*p, first(40), 1e-3F);
  EXPECT_EQ(c.elements, 7U * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3);
  EXPECT_GT(c.gradient_norm, 0.01);
  // float32 forward passes: differences carry about 1e-7 / 1e-3 of rounding.
  EXPECT_LT(c.error_norm, 1e-2 * c.gradient_norm) << "max abs error " << c.max_abs_error;
}

TEST(ProblemGradients, AreTheSameBitsForTheSameBatch) {
  auto p = make_classifier("mlp", synthetic_data(30, 5, 3), {4}, 2);
  const double a = p->loss_and_grad({1, 2, 3});
  const auto g = p->params()[0].grad().to_vector();
  p->loss_and_grad({4, 5});
  EXPECT_EQ(p->loss_and_grad({1, 2, 3}), a);
  EXPECT_EQ(p->params()[0].grad().to_vector(), g);
}

TEST(Problems, InitialisationIsAFunctionOfTheSeed) {
  auto a = make_classifier("mlp", synthetic_data(10, 5, 3), {4}, 2);
  auto b = make_classifier("mlp", synthetic_data(10, 5, 3), {4}, 2);
  auto c = make_classifier("mlp", synthetic_data(10, 5, 3), {4}, 3);
  EXPECT_EQ(a->params()[0].value().to_vector(), b->params()[0].value().to_vector());
  EXPECT_NE(a->params()[0].value().to_vector(), c->params()[0].value().to_vector());
  // torch.nn.Linear's default bound, 1/sqrt(fan_in).
  for (float w : a->params()[0].value().to_vector()) EXPECT_LE(std::abs(w), 1 / std::sqrt(5.0F));
}

TEST(Problems, RosenbrockStartsAtTheClassicPointAndIsZeroAtOnes) {
  auto r = make("rosenbrock", {});
  EXPECT_EQ(r->params()[0].value().to_vector(), (std::vector<float>{-1.2F, 1.0F}));
  EXPECT_NEAR(r->evaluate_train().loss, 24.2, 1e-4);
  const_cast<optreg::Parameter&>(r->params()[0]).value().fill(1.0F);
  EXPECT_EQ(r->evaluate_train().loss, 0.0);
}

/// The message of what `f` throws in a child process that may map `extra_bytes` more than this one.
std::string out_of_memory_message(const std::function<void()>& f, std::size_t extra_bytes = std::size_t{768} << 20) {
  const optreg_test::CommandRun r = optreg_test::run_in_child(f, extra_bytes);
  EXPECT_EQ(r.status, 1) << "0: it fitted, -1: killed";
  return r.out;
}

TEST(Problems, OutOfMemoryNamesTheSettingAndTheBytes) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  make("quadratic", {});  // OpenBLAS is loaded here, outside the children's budgets
  EXPECT_EQ(out_of_memory_message([] { make_classifier("mlp", synthetic_data(10, 4, 2), {30000, 30000}, 1); }),
            "problem 'mlp': out of memory: hidden: [30000, 30000] (layers [4, 30000, 30000, 2], 900240002 parameters) "
            "with their gradients asks for 7201920016 bytes (6.7 GiB)");
  EXPECT_EQ(out_of_memory_message([] {
              make_classifier("mlp", synthetic_data(60000, 4, 2), {4000}, 1)->loss_and_grad(first(60000));
            }),
            "problem 'mlp': out of memory: batch_size = 60000 (examples at once through layers [4, 4000, 2], "
            "activations with their gradients) asks for 1923180000 bytes (1.8 GiB)");
  EXPECT_EQ(out_of_memory_message([] { make("quadratic", {{"dim", std::int64_t{100}}, {"train_size", std::int64_t{999000}}}); },
                                  std::size_t{512} << 20),
            "problem 'quadratic': out of memory: dim = 100 with train_size = 999000 and test_size = 1000 asks for "
            "800240800 bytes (763.2 MiB)");
}

TEST(Problems, HiddenSizesMustBeWholeNumbers) {
  EXPECT_THROW(make("mlp", {{"hidden", std::vector<double>{12.5}}}), optreg::OptionError);
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST files.

TEST(FashionMnist, TheDebianFilesReadAsSixtyAndTenThousandImages) {
  DataCache cache;
  const auto d = cache.images(kFashionMnistDir);
  EXPECT_EQ(d->train.count, 60000U);
  EXPECT_EQ(d->test.count, 10000U);
  EXPECT_EQ(d->train.features, 784U);
  EXPECT_EQ(cache.images(kFashionMnistDir), d) << "loaded once";
  std::vector<std::size_t> per_class(10, 0);
  for (auto y : d->train.y) ++per_class[y];
  for (auto n : per_class) EXPECT_EQ(n, 6000U);  // Fashion-MNIST is balanced
  EXPECT_EQ(*std::max_element(d->train.x.begin(), d->train.x.end()), 1.0F);
}

/// Writes `bytes` to PATH gzip'd.
void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  }
  gzclose(f);
}

std::string be32(std::uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string idx(std::uint8_t type, std::vector<std::uint32_t> dims, std::size_t data_bytes, char fill = 1) {
  std::string s{0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto d : dims) s += be32(d);
  return s + std::string(data_bytes, fill);
}

struct BadIdx {
  const char* name;
  std::string content;  // gzip'd unless raw
  bool raw;
  const char* message;
};

TEST(FashionMnist, MalformedFilesGiveAnErrorNamingTheFile) {
  const std::vector<BadIdx> cases = {
      {"empty", "", false, "truncated: the IDX magic number needs 4 bytes, the file holds 0"},
      {"not_idx", "PK\x03\x04zzzz", false, "not an IDX file (the first two bytes are not zero)"},
      {"float_type", idx(0x0D, {2, 2, 2}, 8), false, "IDX element type 0x0d is not 0x08 (unsigned byte)"},
      {"wrong_rank", idx(0x08, {4, 2}, 8), false, "the IDX array has 2 dimensions, expected 3"},
      {"short_header", std::string{0, 0, 8, 3} + be32(2), false, "truncated: the size of dimension 1 needs 4 bytes"},
      {"short_data", idx(0x08, {3, 2, 2}, 11), false, "truncated: the data the header declares needs 12 bytes, the file holds 11"},
      {"long_data", idx(0x08, {3, 2, 2}, 13), false, "holds more data than the header declares (12 bytes)"},
      {"huge", idx(0x08, {65536, 65536, 2}, 0), false, "the IDX header declares more than 268435456 elements (2^28)"},
      {"beyond_the_gzip_file", idx(0x08, {4096, 256, 256}, 0), false,
       "truncated: the data the header declares needs 268435456 bytes, more than a gzip file of"},
      {"short_plain_data", idx(0x08, {3, 2, 2}, 11), true,
       "truncated: the data the header declares needs 12 bytes, the file holds 11"},
      {"damaged_gzip", std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbagegarbage", 24), true, "damaged gzip data"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    const std::string path = dir / (std::string(c.name) + ".gz");
    if (c.raw) {
      optreg_test::write_file(path, c.content);
    } else {
      write_gz(path, c.content);
    }
    try {
      read_idx(path, 3);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0U) << c.name << ": " << e.what();
      EXPECT_TRUE(optreg_test::contains(e.what(), c.message)) << c.name << ": " << e.what();
    }
  }
}

TEST(FashionMnist, AFifoIsRefusedWithoutWaitingForAWriter) {
  TempDir dir;
  const std::string fifo = dir / "train-images-idx3-ubyte.gz";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const optreg_test::CommandRun r = optreg_test::run_in_child([&] { read_idx(fifo, 3); });
  EXPECT_EQ(r.status, 1) << "0: read, -1: killed (blocked?)";
  EXPECT_EQ(r.out, fifo + ": it is a FIFO (named pipe), not a regular file");
}

/// Random bytes: data that gzip cannot shrink.
std::string incompressible(std::size_t n) {
  Random rng(5, 0);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng.below(256));
  return s;
}

TEST(FashionMnist, AHeaderDeclaringMoreThanTheFileCanHoldIsRefusedBeforeAllocating) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  TempDir dir;
  const std::string path = dir / "tiny.gz";
  write_gz(path, idx(0x08, {2048, 256, 256}, 0));  // 128 MiB declared by about 40 bytes
  const auto size = std::filesystem::file_size(path);
  const optreg_test::CommandRun r = optreg_test::run_in_child([&] { read_idx(path, 3); }, 64 << 20);
  EXPECT_EQ(r.out, path + ": truncated: the data the header declares needs 134217728 bytes, more than a gzip file of " +
                       std::to_string(size) + " bytes can hold");
}

TEST(FashionMnist, GzipDataIsDecompressedAsItArrivesNotAsTheHeaderClaims) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  TempDir dir;
  const std::string path = dir / "short.gz";
  // 2^28 bytes declared (the limit), 512 KiB held: a file that deflate could expand that far.
  write_gz(path, idx(0x08, {4096, 256, 256}, 0) + incompressible(512 << 10));
  ASSERT_GE(std::filesystem::file_size(path) * 1032, 268435456U);
  const optreg_test::CommandRun r = optreg_test::run_in_child([&] { read_idx(path, 3); }, 64 << 20);
  EXPECT_EQ(r.out, path + ": truncated: the data the header declares needs 268435456 bytes, the file holds 524288");
}

TEST(FashionMnist, MissingFilesNameTheDebianPackage) {
  TempDir dir;
  try {
    load_mnist_format(dir.path());
    ADD_FAILURE() << "no error";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), dir / "train-images-idx3-ubyte.gz" +
                                          ": no such file (Fashion-MNIST comes with the Debian package dataset-fashion-mnist)");
  }
}

TEST(FashionMnist, LabelsOutOfRangeAndMismatchedCountsAreRefused) {
  TempDir dir;
  write_gz(dir / "train-images-idx3-ubyte.gz", idx(0x08, {3, 2, 2}, 12));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx(0x08, {3}, 3, 10));
  try {
    load_mnist_format(dir.path());
    ADD_FAILURE() << "no error";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), dir / "train-labels-idx1-ubyte.gz" + ": label 0 is 10, outside [0, 10)");
  }
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx(0x08, {2}, 2, 1));
  try {
    load_mnist_format(dir.path());
    ADD_FAILURE() << "no error";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), dir / "train-labels-idx1-ubyte.gz" + ": holds 2 labels, but " +
                                          (dir / "train-images-idx3-ubyte.gz") + " holds 3 images");
  }
}

// ---------------------------------------------------------------------------------------------
// Data order.

TEST(DataOrder, EachEpochVisitsEveryExampleOnceInASeededOrder) {
  auto q = make("quadratic", {{"dim", 2}, {"train_size", 100}});
  const std::int64_t spe = steps_per_epoch(*q, 16);
  EXPECT_EQ(spe, 6) << "the last incomplete batch is dropped";
  std::set<std::uint32_t> seen;
  for (std::int64_t s = 0; s < spe; ++s) {
    for (auto i : batch_of(*q, 9, 16, s)) EXPECT_TRUE(seen.insert(i).second) << "example " << i << " twice";
  }
  EXPECT_EQ(seen.size(), 96U);
  EXPECT_EQ(batch_of(*q, 9, 16, 7), batch_of(*q, 9, 16, 7));
  EXPECT_NE(batch_of(*q, 9, 16, 1), batch_of(*q, 9, 16, 1 + spe)) << "a new order each epoch";
  EXPECT_NE(batch_of(*q, 9, 16, 1), batch_of(*q, 10, 16, 1)) << "a new order per seed";
}

// ---------------------------------------------------------------------------------------------
// Run configs.

struct BadConfig {
  const char* text;
  const char* message;
};

/// Each config is refused with its exact message.
void expect_refused(const std::vector<BadConfig>& cases) {
  for (const auto& c : cases) {
    try {
      parse_run_config(c.text, "c.yaml");
      ADD_FAILURE() << "no error for:\n" << c.text;
    } catch (const optreg::ConfigError& e) {
      EXPECT_EQ(std::string(e.what()), c.message) << c.text;
    }
  }
}

TEST(RunConfig, BadConfigsArePlacedAtTheirLineAndColumn) {
  const std::string ok_train = "train: {steps: 10}\n";
  const std::vector<BadConfig> cases = {
      {"train: {steps: 10}\noptimizer: {name: sgd}\n", "c.yaml:1:1: the config has no 'problem' section"},
      {"problem: {name: mlp}\noptimizer: {name: sgd}\n", "c.yaml:1:1: the config has no 'train' section"},
      {"problem: {name: mpl}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:17: unknown problem 'mpl' (did you mean 'mlp'?); known problems: quadratic, rosenbrock, logreg, mlp"},
      {"problem: {dim: 3}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:1: section 'problem' needs a 'name' (such as 'name: mlp')"},
      {"problem: {name: quadratic, dim: 0}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:33: problem 'quadratic': option 'dim' = 0 is out of range: the value must be in [1, 4096] (number of "
       "dimensions)"},
      {"problem: {name: quadratic, dims: 3}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:28: problem 'quadratic': unknown option 'dims' (did you mean 'dim'?); known options: dim, condition, noise, "
       "train_size, test_size"},
      {"problem: {name: quadratic, dim: 4096, train_size: 10000000}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:10: problem 'quadratic': options 'dim' x ('train_size' + 'test_size') = 40964096000.0 sample values "
       "exceed the limit of 1e8 (800 MB)"},
      {"problem: {name: mlp, hidden: [64, 12.5]}\ntrain: {steps: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:1:10: problem 'mlp': option 'hidden': element 1 is 12.5; layer sizes are whole numbers in [1, 1000000]"},
      {"problem: {name: quadratic}\ntrain: {steps: 10, epochs: 2}\noptimizer: {name: sgd}\n",
       "c.yaml:2:8: section 'train' gives both 'steps' and 'epochs'; give one"},
      {"problem: {name: quadratic}\ntrain: {batch_size: 10}\noptimizer: {name: sgd}\n",
       "c.yaml:2:8: section 'train' needs 'steps' or 'epochs'"},
      {"problem: {name: quadratic}\ntrain: {steps: 0}\noptimizer: {name: sgd}\n", "c.yaml:2:16: 'steps' must be above 0"},
      {"problem: {name: quadratic}\ntrain: {steps: 5, batch_size: many}\noptimizer: {name: sgd}\n",
       "c.yaml:2:31: section 'train': option 'batch_size' = \"many\" has the wrong type: expected an int, got a string"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\noptimiser: {name: sgd}\n",
       "c.yaml:3:1: unknown section 'optimiser' (did you mean 'optimizer'?); known sections: optimizer, param_groups, "
       "plugins, scheduler, clip, average, accumulate, problem, train, runs"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns: []\n", "c.yaml:3:7: section 'runs' is empty; it needs at least one run"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns: {}\n", "c.yaml:3:7: section 'runs' must be a list, not an empty map"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - {label: a, optimizer: {name: sgd}}\n"
       "  - {label: a, optimizer: {name: adam}}\n",
       "c.yaml:5:13: runs[1] has the label 'a' of an earlier run; give each run its own 'label'"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - {label: a, optimizer: {name: sgd}}\noptimizer: {name: sgd}\n",
       "c.yaml:5:12: the config has both 'runs' and an 'optimizer' section; give each run its own 'optimizer'"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - {label: a, optimizer: {name: sgd}, lr: 1}\n",
       "c.yaml:4:40: unknown section 'lr'; known sections: optimizer, param_groups, plugins, scheduler, clip, average, accumulate, label, "
       "param_dtype"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - {label: a}\n", "c.yaml:4:5: the config has no 'optimizer' section"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns: [{optimizer: {name: sgd}}]\nextra: 1\n",
       "c.yaml:4:1: unknown section 'extra' in a config with 'runs'; known sections: problem, train, runs (optimizer "
       "sections go inside each run)"},
  };
  expect_refused(cases);
}

TEST(RunConfig, SecondDocumentsTagsAndNumbersOutOfRangeArePlacedInEverySection) {
  const std::vector<BadConfig> cases = {
      {"problem: {name: quadratic}\ntrain: {steps: 1e999}\noptimizer: {name: sgd}\n",
       "c.yaml:2:16: option 'steps' = 1e999 is too large for a float (at most 1.8e308 in magnitude)"},
      {"problem: {name: quadratic}\ntrain: {steps: 5, seed: 99999999999999999999}\noptimizer: {name: sgd}\n",
       "c.yaml:2:25: option 'seed' = 99999999999999999999 is too large for an integer (at most 9223372036854775807)"},
      {"problem: {name: quadratic, noise: 1e-400}\ntrain: {steps: 5}\noptimizer: {name: sgd}\n",
       "c.yaml:1:35: option 'noise' = 1e-400 is too small for a float: it is not 0, but would be 0 (the smallest is "
       "4.9e-324 in magnitude)"},
      {"problem: {name: quadratic}\ntrain: {steps: !!str 5}\noptimizer: {name: sgd}\n",
       "c.yaml:2:16: section 'train': option 'steps' = \"5\" has the wrong type: expected an int, got a string"},
      {"problem: {name: !problem quadratic}\ntrain: {steps: 5}\noptimizer: {name: sgd}\n",
       "c.yaml:1:17: the tag '!problem' is not one a config takes on a scalar; a scalar takes !!str, !!int, !!float, "
       "!!bool or !!null, or no tag"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\nruns:\n  - {label: a, optimizer: {name: sgd, lr: 1e999}}\n",
       "c.yaml:4:43: option 'lr' = 1e999 is too large for a float (at most 1.8e308 in magnitude)"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\noptimizer: {name: sgd}\nscheduler: {name: step, gamma: 1e999}\n",
       "c.yaml:4:32: option 'gamma' = 1e999 is too large for a float (at most 1.8e308 in magnitude)"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\noptimizer: {name: sgd}\nclip: {max_norm: 1e-400}\n",
       "c.yaml:4:18: option 'max_norm' = 1e-400 is too small for a float: it is not 0, but would be 0 (the smallest is "
       "4.9e-324 in magnitude)"},
      {"problem: {name: quadratic}\ntrain: {steps: 5}\noptimizer: {name: sgd}\n---\ntrain: {steps: 50}\n",
       "c.yaml:4:1: a second YAML document starts here; a config is one document (a second one would be ignored): "
       "remove this '---' line and what follows it, or merge it into the first"},
  };
  expect_refused(cases);
}

TEST(RunConfig, ASingleOptimizerConfigIsOneRunLabelledByTheOptimizer) {
  const RunConfig c = parse_run_config(
      "problem: {name: quadratic, dim: 4}\ntrain: {epochs: 2, seed: 3}\noptimizer: {name: adam, lr: 0.01}\n", "c.yaml");
  ASSERT_EQ(c.runs.size(), 1U);
  EXPECT_FALSE(c.is_comparison);
  EXPECT_EQ(c.runs[0].label, "adam");
  EXPECT_EQ(c.problem_options.at("dim").as_int(), 4);
  EXPECT_EQ(c.problem_options.at("condition").as_float(), 1000.0) << "defaults filled in";
  EXPECT_EQ(c.train.seed, 3U);
  EXPECT_EQ(c.train.batch_size, 128);
}

TEST(RunConfig, EveryExampleConfigIsValid) {
  const optreg::Registry& registry = optreg_test::in_tree_registry();
  std::size_t run_configs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(OPTREG_TEST_SOURCE_DIR) + "/../examples/configs")) {
    const std::string path = entry.path().string();
    if (!optreg_test::contains(optreg_test::read_file(path), "\nproblem:")) {
      EXPECT_NO_THROW(optreg::check_config(optreg::load_config(path), registry)) << path;
      continue;
    }
    ++run_configs;
    try {
      const RunConfig c = load_run_config(path);
      for (const auto& run : c.runs) optreg::check_config(run.optimizer, registry);
    } catch (const optreg::Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
  EXPECT_GE(run_configs, 3U);
}

// ---------------------------------------------------------------------------------------------
// Training runs.

const char* kQuadraticRun =
    "problem: {name: quadratic, dim: 20, condition: 100, train_size: 256}\n"
    "train: {seed: 4, steps: 90, batch_size: 32, log_every: 10, checkpoint_every: 25, target_loss: 5.0}\n"
    "optimizer: {name: adam, lr: 0.05}\n";

/// A run's outcome with the metric rows it streamed.
struct Trained : RunOutcome {
  std::vector<MetricRow> rows;
};

Trained train(const RunConfig& c, RunOptions o) {
  optreg::Registry registry;
  registry.load_directory(OPTREG_TEST_PLUGIN_DIR);
  DataCache data;
  Trained t;
  o.on_row = [&](const MetricRow& row) { t.rows.push_back(row); };
  static_cast<RunOutcome&>(t) = run_training(c, c.runs.front(), registry, data, o);
  return t;
}

optreg::Checkpoint without_time(optreg::Checkpoint c) {
  c.metadata.erase("train.seconds");
  return c;
}

/// Trains `config` up to `stop`, saving `checkpoint`, then resumes from it to the end (saving
/// the final state there).
Trained stop_and_resume(const RunConfig& config, std::int64_t stop, const std::string& checkpoint) {
  RunOptions first;
  first.checkpoint_path = checkpoint;
  first.stop_after = stop;
  EXPECT_EQ(train(config, first).steps_done, stop);
  RunOptions rest;
  rest.checkpoint_path = checkpoint;
  rest.resume_path = checkpoint;
  return train(config, rest);
}

TEST(TrainingRun, ResumingFromAnyCheckpointGivesTheSameBitsAsNeverStopping) {
  const RunConfig config = parse_run_config(kQuadraticRun, "q.yaml");
  TempDir dir;
  RunOptions whole;
  whole.checkpoint_path = dir / "whole.ckpt";
  const Trained a = train(config, whole);
  ASSERT_EQ(a.steps_done, 90);
  for (std::int64_t stop : {25, 37}) {
    const Trained b = stop_and_resume(config, stop, dir / "part.ckpt");
    EXPECT_TRUE(optreg_test::same_bits(without_time(optreg::read_checkpoint(whole.checkpoint_path)),
                                       without_time(optreg::read_checkpoint(dir / "part.ckpt"))))
        << "stopped at " << stop;
    ASSERT_FALSE(b.rows.empty());
    // The rows after the stop match (the window sums are in the checkpoint).
    const auto& tail = a.rows[a.rows.size() - b.rows.size()];
    EXPECT_EQ(tail.step, b.rows.front().step);
    EXPECT_EQ(tail.train_loss, b.rows.front().train_loss);
    EXPECT_EQ(a.test.loss, b.test.loss);
    EXPECT_EQ(a.steps_to_target, b.steps_to_target);
  }
}

TEST(TrainingRun, TheStateBytesCountTheWeightAveragesCopy) {
  TempDir dir;
  const Trained plain = train(parse_run_config(kQuadraticRun, "q.yaml"), RunOptions{});
  const Trained averaged =
      train(parse_run_config(std::string(kQuadraticRun) + "average: {kind: ema, decay: 0.9}\n", "q.yaml"), RunOptions{});
  // Adam's two float32 moments of 20 elements, then the EMA's float32 copy of the 20 weights.
  EXPECT_EQ(plain.state_bytes, 2U * 20 * 4);
  EXPECT_EQ(averaged.state_bytes, 3U * 20 * 4);
}

const char* kBFloat16Run =
    "problem: {name: quadratic, dim: 20, condition: 100, train_size: 256}\n"
    "train: {seed: 4, steps: 60, batch_size: 32, log_every: 10, checkpoint_every: 25, param_dtype: bfloat16}\n"
    "optimizer: {name: adam, lr: 0.05, master_weights: true, state_dtype: int8}\n";

TEST(TrainingRun, BFloat16ParametersAreSteppedInTheirDtypeAndResumeBitExactly) {
  const RunConfig config = parse_run_config(kBFloat16Run, "b.yaml");
  ASSERT_EQ(param_dtype_of(config, config.runs.front()), optreg::DType::BFloat16);
  TempDir dir;
  RunOptions whole;
  whole.checkpoint_path = dir / "whole.ckpt";
  const Trained a = train(config, whole);
  ASSERT_EQ(a.steps_done, 60);
  EXPECT_EQ(a.param_dtype, optreg::DType::BFloat16);
  EXPECT_LT(a.train.loss, a.rows.front().train_loss) << "the run learns";
  const optreg::Checkpoint c = optreg::read_checkpoint(whole.checkpoint_path);
  ASSERT_FALSE(c.parameters.empty());
  for (const auto& [name, value] : c.parameters) EXPECT_EQ(value.dtype(), optreg::DType::BFloat16) << name;
  const optreg::ParamState& state = c.optimizer.state.begin()->second;
  for (const auto& [name, t] : state.tensors()) {
    EXPECT_EQ(t.dtype(), name == "master_weight" ? optreg::DType::Float32
                         : name == "exp_avg_sq"  ? optreg::DType::QUInt8
                                                 : optreg::DType::QInt8)
        << name;
  }
  // 20 parameters: two int8 moments of 20 codes (padded to 20) and one scale each, and a float32 master.
  EXPECT_EQ(a.state_bytes, 2 * (20 + 4) + 20 * 4);
  const Trained b = stop_and_resume(config, 25, dir / "part.ckpt");
  EXPECT_TRUE(optreg_test::same_bits(without_time(c), without_time(optreg::read_checkpoint(dir / "part.ckpt"))));
  EXPECT_EQ(a.test.loss, b.test.loss);
}

TEST(TrainingRun, AResumeRefusesACheckpointOfAnotherParamDtype) {
  TempDir dir;
  RunOptions first;
  first.checkpoint_path = dir / "c.ckpt";
  first.stop_after = 25;
  train(parse_run_config(kBFloat16Run, "b.yaml"), first);
  std::string text = kBFloat16Run;
  text.replace(text.find(", param_dtype: bfloat16"), std::strlen(", param_dtype: bfloat16"), "");
  RunOptions rest;
  rest.resume_path = dir / "c.ckpt";
  try {
    train(parse_run_config(text, "f.yaml"), rest);
    FAIL() << "a float32 run resumed a bfloat16 checkpoint";
  } catch (const optreg::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("it was written with param_dtype = \"bfloat16\", but f.yaml does not set it"),
              std::string::npos)
        << e.what();
  }
  // A run of a comparison sets its own, which overrides the train section's.
  const RunConfig runs = parse_run_config(
      "problem: {name: quadratic, dim: 4}\ntrain: {steps: 2, param_dtype: float16}\n"
      "runs:\n  - {label: a, optimizer: {name: sgd}}\n  - {label: b, param_dtype: float32, optimizer: {name: sgd}}\n",
      "r.yaml");
  EXPECT_EQ(param_dtype_of(runs, runs.runs[0]), optreg::DType::Float16);
  EXPECT_EQ(param_dtype_of(runs, runs.runs[1]), optreg::DType::Float32);
  try {
    parse_run_config("problem: {name: quadratic}\ntrain: {steps: 2}\nruns:\n  - {param_dtype: int8, optimizer: {name: sgd}}\n",
                     "r.yaml");
    FAIL() << "param_dtype int8 was taken";
  } catch (const optreg::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "r.yaml:4:19: runs[0]: option 'param_dtype' = \"int8\" is not one of: float32, bfloat16, float16");
  }
}

const char* kScheduledRun =
    "problem: {name: quadratic, dim: 20, condition: 100, train_size: 256}\n"
    "train: {seed: 4, steps: 90, batch_size: 32, log_every: 10, checkpoint_every: 25}\n"
    "optimizer: {name: sgd, lr: 0.5, momentum: 0.9}\n"
    "scheduler:\n"
    "  name: sequential\n"
    "  schedulers: [{name: linear, start_factor: 0.1, total_iters: 20}, {name: cosine, T_max: 70}]\n"
    "  milestones: [20]\n"
    "clip: {max_norm: 2.0}\n";

TEST(TrainingRun, ASchedulerAndClippingResumeBitExactlyToo) {
  const RunConfig config = parse_run_config(kScheduledRun, "s.yaml");
  TempDir dir;
  RunOptions whole;
  whole.checkpoint_path = dir / "whole.ckpt";
  const Trained a = train(config, whole);
  // Warm-up from 0.05 towards 0.5, then cosine down towards 0.
  ASSERT_EQ(a.rows.size(), 9U + 11U - 2U);
  ASSERT_EQ(a.rows[1].step, 10);
  EXPECT_DOUBLE_EQ(*a.rows[1].lr, 0.5 * (0.1 + 0.9 * 10 / 20)) << "half way through the warm-up";
  double top = 0;
  for (const auto& r : a.rows) top = std::max(top, *r.lr);
  EXPECT_EQ(top, 0.5) << "the cosine starts at the base lr at the milestone";
  EXPECT_LT(*a.rows.back().lr, 0.01);
  for (const auto& r : a.rows) EXPECT_TRUE(r.grad_norm.has_value()) << "step " << r.step;
  const optreg::Checkpoint saved = optreg::read_checkpoint(whole.checkpoint_path);
  ASSERT_TRUE(saved.scheduler.has_value());
  EXPECT_EQ(saved.scheduler->scheduler, "sequential");

  // In the warm-up (the cosine not started yet), at the milestone, and in the cosine.
  for (std::int64_t stop : {13, 20, 33}) {
    const Trained b = stop_and_resume(config, stop, dir / "part.ckpt");
    EXPECT_TRUE(optreg_test::same_bits(without_time(optreg::read_checkpoint(whole.checkpoint_path)),
                                       without_time(optreg::read_checkpoint(dir / "part.ckpt"))))
        << "stopped at " << stop;
    EXPECT_EQ(*a.rows.back().lr, *b.rows.back().lr);
  }
}

TEST(TrainingRun, PlateauStepsOnTheTrainingLossAtEachEvaluation) {
  const RunConfig config = parse_run_config(
      "problem: {name: quadratic, dim: 10, condition: 10, train_size: 64}\n"
      "train: {seed: 1, steps: 400, batch_size: 16, log_every: 4, eval_every: 4}\n"
      "optimizer: {name: sgd, lr: 0.5}\n"
      "scheduler: {name: plateau, factor: 0.5, patience: 2}\n",
      "p.yaml");
  const Trained r = train(config, {});
  // The noisy loss stops falling early: the lr is halved several times, never raised.
  EXPECT_LT(*r.rows.back().lr, 0.5 / 4);
  for (std::size_t i = 1; i < r.rows.size(); ++i) EXPECT_LE(*r.rows[i].lr, *r.rows[i - 1].lr);
}

TEST(TrainingRun, NonFiniteGradientNormsAreCountedOrStopTheRun) {
  std::string text =
      "problem: {name: rosenbrock}\ntrain: {steps: 50, log_every: 10, on_divergence: continue}\n"
      "optimizer: {name: sgd, lr: 0.5}\nclip: {max_norm: 1.0e30}\n";
  const Trained r = train(parse_run_config(text, "r.yaml"), {});
  EXPECT_GT(r.nonfinite_grad_norms, 0) << "the iterates blow up to inf, then nan";
  EXPECT_EQ(r.steps_done, 50);
  text.replace(text.find("max_norm: 1.0e30}"), 17, "max_norm: 1.0e30, error_if_nonfinite: true}");
  EXPECT_THROW(train(parse_run_config(text, "r.yaml"), {}), optreg::NonFiniteError);
}

TEST(TrainingRun, ABatchLargerThanTheTrainingSetIsPlacedAtItsKey) {
  const RunConfig config = parse_run_config(
      "problem: {name: quadratic, train_size: 20}\ntrain: {steps: 5, batch_size: 32}\noptimizer: {name: sgd}\n", "b.yaml");
  EXPECT_EQ(optreg_test::message_of<optreg::ConfigError>([&] { train(config, {}); }),
            "b.yaml:2:31: batch_size 32 is larger than the 20 training examples of problem 'quadratic'");
}

TEST(TrainingRun, OutOfMemoryForTheOptimizerStateNamesTheOptimizer) {
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "RLIMIT_AS cannot cap a process under AddressSanitizer";
  const RunConfig config = parse_run_config(
      "problem: {name: rosenbrock, dim: 10000000}\ntrain: {steps: 1}\noptimizer: {name: adam, amsgrad: true}\n", "r.yaml");
  optreg::Registry registry;
  optreg::load_config_plugins(config.runs.front().optimizer, registry);  // as the run does, outside the budget
  // The problem takes 160 MB; Adam's three state tensors 120 MB more.
  EXPECT_EQ(out_of_memory_message(
                [&] {
                  DataCache data;
                  run_training(config, config.runs.front(), registry, data, {});
                },
                std::size_t{220} << 20),
            "run 'adam': out of memory: the state of optimizer 'adam' (3 tensors for each of the 10000000 parameters "
            "of problem 'rosenbrock') asks for 120000000 bytes (114.4 MiB)");
}

TEST(TrainingRun, AOneCycleShorterThanTheRunIsRefusedBeforeTraining) {
  const RunConfig config = parse_run_config(
      "problem: {name: quadratic}\ntrain: {steps: 50}\noptimizer: {name: sgd, lr: 0.1}\n"
      "scheduler: {name: onecycle, max_lr: 0.5, total_steps: 40}\n",
      "o.yaml");
  EXPECT_EQ(optreg_test::message_of<optreg::ConfigError>([&] { train(config, {}); }),
            "o.yaml:4:19: scheduler 'onecycle' has total_steps = 40, fewer than the run's 50 steps; it cannot step past "
            "its cycle");
}

/// Trains the run config `text` up to `steps`, saving DIR/c.ckpt; returns its path.
std::string checkpoint_at(const char* text, std::int64_t steps, const TempDir& dir) {
  RunOptions first;
  first.checkpoint_path = dir / "c.ckpt";
  first.stop_after = steps;
  train(parse_run_config(text, "c.yaml"), first);
  return first.checkpoint_path;
}

TEST(TrainingRun, AResumeRefusesACheckpointOfAnotherConfig) {
  TempDir dir;
  checkpoint_at(kQuadraticRun, 10, dir);
  std::string other = kQuadraticRun;
  other.replace(other.find("seed: 4"), 7, "seed: 5");
  RunOptions rest;
  rest.resume_path = dir / "c.ckpt";
  try {
    train(parse_run_config(other, "q2.yaml"), rest);
    ADD_FAILURE() << "no error";
  } catch (const optreg::CheckpointError& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint " + (dir / "c.ckpt") + ": it was written with train.seed = 4, but q2.yaml:2:15 gives 5");
  }
}

TEST(TrainingRun, ARosenbrockConfigResumingAQuadraticCheckpointIsRefusedForItsProblem) {
  TempDir dir;
  checkpoint_at(kQuadraticRun, 10, dir);
  RunOptions rest;
  rest.resume_path = dir / "c.ckpt";
  const RunConfig rosenbrock = parse_run_config(
      "problem: {name: rosenbrock}\ntrain: {seed: 4, steps: 90, log_every: 10}\noptimizer: {name: adam, lr: 0.05}\n", "r.yaml");
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { train(rosenbrock, rest); }),
            "checkpoint " + (dir / "c.ckpt") +
                ": it was written with train.problem = \"quadratic\", but r.yaml:1:17 gives \"rosenbrock\"");
}

const char* kSettingsRun =
    "problem: {name: quadratic, dim: 8, train_size: 64}\n"
    "train: {seed: 2, steps: 40, batch_size: 16, log_every: 10}\n"
    "optimizer: {name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.0}\n"
    "param_groups:\n"
    "  - {params: theta, weight_decay: 0.01}\n"
    "scheduler: {name: cosine, T_max: 40}\n"
    "clip: {max_norm: 2.0}\n";

struct ChangedSetting {
  const char* from;
  const char* to;
  const char* message;  // after "checkpoint PATH: "
};

TEST(TrainingRun, AResumeRefusesAChangedOptimizerSettingNamingItsKey) {
  TempDir dir;
  checkpoint_at(kSettingsRun, 15, dir);
  const optreg::Checkpoint saved = optreg::read_checkpoint(dir / "c.ckpt");
  const std::vector<ChangedSetting> cases = {
      {"lr: 0.1", "lr: 0.2", "it was written with optimizer.lr = 0.1, but s.yaml:3:28 gives 0.2"},
      {"momentum: 0.9", "momentum: 0.9, nesterov: true",
       "it was written without optimizer.nesterov, but s.yaml:3:58 gives true"},
      {", momentum: 0.9", "", "it was written with optimizer.momentum = 0.9, but s.yaml does not set it"},
      {"weight_decay: 0.01", "weight_decay: 0.02",
       "it was written with param_groups[0].weight_decay = 0.01, but s.yaml:5:35 gives 0.02"},
      {"params: theta", "params: \"th*\"",
       "it was written with param_groups[0].params = \"theta\", but s.yaml:5:5 gives \"th*\""},
      {"T_max: 40", "T_max: 50", "it was written with scheduler.T_max = 40, but s.yaml:6:34 gives 50"},
      {"scheduler: {name: cosine, T_max: 40}\n", "",
       "it was written with scheduler.T_max = 40, but s.yaml does not set it"},
      {"max_norm: 2.0", "max_norm: 3.0", "it was written with clip.max_norm = 2.0, but s.yaml:7:7 gives 3.0"},
      {"max_norm: 2.0", "value: 2.0", "it was written without clip.value, but s.yaml:7:7 gives 2.0"},
      {"name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.0", "name: adam, lr: 0.1",
       "it was written with optimizer.name = \"sgd\", but s.yaml:3:19 gives \"adam\""},
  };
  for (const auto& c : cases) {
    std::string text = kSettingsRun;
    text.replace(text.find(c.from), std::strlen(c.from), c.to);
    RunOptions rest;
    rest.resume_path = dir / "c.ckpt";
    rest.checkpoint_path = dir / "c.ckpt";
    EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { train(parse_run_config(text, "s.yaml"), rest); }),
              "checkpoint " + (dir / "c.ckpt") + ": " + c.message)
        << text;
  }
  EXPECT_TRUE(optreg_test::same_bits(saved, optreg::read_checkpoint(dir / "c.ckpt"))) << "nothing was written";

  // A checkpoint that does not record them (an older 'optreg train') cannot be checked.
  optreg::Checkpoint older = saved;
  for (auto it = older.metadata.begin(); it != older.metadata.end();) {
    it = it->first.rfind("train.config.", 0) == 0 ? older.metadata.erase(it) : std::next(it);
  }
  optreg::save_checkpoint(dir / "old.ckpt", older);
  RunOptions old;
  old.resume_path = dir / "old.ckpt";
  EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { train(parse_run_config(kSettingsRun, "s.yaml"), old); }),
            "checkpoint " + (dir / "old.ckpt") +
                ": it holds no optimizer settings ('train.config.optimizer.name'); it was written by an older 'optreg "
                "train', and a resume cannot check them against s.yaml");

  // The same settings written otherwise (an integer for a float) resume.
  std::string same = kSettingsRun;
  same.replace(same.find("dampening: 0.0"), 14, "dampening: 0");
  RunOptions rest;
  rest.resume_path = dir / "c.ckpt";
  EXPECT_EQ(train(parse_run_config(same, "s.yaml"), rest).steps_done, 40);
}

TEST(TrainingRun, ANonFiniteLossStopsTheRunAtItsStep) {
  TempDir dir;
  RunOptions o;
  o.checkpoint_path = dir / "c.ckpt";
  o.metrics_path = dir / "m.csv";
  const Trained r = train(parse_run_config("problem: {name: quadratic, dim: 10}\ntrain: {steps: 50, batch_size: 16, "
                                           "log_every: 10}\noptimizer: {name: sgd, lr: 1.0e30}\n",
                                           "d.yaml"),
                          o);
  EXPECT_EQ(r.diverged_at, 3);
  EXPECT_EQ(r.divergence, "the training loss is nan");
  EXPECT_EQ(r.steps_done, 3) << "stopped there";
  ASSERT_EQ(r.rows.size(), 1U) << "a row at the step of the divergence";
  EXPECT_TRUE(r.rows.back().diverged);
  EXPECT_TRUE(std::isnan(r.rows.back().train_loss));
  EXPECT_FALSE(std::filesystem::exists(dir / "c.ckpt")) << "no checkpoint of a diverged state";
  const std::string csv = optreg_test::read_file(dir / "m.csv");
  EXPECT_TRUE(optreg_test::contains(csv, "\n3,0,nan,,,1e+30,,")) << "a loss that was measured is never empty:\n" << csv;
}

TEST(TrainingRun, AParameterThatIsNotFiniteAtARowStopsTheRun) {
  // The first step's loss is finite; its update overflows float32.
  const Trained r = train(parse_run_config("problem: {name: quadratic, dim: 10}\ntrain: {steps: 5, batch_size: 16, "
                                           "log_every: 1}\noptimizer: {name: sgd, lr: 1.0e300}\n",
                                           "p.yaml"),
                          {});
  EXPECT_EQ(r.diverged_at, 1);
  EXPECT_EQ(r.divergence, "parameter 'theta' holds -inf");
  EXPECT_EQ(r.steps_done, 1);
}

TEST(TrainingRun, OnDivergenceContinueTrainsOnAndStillReportsIt) {
  const RunConfig config = parse_run_config("problem: {name: quadratic, dim: 10, noise: 1.0e308}\n"
                                            "train: {steps: 20, batch_size: 16, log_every: 10, on_divergence: continue}\n"
                                            "optimizer: {name: sgd, lr: 0.1}\n",
                                            "n.yaml");
  const Trained r = train(config, {});
  EXPECT_EQ(r.diverged_at, 1);
  EXPECT_EQ(r.steps_done, 20);
  ASSERT_FALSE(r.rows.empty());
  EXPECT_TRUE(r.rows.front().diverged);
  EXPECT_EQ(r.rows.front().step, 1);
  ASSERT_TRUE(r.rows.back().test_loss.has_value()) << "the last row is evaluated, its loss not finite";
  EXPECT_FALSE(std::isfinite(*r.rows.back().test_loss));
  EXPECT_FALSE(std::isfinite(r.train.loss));

  // A resume after the divergence still reports it, and makes no second row for it.
  TempDir dir;
  const Trained b = stop_and_resume(config, 5, dir / "c.ckpt");
  EXPECT_EQ(b.diverged_at, 1);
  EXPECT_EQ(b.divergence, r.divergence);
  for (const auto& row : b.rows) EXPECT_FALSE(row.diverged) << "step " << row.step;
}

TEST(TrainingRun, RowsAreStreamedNotKeptSoMemoryDoesNotGrowWithTheRun) {
  // AddressSanitizer holds freed memory in quarantine, so the peak grows with any allocation.
  if (OPTREG_TEST_ASAN) GTEST_SKIP() << "the peak memory of a process under AddressSanitizer counts its quarantine";
  const auto peak_kib = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
  };
  const char* text = "problem: {name: rosenbrock}\ntrain: {steps: STEPS, log_every: 1}\noptimizer: {name: adam, lr: 0.001}\n";
  const auto config = [&](const char* steps) {
    std::string t = text;
    t.replace(t.find("STEPS"), 5, steps);
    return parse_run_config(t, "r.yaml");
  };
  std::int64_t rows = 0;
  RunOptions o;
  o.on_row = [&](const MetricRow&) { ++rows; };
  optreg::Registry registry;
  registry.load_directory(OPTREG_TEST_PLUGIN_DIR);
  DataCache data;
  const RunConfig warm = config("1000");
  run_training(warm, warm.runs.front(), registry, data, o);
  const long before = peak_kib();
  // 300,000 rows of about 100 bytes each would take 30 MB if they were kept.
  const RunConfig longer = config("300000");
  rows = 0;
  EXPECT_EQ(run_training(longer, longer.runs.front(), registry, data, o).steps_done, 300000);
  EXPECT_EQ(rows, 300000) << "every row reaches the sink";
  EXPECT_LT(peak_kib() - before, 4 * 1024) << "KiB of peak memory gained";
}

TEST(TrainingRun, MetricRowsComeEveryLogIntervalWithEvaluations) {
  const RunConfig config = parse_run_config(kQuadraticRun, "q.yaml");
  TempDir dir;
  RunOptions o;
  o.metrics_path = dir / "m.csv";
  const Trained r = train(config, o);
  // Every 10 steps, and at the end of every epoch of 8 steps (8, 16, ..., 88): 40 and 80 are both.
  ASSERT_EQ(r.rows.size(), 9U + 11U - 2U);
  EXPECT_EQ(r.rows.back().step, 90);
  EXPECT_TRUE(r.rows.back().test_loss.has_value());
  EXPECT_LT(r.rows.back().train_loss, r.rows.front().train_loss);
  const std::string csv = optreg_test::read_file(o.metrics_path);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "step,epoch,train_loss,test_loss,test_accuracy,lr,grad_norm,seconds");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(r.rows.size() + 1));
}

TEST(TrainingRun, TheMlpLearnsFashionMnist) {
  // 300 Adam steps of a small MLP: the mean minibatch loss of the last 50 steps is below half
  // that of the first 50, and the test accuracy above 75% (10% is chance).
  const RunConfig config = parse_run_config(
      "problem: {name: mlp, hidden: [64]}\ntrain: {seed: 1, steps: 300, batch_size: 64, log_every: 50}\n"
      "optimizer: {name: adam, lr: 0.002}\n",
      "mlp.yaml");
  const Trained r = train(config, {});
  ASSERT_EQ(r.rows.size(), 6U);
  EXPECT_LT(r.rows.back().train_loss, 0.5 * r.rows.front().train_loss)
      << r.rows.front().train_loss << " -> " << r.rows.back().train_loss;
  EXPECT_GT(r.test.accuracy, 0.75);
  EXPECT_LT(r.test.loss, 0.8);
}

TEST(TrainingRun, RosenbrockConvergesWithAdam) {
  const RunConfig config = parse_run_config(
      "problem: {name: rosenbrock}\ntrain: {steps: 3000, log_every: 500}\noptimizer: {name: adam, lr: 0.02}\n", "r.yaml");
  const Trained r = train(config, {});
  EXPECT_LT(r.train.loss, 1e-3) << "from 24.2 at the classic start";
}

}  // namespace

TEST(TrainingRun, AResumeRefusesForgedProgressCountsNamingTheEntry) {
  TempDir dir;
  checkpoint_at(kSettingsRun, 15, dir);
  const optreg::Checkpoint saved = optreg::read_checkpoint(dir / "c.ckpt");
  const std::vector<std::pair<std::string, std::int64_t>> forged = {
      {"nonfinite_grad_norms", std::numeric_limits<std::int64_t>::max()},
      {"nonfinite_grad_norms", -1},
      {"steps_to_target", 16},
      {"steps_to_target", -2},
      {"diverged_at", std::numeric_limits<std::int64_t>::min()},
      {"window_count", 16},
      {"eval_count", -1},
  };
  for (const auto& [key, value] : forged) {
    optreg::Checkpoint c = saved;
    c.metadata["train." + key] = optreg::Value(value);
    optreg::save_checkpoint(dir / "forged.ckpt", c);
    RunOptions rest;
    rest.resume_path = dir / "forged.ckpt";
    const std::string lo = key == "steps_to_target" || key == "diverged_at" ? "-1" : "0";
    EXPECT_EQ(optreg_test::message_of<optreg::CheckpointError>([&] { train(parse_run_config(kSettingsRun, "s.yaml"), rest); }),
              "checkpoint " + (dir / "forged.ckpt") + ": 'train." + key + "' = " + std::to_string(value) + " lies outside [" +
                  lo + ", 15], the range its step allows");
  }
}

TEST(TrainingRun, ScheduleFreeIsEvaluatedAtItsAverageAndTrainsOnFromItsOwnWeights) {
  const RunConfig config = parse_run_config(
      "problem: {name: quadratic, dim: 20, condition: 100, train_size: 256}\n"
      "train: {seed: 4, steps: 40, batch_size: 32, log_every: 10, checkpoint_every: 20}\n"
      "optimizer: {name: schedulefree_adamw, lr: 0.05, betas: [0.8, 0.999]}\n",
      "sf.yaml");
  TempDir dir;
  RunOptions whole;
  whole.checkpoint_path = dir / "whole.ckpt";
  const Trained a = train(config, whole);
  ASSERT_EQ(a.steps_done, 40);
  // The checkpoint holds the training weights y and the iterate z; the test loss is the
  // problem's at x = y + (1 - 1/beta1) (z - y).
  const optreg::Checkpoint c = optreg::read_checkpoint(whole.checkpoint_path);
  DataCache data;
  const optreg::train::ProblemKind* kind = optreg::train::find_problem("quadratic");
  auto at_x = kind->create(config.problem_options, config.train.seed, data);
  auto at_y = kind->create(config.problem_options, config.train.seed, data);
  ASSERT_EQ(at_x->params().size(), c.parameters.size());
  for (std::size_t i = 0; i < c.parameters.size(); ++i) {
    const optreg::Tensor& y = c.parameters[i].value;
    const optreg::Tensor& z = c.optimizer.state.at(i).tensor("z");
    optreg::Tensor x = at_x->params()[i].value();
    optreg::Tensor(at_y->params()[i].value()).copy_from(y);  // a handle: the problem's memory
    for (std::size_t k = 0; k < y.numel(); ++k) x[k] = y[k] + static_cast<float>(1.0 - 1.0 / 0.8) * (z[k] - y[k]);
  }
  EXPECT_EQ(a.test.loss, at_x->evaluate_test().loss);
  EXPECT_NE(a.test.loss, at_y->evaluate_test().loss);
  // Evaluating in the middle changed nothing the training continues from.
  const Trained b = stop_and_resume(config, 20, dir / "part.ckpt");
  EXPECT_TRUE(optreg_test::same_bits(without_time(optreg::read_checkpoint(whole.checkpoint_path)),
                                     without_time(optreg::read_checkpoint(dir / "part.ckpt"))));
  EXPECT_EQ(a.test.loss, b.test.loss);
}

TEST(TrainingRun, LbfgsReEvaluatesEachBatchThroughAClosureAndResumesBitExactly) {
  const RunConfig config = parse_run_config(
      "problem: {name: quadratic, dim: 20, condition: 100, train_size: 256}\n"
      "train: {seed: 4, steps: 40, batch_size: 32, log_every: 10, checkpoint_every: 20}\n"
      "optimizer: {name: lbfgs, lr: 0.5, max_iter: 4, history_size: 5, line_search: strong_wolfe}\n",
      "lbfgs.yaml");
  TempDir dir;
  RunOptions whole;
  whole.checkpoint_path = dir / "whole.ckpt";
  const Trained a = train(config, whole);
  ASSERT_EQ(a.steps_done, 40);
  EXPECT_LT(a.train.loss, a.rows.front().train_loss) << "the run learns";
  // Several evaluations per step: the closure ran more often than the steps.
  const optreg::Checkpoint c = optreg::read_checkpoint(whole.checkpoint_path);
  EXPECT_GT(std::get<std::int64_t>(c.optimizer.state.at(0).scalar("func_evals")), 40);
  const Trained b = stop_and_resume(config, 23, dir / "part.ckpt");
  EXPECT_TRUE(optreg_test::same_bits(without_time(c), without_time(optreg::read_checkpoint(dir / "part.ckpt"))));
  EXPECT_EQ(a.test.loss, b.test.loss);
}
