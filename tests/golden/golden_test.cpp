// Golden-trajectory tests: replays the trajectories of torch.optim.SGD, Adam, AdamW, Adagrad,
// Adadelta, RMSprop, Adamax, NAdam, RAdam, ASGD and Rprop (and of MegEngine's form of Adagrad),
// and those of generate.py's references of LAMB, LARS, Lion, Adafactor, ADOPT and Adan, recorded in
// trajectories.txt (format: see generate.py) through the plugin each case names, feeding the
// recorded gradients and comparing every parameter, and every recorded state tensor, after
// every step; likewise the float64 trajectories of trajectories_float64.txt (torch's own
// optimizers in double, and reference_float64.py's numpy references of LAMB, LARS, Lion, Adafactor, ADOPT and Adan) and
// the half-precision, state-dtype and stochastic-rounding files below.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/optimizer.hpp>
#include <optreg/parameter.hpp>
#include <optreg/registry.hpp>
#include <optreg/tensor.hpp>
#include <optreg/value.hpp>

#include "registry_fixture.hpp"

namespace {

// Tolerance of every comparison: |actual - expected| <= kAtol + kRtol * |expected|.
// The plugins follow torch's single-tensor updates operation by operation in float32 with
// separately rounded products and sums; torch's AVX2 CPU kernels (which produced the file)
// compute `add(x, alpha)` and `addcmul` as fused multiply-adds. Each step therefore differs by
// at most an ulp or so, and the difference carries over through the parameters and the
// optimizer state. kRtol = 1e-5 bounds it for values of ordinary size; kAtol = 5e-7 bounds it
// for elements near zero, where a relative bound alone fails (the largest excess over the
// relative term is 1.5e-7 across the torch cases, so kAtol leaves a margin of about 3).
constexpr double kRtol = 1e-5;
constexpr double kAtol = 5e-7;

// The number of cases generate.py writes; the file must hold at least these.
constexpr std::size_t kMinCases = 116;
// The number of steps generate.py records per case.
constexpr std::size_t kMinSteps = 200;

// Mismatches reported per case before the replay stops.
constexpr int kMaxReported = 5;

const char kGoldenFormat[] = "optreg-golden 1";

struct GroupRecord {
  std::vector<std::size_t> params;
  optreg::Options options;
};

struct StepRecord {
  std::vector<std::pair<std::size_t, double>> set_lr;
  std::vector<std::pair<std::size_t, std::vector<double>>> grads;
  std::vector<std::optional<std::vector<double>>> values;  // by parameter index
  struct State {
    std::size_t param;
    std::string name;
    std::vector<double> values;
  };
  std::vector<State> states;  // recorded state tensors, for the cases that record them
};

struct CaseRecord {
  std::string name;
  std::string optimizer;
  std::size_t declared_steps = 0;
  std::vector<optreg::Shape> shapes;
  std::vector<std::vector<double>> init;
  std::vector<GroupRecord> groups;
  std::vector<StepRecord> steps;
};

struct GoldenFile {
  std::string path;
  /// The dtype of every tensor: float32 unless a 'dtype float64' line follows 'cases N'.
  optreg::DType dtype = optreg::DType::Float32;
  std::size_t declared_cases = 0;
  std::vector<CaseRecord> cases;
  std::string error;  // empty when the file was read completely
};

class ParseError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> tokens;
  std::istringstream in(line);
  std::string t;
  while (in >> t) tokens.push_back(t);
  return tokens;
}

std::size_t parse_index(const std::string& s) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw ParseError("expected a non-negative integer, got '" + s + "'");
  }
  return static_cast<std::size_t>(std::stoul(s));
}

double parse_double(const std::string& s) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v)) {
    throw ParseError("expected a finite number, got '" + s + "'");
  }
  return v;
}

float parse_float(const std::string& s) {
  errno = 0;
  char* end = nullptr;
  const float v = std::strtof(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v)) {
    throw ParseError("expected a finite float32, got '" + s + "'");
  }
  return v;
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos - start));
    if (pos == std::string::npos) return parts;
    start = pos + 1;
  }
}

// "[2,3]" -> {2, 3}; "[]" -> {} (a scalar).
optreg::Shape parse_shape(const std::string& s) {
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') throw ParseError("expected a shape like [2,3], got '" + s + "'");
  optreg::Shape shape;
  const std::string inner = s.substr(1, s.size() - 2);
  if (inner.empty()) return shape;
  for (const std::string& d : split_on(inner, ',')) shape.push_back(static_cast<std::int64_t>(parse_index(d)));
  return shape;
}

// true/false, "text", [a,b], an integer (digits alone) or a float.
optreg::Value parse_value(const std::string& s) {
  const bool integer = !s.empty() && s.size() < 16 &&
                       std::all_of(s.begin() + (s[0] == '-' ? 1 : 0), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                       s != "-";
  if (integer) return optreg::Value(static_cast<std::int64_t>(std::stoll(s)));
  if (s == "true") return optreg::Value(true);
  if (s == "false") return optreg::Value(false);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return optreg::Value(s.substr(1, s.size() - 2));
  if (!s.empty() && s.front() == '[') {
    if (s.size() < 3 || s.back() != ']') throw ParseError("expected a list like [0.9,0.999], got '" + s + "'");
    std::vector<double> list;
    for (const std::string& e : split_on(s.substr(1, s.size() - 2), ',')) list.push_back(parse_double(e));
    return optreg::Value(std::move(list));
  }
  return optreg::Value(parse_double(s));
}

/// The values of tokens[first...], float32 or float64 as the file's dtype says.
std::vector<double> parse_floats(const std::vector<std::string>& tokens, std::size_t first, std::size_t expected,
                                 optreg::DType dtype) {
  if (tokens.size() - first != expected) {
    throw ParseError("expected " + std::to_string(expected) + " values, got " + std::to_string(tokens.size() - first));
  }
  std::vector<double> values;
  values.reserve(expected);
  for (std::size_t i = first; i < tokens.size(); ++i) {
    values.push_back(dtype == optreg::DType::Float64 ? parse_double(tokens[i]) : parse_float(tokens[i]));
  }
  return values;
}

void expect_arity(const std::vector<std::string>& t, std::size_t n) {
  if (t.size() != n) {
    throw ParseError("'" + t[0] + "' takes " + std::to_string(n - 1) + " argument(s), got " + std::to_string(t.size() - 1));
  }
}

bool valid_case_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// Checks a case once its `end` line is read.
void finish_case(const CaseRecord& c) {
  if (c.optimizer.empty()) throw ParseError("case '" + c.name + "' has no 'optimizer' line");
  if (c.shapes.empty()) throw ParseError("case '" + c.name + "' has no parameters");
  if (c.groups.empty()) throw ParseError("case '" + c.name + "' has no parameter groups");
  if (c.declared_steps == 0) throw ParseError("case '" + c.name + "' has no 'steps' line or zero steps");
  if (c.steps.size() != c.declared_steps) {
    throw ParseError("case '" + c.name + "' declares " + std::to_string(c.declared_steps) + " steps but has " +
                     std::to_string(c.steps.size()));
  }
  std::vector<int> in_groups(c.shapes.size(), 0);
  for (const GroupRecord& g : c.groups) {
    for (std::size_t p : g.params) ++in_groups[p];
  }
  for (std::size_t p = 0; p < in_groups.size(); ++p) {
    if (in_groups[p] != 1) {
      throw ParseError("case '" + c.name + "': parameter " + std::to_string(p) + " is in " +
                       std::to_string(in_groups[p]) + " groups (must be exactly one)");
    }
  }
  for (std::size_t k = 0; k < c.steps.size(); ++k) {
    for (std::size_t p = 0; p < c.shapes.size(); ++p) {
      if (!c.steps[k].values[p]) {
        throw ParseError("case '" + c.name + "' step " + std::to_string(k + 1) + " has no value line for parameter " +
                         std::to_string(p));
      }
    }
  }
}

// Reads the whole file; any problem throws ParseError naming the line.
void parse_into(GoldenFile& file) {
  std::ifstream in(file.path);
  if (!in) throw ParseError("cannot open the golden file (regenerate it with tests/golden/generate.py)");
  std::string line;
  std::size_t lineno = 0;
  bool have_format = false;
  bool have_count = false;
  CaseRecord* cur = nullptr;
  StepRecord* step = nullptr;
  auto numel = [&](std::size_t p) { return optreg::numel_of(cur->shapes[p]); };
  auto param_index = [&](const std::string& s) {
    const std::size_t p = parse_index(s);
    if (p >= cur->shapes.size()) throw ParseError("parameter index " + s + " out of range");
    return p;
  };
  try {
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::vector<std::string> t = split(line);
      if (t.empty() || t[0][0] == '#') continue;
      const std::string& key = t[0];
      if (!have_format) {
        if (line != kGoldenFormat) throw ParseError(std::string("expected the format line '") + kGoldenFormat + "'");
        have_format = true;
        continue;
      }
      if (!have_count) {
        if (key != "cases") throw ParseError("expected 'cases N'");
        expect_arity(t, 2);
        file.declared_cases = parse_index(t[1]);
        have_count = true;
        continue;
      }
      if (key == "dtype" && file.cases.empty() && cur == nullptr) {
        expect_arity(t, 2);
        file.dtype = optreg::dtype_from_name(t[1]);
        continue;
      }
      if (key == "case") {
        if (cur != nullptr) throw ParseError("'case' before the 'end' of case '" + cur->name + "'");
        expect_arity(t, 2);
        if (!valid_case_name(t[1])) throw ParseError("case name '" + t[1] + "' is not [A-Za-z0-9_]+");
        for (const CaseRecord& c : file.cases) {
          if (c.name == t[1]) throw ParseError("case '" + t[1] + "' appears twice");
        }
        file.cases.emplace_back();
        cur = &file.cases.back();
        cur->name = t[1];
        step = nullptr;
        continue;
      }
      if (cur == nullptr) throw ParseError("'" + key + "' outside a case");
      if (key == "end") {
        expect_arity(t, 1);
        finish_case(*cur);
        cur = nullptr;
        step = nullptr;
      } else if (key == "optimizer") {
        expect_arity(t, 2);
        cur->optimizer = t[1];
      } else if (key == "steps") {
        expect_arity(t, 2);
        cur->declared_steps = parse_index(t[1]);
      } else if (key == "param") {
        if (!cur->groups.empty() || step != nullptr) throw ParseError("'param' after the groups or steps");
        if (t.size() < 3) throw ParseError("'param' needs an index and a shape");
        if (parse_index(t[1]) != cur->shapes.size()) throw ParseError("parameters must be numbered 0, 1, ... in order");
        cur->shapes.push_back(parse_shape(t[2]));
        cur->init.push_back(parse_floats(t, 3, optreg::numel_of(cur->shapes.back()), file.dtype));
      } else if (key == "group") {
        if (step != nullptr) throw ParseError("'group' after the first step");
        if (t.size() < 2) throw ParseError("'group' needs its parameter indices");
        GroupRecord g;
        for (const std::string& id : split_on(t[1], ',')) g.params.push_back(param_index(id));
        for (std::size_t i = 2; i < t.size(); ++i) {
          const std::size_t eq = t[i].find('=');
          if (eq == std::string::npos || eq == 0) throw ParseError("expected key=value, got '" + t[i] + "'");
          if (!g.options.emplace(t[i].substr(0, eq), parse_value(t[i].substr(eq + 1))).second) {
            throw ParseError("option '" + t[i].substr(0, eq) + "' given twice");
          }
        }
        cur->groups.push_back(std::move(g));
      } else if (key == "step") {
        expect_arity(t, 2);
        if (parse_index(t[1]) != cur->steps.size() + 1) throw ParseError("steps must be numbered 1, 2, ... in order");
        cur->steps.emplace_back();
        step = &cur->steps.back();
        step->values.resize(cur->shapes.size());
      } else if (step == nullptr) {
        throw ParseError("'" + key + "' before the first 'step'");
      } else if (key == "set_lr") {
        expect_arity(t, 3);
        const std::size_t g = parse_index(t[1]);
        if (g >= cur->groups.size()) throw ParseError("group index " + t[1] + " out of range");
        step->set_lr.emplace_back(g, parse_double(t[2]));
      } else if (key == "grad") {
        if (t.size() < 2) throw ParseError("'grad' needs a parameter index");
        const std::size_t p = param_index(t[1]);
        for (const auto& [q, values] : step->grads) {
          if (q == p) throw ParseError("two grad lines for parameter " + t[1]);
        }
        step->grads.emplace_back(p, parse_floats(t, 2, numel(p), file.dtype));
      } else if (key == "value") {
        if (t.size() < 2) throw ParseError("'value' needs a parameter index");
        const std::size_t p = param_index(t[1]);
        if (step->values[p]) throw ParseError("two value lines for parameter " + t[1]);
        step->values[p] = parse_floats(t, 2, numel(p), file.dtype);
      } else if (key == "state") {
        if (t.size() < 3) throw ParseError("'state' needs a parameter index and a state name");
        const std::size_t p = param_index(t[1]);
        for (const auto& st : step->states) {
          if (st.param == p && st.name == t[2]) throw ParseError("two state lines for " + t[2] + " of parameter " + t[1]);
        }
        step->states.push_back({p, t[2], parse_floats(t, 3, numel(p), file.dtype)});
      } else {
        throw ParseError("unknown line '" + key + "'");
      }
    }
  } catch (const ParseError& e) {
    throw ParseError("line " + std::to_string(lineno) + ": " + e.what());
  } catch (const std::exception& e) {
    throw ParseError("line " + std::to_string(lineno) + ": " + e.what());
  }
  if (!have_format) throw ParseError("empty file (no format line)");
  if (!have_count) throw ParseError("no 'cases N' line");
  if (cur != nullptr) throw ParseError("the file ends inside case '" + cur->name + "' (truncated?)");
  if (file.cases.size() != file.declared_cases) {
    throw ParseError("the file declares " + std::to_string(file.declared_cases) + " cases but holds " +
                     std::to_string(file.cases.size()));
  }
}

GoldenFile read_golden(const std::string& name) {
  GoldenFile f;
  f.path = std::string(OPTREG_TEST_SOURCE_DIR) + "/golden/" + name;
  try {
    parse_into(f);
  } catch (const std::exception& e) {
    f.error = f.path + ": " + e.what();
    f.cases.clear();
  }
  return f;
}

/// The float32 trajectories of generate.py.
const GoldenFile& golden() {
  static const GoldenFile file = read_golden("trajectories.txt");
  return file;
}

/// The float64 trajectories of generate_float64.py.
const GoldenFile& golden64() {
  static const GoldenFile file = read_golden("trajectories_float64.txt");
  return file;
}

// The name of the single test instance that stands for a missing or malformed file.
const char kBrokenFile[] = "golden_file_invalid";

std::vector<std::string> case_names(const GoldenFile& file) {
  std::vector<std::string> names;
  for (const CaseRecord& c : file.cases) names.push_back(c.name);
  if (names.empty()) names.emplace_back(kBrokenFile);
  return names;
}

const CaseRecord* find_case(const GoldenFile& file, const std::string& name) {
  for (const CaseRecord& c : file.cases) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

/// A tensor of `shape` and the file's dtype holding `values`.
optreg::Tensor tensor_of(const optreg::Shape& shape, const std::vector<double>& values, optreg::DType dtype) {
  optreg::Tensor t(shape, dtype == optreg::DType::Float64 ? dtype : optreg::DType::Float32);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (dtype == optreg::DType::Float64) {
      t.data_as<double>()[i] = values[i];
    } else {
      t.data()[i] = static_cast<float>(values[i]);
    }
  }
  if (dtype == optreg::DType::BFloat16 || dtype == optreg::DType::Float16) {
    const optreg::Tensor half = t.to(dtype);  // the file's values are half-precision values: exact
    if (!std::equal(values.begin(), values.end(), half.to_double_vector().begin())) {
      ADD_FAILURE() << "a value of the file is not a " << optreg::dtype_name(dtype) << " value";
    }
    return half;
  }
  return t;
}

/// One unit in the last place of `x` in the half-precision `dtype` (its spacing at |x|, and the
/// smallest subnormal's at and below the smallest normal).
double half_ulp(double x, optreg::DType dtype) {
  const int fraction_bits = dtype == optreg::DType::BFloat16 ? 7 : 10;
  const int min_exponent = dtype == optreg::DType::BFloat16 ? -126 : -14;
  int e = 0;
  std::frexp(std::fabs(x), &e);  // |x| = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, std::max(e - 1, min_exponent) - fraction_bits);
}

TEST(GoldenFile, ParsesCompletely) {
  const GoldenFile& f = golden();
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.cases.size(), f.declared_cases);
  EXPECT_GE(f.cases.size(), kMinCases) << f.path << " holds fewer cases than generate.py writes";
  const optreg::Registry& registry = optreg_test::in_tree_registry();
  ASSERT_TRUE(registry.refused().empty());
  for (const CaseRecord& c : f.cases) {
    EXPECT_TRUE(registry.find(c.optimizer).has_value())
        << c.name << ": optimizer " << c.optimizer << " is not registered by the in-tree plugin folder";
    EXPECT_GE(c.steps.size(), kMinSteps) << c.name;
  }
}

/// Replays case `name` of `f` and compares every value with |a - b| <= atol + rtol |b|.
void replay(const GoldenFile& f, const std::string& name, double rtol, double atol) {
  ASSERT_TRUE(f.error.empty()) << f.error;
  const CaseRecord* c = find_case(f, name);
  ASSERT_NE(c, nullptr) << "no case '" << name << "' in " << f.path;

  const optreg::Registry& registry = optreg_test::in_tree_registry();
  ASSERT_TRUE(registry.refused().empty());

  std::vector<optreg::Parameter> params;
  for (std::size_t i = 0; i < c->shapes.size(); ++i) {
    params.emplace_back("p" + std::to_string(i), tensor_of(c->shapes[i], c->init[i], f.dtype));
  }
  std::vector<optreg::ParamGroupSpec> specs;
  for (const GroupRecord& g : c->groups) {
    optreg::ParamGroupSpec spec;
    for (std::size_t p : g.params) spec.params.push_back(params[p]);
    spec.options = g.options;
    specs.push_back(std::move(spec));
  }
  optreg::OptimizerPtr opt = registry.create(c->optimizer, std::move(specs));
  ASSERT_EQ(opt->param_groups().size(), c->groups.size());

  int reported = 0;
  std::size_t compared = 0;
  double max_abs = 0.0;    // largest |a - b|
  double max_rel = 0.0;    // largest |a - b| / |b| where the relative term dominates the bound
  double max_share = 0.0;  // largest |a - b| / (atol + rtol * |b|): 1 is the limit
  double max_ulps = 0.0;   // half-precision parameters: largest |a - b| in ulps of their dtype
  // Compares one tensor after step k; `what` names it in a failure.
  const auto compare = [&](std::size_t k, const std::string& what, const std::vector<double>& expected,
                           const optreg::Tensor& actual) {
    for (std::size_t e = 0; e < expected.size(); ++e) {
      const double want = expected[e];
      const double got = actual.element(e);
      const double diff = std::fabs(got - want);
      const double bound = atol + rtol * std::fabs(want);
      ++compared;
      max_abs = std::max(max_abs, diff);
      if (rtol * std::fabs(want) >= atol) max_rel = std::max(max_rel, diff / std::fabs(want));
      max_share = std::max(max_share, diff / bound);
      if (!(diff <= bound) && reported < kMaxReported) {
        ++reported;
        ADD_FAILURE() << "case " << c->name << ", step " << (k + 1) << ", " << what << ", element " << e
                      << ": expected " << std::setprecision(17) << want << ", got " << got
                      << " (|diff| = " << std::setprecision(3) << diff << ", allowed " << bound << ")";
      }
    }
  };
  for (std::size_t k = 0; k < c->steps.size(); ++k) {
    const StepRecord& s = c->steps[k];
    opt->clear_grad();
    for (const auto& [p, grad] : s.grads) params[p].accumulate_grad(tensor_of(c->shapes[p], grad, f.dtype));
    for (const auto& [g, lr] : s.set_lr) opt->set_option(g, "lr", optreg::Value(lr));
    opt->step();

    for (std::size_t p = 0; p < params.size(); ++p) {
      const std::string what = "parameter " + std::to_string(p) + " " + optreg::to_string(c->shapes[p]);
      if (f.dtype == optreg::DType::BFloat16 || f.dtype == optreg::DType::Float16) {
        // A half-precision parameter is its master rounded: within one ulp of the reference's,
        // beyond what the masters' own tolerance lets them differ (which, for values near zero,
        // can exceed a float16 ulp).
        for (std::size_t e = 0; e < s.values[p]->size(); ++e) {
          const double want = (*s.values[p])[e];
          const double got = params[p].value().element(e);
          const bool exact = rtol == 0.0 && atol == 0.0;  // a replay bit for bit allows nothing
          const double bound = exact ? 0.0 : half_ulp(want, f.dtype) + atol + rtol * std::fabs(want);
          ++compared;
          max_ulps = std::max(max_ulps, std::fabs(got - want) / half_ulp(want, f.dtype));
          if (!(std::fabs(got - want) <= bound) && reported < kMaxReported) {
            ++reported;
            ADD_FAILURE() << "case " << c->name << ", step " << (k + 1) << ", " << what << ", element " << e
                          << ": expected " << want << ", got " << got << ", more than one "
                          << optreg::dtype_name(f.dtype) << " ulp and the master tolerance apart";
          }
        }
        continue;
      }
      compare(k, what, *s.values[p], params[p].value());
    }
    for (const StepRecord::State& st : s.states) {
      const optreg::Tensor& actual = opt->state(params[st.param]).tensor(st.name);
      ASSERT_EQ(actual.numel(), st.values.size()) << "case " << c->name << ": state " << st.name;
      compare(k, "state " + st.name + " of parameter " + std::to_string(st.param), st.values, actual);
    }
    if (reported >= kMaxReported) {
      FAIL() << "case " << c->name << ": stopped at step " << (k + 1) << " of " << c->steps.size() << " after "
             << reported << " mismatches";
    }
  }
  ::testing::Test::RecordProperty("max_abs_error", std::to_string(max_abs));
  ::testing::Test::RecordProperty("max_rel_error", std::to_string(max_rel));
  ::testing::Test::RecordProperty("max_bound_share", std::to_string(max_share));
  std::cout << "[ golden   ] " << optreg::dtype_name(f.dtype) << " " << c->name << " (" << c->optimizer << "): " << c->steps.size() << " steps, " << compared
            << " values; max |a-b| = " << std::setprecision(3) << max_abs << ", max |a-b|/|b| = " << max_rel
            << ", max share of the tolerance = " << max_share;
  if (f.dtype == optreg::DType::BFloat16 || f.dtype == optreg::DType::Float16) std::cout << ", parameters within " << max_ulps << " ulp";
  std::cout << "\n";
}

class Trajectory : public ::testing::TestWithParam<std::string> {};

TEST_P(Trajectory, Matches) { replay(golden(), GetParam(), kRtol, kAtol); }

INSTANTIATE_TEST_SUITE_P(Golden, Trajectory, ::testing::ValuesIn(case_names(golden())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// float64: the plugins step float64 parameters with float64 state and arithmetic, operation by
// operation as torch does in double (and as the numpy float64 references of LAMB, LARS, Lion,
// Adafactor, ADOPT and Adan in reference_float64.py do); kRtol64 is the bound docs/precision.md sets, and kAtol64
// bounds elements near zero the same way kAtol does for float32, scaled by the ratio of the
// two dtypes' precision.
constexpr double kRtol64 = 1e-12;
constexpr double kAtol64 = 1e-15;
// The number of cases generate_float64.py writes: the 65 cases of the optimizers torch ships and
// the 42 of LAMB, LARS, Lion, Adafactor, ADOPT and Adan.
constexpr std::size_t kMinCases64 = 121;
// The number of cases generate_master.py writes to each of its two files (the 65 torch cases).
constexpr std::size_t kMinCasesMaster = 65;

TEST(GoldenFile64, ParsesCompletelyAndIsFloat64) {
  const GoldenFile& f = golden64();
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.dtype, optreg::DType::Float64);
  EXPECT_GE(f.cases.size(), kMinCases64) << f.path << " holds fewer cases than generate_float64.py writes";
  for (const CaseRecord& c : f.cases) {
    const auto d = optreg_test::in_tree_registry().find(c.optimizer);
    ASSERT_TRUE(d.has_value()) << c.optimizer;
    EXPECT_NE(d->param_dtypes & optreg::dtype_bit(optreg::DType::Float64), 0U) << c.optimizer;
  }
}

class Trajectory64 : public ::testing::TestWithParam<std::string> {};

TEST_P(Trajectory64, Matches) { replay(golden64(), GetParam(), kRtol64, kAtol64); }

INSTANTIATE_TEST_SUITE_P(GoldenFloat64, Trajectory64, ::testing::ValuesIn(case_names(golden64())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// bfloat16 and float16 parameters with float32 master weights (generate_master.py): torch steps
// the float32 master with the half-precision gradient; the plugins, given the same gradients and
// master_weights: true, must keep masters within the float32 tolerance and parameters within
// one ulp of their dtype of the reference's (plus that tolerance, which near zero exceeds a
// float16 ulp).
const GoldenFile& golden_bf16() {
  static const GoldenFile file = read_golden("trajectories_bfloat16.txt");
  return file;
}
const GoldenFile& golden_f16() {
  static const GoldenFile file = read_golden("trajectories_float16.txt");
  return file;
}

TEST(GoldenFileMaster, BothParseCompletelyWithTheirDtype) {
  EXPECT_TRUE(golden_bf16().error.empty()) << golden_bf16().error;
  EXPECT_TRUE(golden_f16().error.empty()) << golden_f16().error;
  EXPECT_EQ(golden_bf16().dtype, optreg::DType::BFloat16);
  EXPECT_EQ(golden_f16().dtype, optreg::DType::Float16);
  EXPECT_GE(golden_bf16().cases.size(), kMinCasesMaster);
  EXPECT_GE(golden_f16().cases.size(), kMinCasesMaster);
}

// State kept in bfloat16 and int8 (generate_state.py): numpy references that emulate the storage,
// in float32 operation by operation in the plugins' order, so the replay is bit for bit (no
// tolerance: every instruction set rounds each operation alike).
const GoldenFile& golden_state() {
  static const GoldenFile file = read_golden("state_dtypes.txt");
  return file;
}

TEST(GoldenFileState, ParsesCompletelyAndCoversBothStateDtypes) {
  const GoldenFile& f = golden_state();
  ASSERT_TRUE(f.error.empty()) << f.error;
  std::size_t bf16 = 0, int8 = 0;
  for (const CaseRecord& c : f.cases) {
    for (const GroupRecord& g : c.groups) {
      const std::string& d = g.options.at("state_dtype").as_string();
      bf16 += d == "bfloat16" ? 1 : 0;
      int8 += d == "int8" ? 1 : 0;
    }
  }
  EXPECT_GE(bf16, 2U);
  EXPECT_GE(int8, 3U);
}

class TrajectoryStateDtype : public ::testing::TestWithParam<std::string> {};
TEST_P(TrajectoryStateDtype, MatchesBitForBit) { replay(golden_state(), GetParam(), 0.0, 0.0); }
INSTANTIATE_TEST_SUITE_P(GoldenState, TrajectoryStateDtype, ::testing::ValuesIn(case_names(golden_state())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// bfloat16 parameters rounded stochastically (generate_state.py): numpy references with the
// rounding bits of docs/precision.md, replayed bit for bit.
const GoldenFile& golden_stochastic() {
  static const GoldenFile file = read_golden("stochastic_rounding.txt");
  return file;
}

TEST(GoldenFileStochastic, ParsesCompletelyWithBFloat16Parameters) {
  const GoldenFile& f = golden_stochastic();
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.dtype, optreg::DType::BFloat16);
  EXPECT_GE(f.cases.size(), 4U);
}

class TrajectoryStochastic : public ::testing::TestWithParam<std::string> {};
TEST_P(TrajectoryStochastic, MatchesBitForBit) { replay(golden_stochastic(), GetParam(), 0.0, 0.0); }
INSTANTIATE_TEST_SUITE_P(GoldenStochastic, TrajectoryStochastic, ::testing::ValuesIn(case_names(golden_stochastic())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

class TrajectoryBFloat16 : public ::testing::TestWithParam<std::string> {};
TEST_P(TrajectoryBFloat16, MastersMatchAndParametersAreWithinOneUlp) { replay(golden_bf16(), GetParam(), kRtol, kAtol); }
INSTANTIATE_TEST_SUITE_P(GoldenMaster, TrajectoryBFloat16, ::testing::ValuesIn(case_names(golden_bf16())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

class TrajectoryFloat16 : public ::testing::TestWithParam<std::string> {};
TEST_P(TrajectoryFloat16, MastersMatchAndParametersAreWithinOneUlp) { replay(golden_f16(), GetParam(), kRtol, kAtol); }
INSTANTIATE_TEST_SUITE_P(GoldenMaster, TrajectoryFloat16, ::testing::ValuesIn(case_names(golden_f16())),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });


}  // namespace
