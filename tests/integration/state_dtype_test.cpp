// The core's `state_dtype` option: an optimizer that declares bfloat16 or int8 state keeps its
// state tensors in that dtype, and its step is exactly the float32 step from the state as stored
// (widened, or dequantized), with the new state rounded to nearest (or quantized block by block);
// the bits do not depend on the thread count, state dicts and checkpoint files round-trip, a
// change of the option converts the state, and every refusal names what was wrong.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/parallel.hpp>
#include <optreg/quantize.hpp>
#include <optreg/registry.hpp>
#include <optreg/state_dict.hpp>

#include "dtype_support.hpp"
#include "registry_fixture.hpp"
#include "state_support.hpp"
#include "test_support.hpp"

using optreg::DType;
using optreg::Parameter;
using optreg::Tensor;
using optreg_test::in_tree_registry;

namespace {

const std::vector<std::string> kDeclared = {"adam", "adamw", "sgd", "lion", "rmsprop"};

/// Options that give each optimizer every state tensor it can have.
optreg::Options options_for(const std::string& name, const std::string& state_dtype) {
  optreg::Options o{{"lr", 0.01}, {"state_dtype", state_dtype}};
  if (name == "sgd") o["momentum"] = 0.9;
  if (name == "rmsprop") {
    o["momentum"] = 0.9;
    o["centered"] = true;
  }
  if (name == "adam" || name == "adamw") o["amsgrad"] = true;
  return o;
}

/// Parameters of `dtype`: two in one flat buffer, one spanning several segments and blocks with
/// a partial last block, one of a single element.
std::vector<Parameter> params_of(DType dtype, Tensor& flat) { return optreg_test::mixed_params(dtype, flat, 40001, 1); }

/// The gradient of step `step` for parameter value `v`, in v's dtype; its size varies along the
/// tensor, so that blocks get different scales.
Tensor grad_of(const Tensor& v, int step) {
  Tensor g({static_cast<std::int64_t>(v.numel())});
  for (std::size_t i = 0; i < v.numel(); ++i) {
    const double x = v.element(i);
    g[i] = static_cast<float>((x * x - 0.3 * step) * (1.0 + static_cast<double>(i % 1500) / 100.0));
  }
  return g.to(v.dtype()).to(v.dtype());
}

void set_grads(std::vector<Parameter>& params, int step) {
  for (auto& p : params) p.set_grad(Tensor::part_of(grad_of(p.value(), step), 0, p.value().shape()));
}

/// `sd` with every state tensor converted to `dtype` and its state_dtype option set to float32.
optreg::StateDict widened(optreg::StateDict sd) {
  for (auto& [id, st] : sd.state) {
    optreg::ParamState next;
    for (const auto& [name, t] : st.tensors()) next.add_tensor(name, t.to(DType::Float32));
    for (const auto& [name, v] : st.scalars()) next.add_scalar(name, v);
    st = std::move(next);
  }
  for (auto& g : sd.param_groups) g.options["state_dtype"] = optreg::Value(std::string("float32"));
  return sd;
}

/// Whether a and b (of one dtype) hold the same bytes.
bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

TEST(StateDtype, EveryOptimizerThatDeclaresItKeepsItsStateTensorsInIt) {
  std::vector<std::string> declaring;
  for (const auto& d : in_tree_registry().list()) {
    const std::uint32_t both = optreg::abi::kStateBFloat16 | optreg::abi::kStateInt8;
    if ((d.state_dtypes & both) == both) declaring.push_back(d.name);
  }
  for (const std::string& name : kDeclared) {
    EXPECT_NE(std::find(declaring.begin(), declaring.end(), name), declaring.end()) << name << " declares bfloat16 and int8 state";
  }
  for (const std::string& name : declaring) {
    SCOPED_TRACE(name);
    for (const std::string state : {"bfloat16", "int8"}) {
      Tensor flat;
      std::vector<Parameter> params = params_of(DType::Float32, flat);
      auto opt = optreg_test::create_steppable(in_tree_registry(), name, params, options_for(name, state));
      set_grads(params, 1);
      opt->step();
      const optreg::ParamState& s = opt->state(params[2]);
      ASSERT_GT(s.num_tensors(), 0U);
      for (const auto& [entry, t] : s.tensors()) {
        const optreg::StateEntry* e = nullptr;
        for (const auto& x : opt->state_schema()) e = x.name == entry ? &x : e;
        ASSERT_NE(e, nullptr);
        const bool non_negative = e->domain && e->domain->lo >= 0.0;
        const DType want = state == "bfloat16" ? DType::BFloat16 : non_negative ? DType::QUInt8 : DType::QInt8;
        EXPECT_EQ(t.dtype(), want) << entry;
        EXPECT_EQ(t.dtype(), optreg::state_storage(opt->param_groups()[0].options(), *e, DType::Float32)) << entry;
      }
    }
  }
}

TEST(StateDtype, AStepIsTheFloat32StepFromTheStoredStateWithItsResultStoredAgain) {
  // For bfloat16 state the new state is the float32 result rounded to nearest; for int8 state it
  // is the float32 result quantized block by block (Tensor::to does both). The parameter is the
  // float32 step's result, bit for bit.
  for (const std::string& name : kDeclared) {
    for (const std::string state : {"bfloat16", "int8"}) {
      SCOPED_TRACE(name + " with state_dtype " + state);
      Tensor flat, ref_flat;
      std::vector<Parameter> params = params_of(DType::Float32, flat);
      std::vector<Parameter> ref_params = params_of(DType::Float32, ref_flat);
      auto opt = optreg_test::create_steppable(in_tree_registry(), name, params, options_for(name, state));
      auto ref = optreg_test::create_steppable(in_tree_registry(), name, ref_params, options_for(name, "float32"));
      for (int step = 1; step <= 4; ++step) {
        // The reference starts each step from the reduced optimizer's parameters and state.
        for (std::size_t k = 0; k < params.size(); ++k) ref_params[k].value().copy_from(params[k].value());
        ref->load_state_dict(widened(opt->state_dict()));
        set_grads(params, step);
        set_grads(ref_params, step);
        opt->step().clear_grad();
        ref->step().clear_grad();
        for (std::size_t k = 0; k < params.size(); ++k) {
          ASSERT_TRUE(optreg_test::same_bits(params[k].value(), ref_params[k].value()))
              << params[k].name() << " at step " << step;
          for (const auto& [entry, t] : opt->state(params[k]).tensors()) {
            const Tensor expected = ref->state(ref_params[k]).tensor(entry).to(t.dtype());
            ASSERT_TRUE(same_bytes(t, expected)) << params[k].name() << " '" << entry << "' at step " << step;
          }
        }
      }
    }
  }
}

TEST(StateDtype, GivesTheSameBitsWithOneAndTwoThreads) {
  for (const std::string& name : kDeclared) {
    for (const std::string state : {"bfloat16", "int8"}) {
      SCOPED_TRACE(name + " with state_dtype " + state);
      std::vector<Parameter> by_threads[2];
      Tensor flats[2];
      std::vector<decltype(in_tree_registry().create("", by_threads[0]))> opts;
      for (std::size_t threads : {1U, 2U}) {
        optreg::set_num_threads(threads);
        by_threads[threads - 1] = params_of(DType::BFloat16, flats[threads - 1]);
        optreg::Options o = options_for(name, state);
        o["master_weights"] = true;
        auto opt = optreg_test::create_steppable(in_tree_registry(), name, by_threads[threads - 1], o);
        for (int step = 1; step <= 3; ++step) {
          set_grads(by_threads[threads - 1], step);
          opt->step().clear_grad();
        }
        opts.push_back(std::move(opt));
      }
      optreg::set_num_threads(0);
      for (std::size_t k = 0; k < by_threads[0].size(); ++k) {
        EXPECT_TRUE(optreg_test::same_bits(by_threads[0][k].value(), by_threads[1][k].value())) << by_threads[0][k].name();
        const auto& a = opts[0]->state(by_threads[0][k]).tensors();
        const auto& b = opts[1]->state(by_threads[1][k]).tensors();
        ASSERT_EQ(a.size(), b.size());
        for (std::size_t e = 0; e < a.size(); ++e) EXPECT_TRUE(same_bytes(a[e].second, b[e].second)) << a[e].first;
      }
    }
  }
}

TEST(StateDtype, Int8StateTakesAQuarterOfTheBytesAndStaysCloseToFloat32) {
  Tensor f1, f2;
  std::vector<Parameter> q = params_of(DType::Float32, f1);
  std::vector<Parameter> single = params_of(DType::Float32, f2);
  auto opt = in_tree_registry().create("adam", q, {{"lr", 1e-3}, {"state_dtype", std::string("int8")}});
  auto ref = in_tree_registry().create("adam", single, {{"lr", 1e-3}});
  for (int step = 1; step <= 20; ++step) {
    set_grads(q, step);
    set_grads(single, step);
    opt->step().clear_grad();
    ref->step().clear_grad();
  }
  std::size_t bytes = 0, ref_bytes = 0, n = 0;
  for (std::size_t k = 0; k < q.size(); ++k) {
    for (const auto& [entry, t] : opt->state(q[k]).tensors()) bytes += t.nbytes();
    for (const auto& [entry, t] : ref->state(single[k]).tensors()) ref_bytes += t.nbytes();
    n += q[k].value().numel();
  }
  EXPECT_EQ(ref_bytes, 8 * n);
  EXPECT_LT(static_cast<double>(bytes) / static_cast<double>(n), 2.05);  // 2 codes and the block scales
  // Each step moves a parameter by about lr at most: the quantized moments change its size, not its sign.
  double worst = 0;
  for (std::size_t k = 0; k < q.size(); ++k) {
    for (std::size_t i = 0; i < q[k].value().numel(); ++i) {
      worst = std::max(worst, std::fabs(q[k].value().element(i) - single[k].value().element(i)));
    }
  }
  EXPECT_LT(worst, 20 * 1e-3 * 0.5) << "int8 Adam strays from float32 Adam by more than half its largest move";
  EXPECT_GT(worst, 0.0) << "int8 state rounds: a run that equals float32 to the bit did not quantize";
}

TEST(StateDtype, StateDictsAndCheckpointFilesResumeBitExactly) {
  for (const std::string state : {"bfloat16", "int8"}) {
    SCOPED_TRACE(state);
    Tensor f1, f2;
    std::vector<Parameter> a = params_of(DType::Float32, f1);
    std::vector<Parameter> b = params_of(DType::Float32, f2);
    auto opt = in_tree_registry().create("rmsprop", a, options_for("rmsprop", state));
    for (int step = 1; step <= 3; ++step) {
      set_grads(a, step);
      opt->step().clear_grad();
    }
    const std::string path = ::testing::TempDir() + "state_dtype_" + state + ".ckpt";
    optreg::save_optimizer(path, *opt);
    // A fresh optimizer configured with float32 state takes the saved state_dtype with the state.
    auto resumed = in_tree_registry().create("rmsprop", b, options_for("rmsprop", "float32"));
    for (std::size_t k = 0; k < a.size(); ++k) b[k].value().copy_from(a[k].value());
    optreg::load_optimizer(path, *resumed);
    EXPECT_EQ(resumed->param_groups()[0].options().at("state_dtype").as_string(), state);
    for (int step = 4; step <= 6; ++step) {
      set_grads(a, step);
      set_grads(b, step);
      opt->step().clear_grad();
      resumed->step().clear_grad();
    }
    for (std::size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(optreg_test::same_bits(a[k].value(), b[k].value())) << a[k].name();
      const auto& x = opt->state(a[k]).tensors();
      const auto& y = resumed->state(b[k]).tensors();
      ASSERT_EQ(x.size(), y.size());
      for (std::size_t e = 0; e < x.size(); ++e) EXPECT_TRUE(same_bytes(x[e].second, y[e].second)) << x[e].first;
    }
    std::remove(path.c_str());
  }
}

TEST(StateDtype, AStateDictWhoseTensorsDisagreeWithItsStateDtypeIsRefusedNamingBothDtypes) {
  Tensor f1;
  std::vector<Parameter> a = params_of(DType::Float32, f1);
  auto opt = in_tree_registry().create("adam", a, {{"lr", 0.01}, {"state_dtype", std::string("int8")}});
  set_grads(a, 1);
  opt->step().clear_grad();
  optreg::StateDict sd = widened(opt->state_dict());
  sd.param_groups[0].options["state_dtype"] = optreg::Value(std::string("int8"));  // float32 tensors, int8 option
  const optreg::StateDict before = opt->state_dict();
  try {
    opt->load_state_dict(sd);
    FAIL() << "loaded float32 state under state_dtype int8";
  } catch (const optreg::StateDictError& e) {
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("qint8"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(optreg_test::same_bits(opt->state_dict(), before)) << "a refused load changed the optimizer";
}

TEST(StateDtype, SettingTheOptionConvertsTheStateAndTheRunGoesOn) {
  Tensor f1;
  std::vector<Parameter> a = params_of(DType::Float32, f1);
  auto opt = in_tree_registry().create("sgd", a, {{"lr", 0.01}, {"momentum", 0.9}});
  set_grads(a, 1);
  opt->step().clear_grad();
  const Tensor buffer = opt->state(a[2]).tensor("momentum_buffer").clone();
  opt->set_option("state_dtype", optreg::Value(std::string("int8")));
  const Tensor& now = opt->state(a[2]).tensor("momentum_buffer");
  EXPECT_EQ(now.dtype(), DType::QInt8);
  EXPECT_TRUE(same_bytes(now, buffer.to(DType::QInt8))) << "the conversion quantizes the float32 state";
  set_grads(a, 2);
  opt->step().clear_grad();
  EXPECT_EQ(opt->state(a[2]).tensor("momentum_buffer").dtype(), DType::QInt8);
  opt->set_option(0, "state_dtype", optreg::Value(std::string("float32")));
  EXPECT_EQ(opt->state(a[2]).tensor("momentum_buffer").dtype(), DType::Float32);
}

TEST(StateDtype, AnOptimizerThatDoesNotDeclareItRefusesItNamingWhatItSupports) {
  Tensor f1;
  std::vector<Parameter> a = params_of(DType::Float32, f1);
  try {
    (void)in_tree_registry().create("adagrad", a, {{"state_dtype", std::string("int8")}});
    FAIL() << "adagrad took int8 state";
  } catch (const optreg::OptionError& e) {
    EXPECT_EQ(e.option(), "state_dtype");
    EXPECT_NE(std::string(e.what()).find("'adagrad'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("float32 only"), std::string::npos) << e.what();
  }
  auto opt = in_tree_registry().create("adagrad", a, {});
  EXPECT_THROW(opt->set_option("state_dtype", optreg::Value(std::string("bfloat16"))), optreg::OptionError);
  EXPECT_EQ(opt->param_groups()[0].options().at("state_dtype").as_string(), "float32");
  const auto errors = in_tree_registry().validate_options("lamb", {{"state_dtype", std::string("bfloat16")}}, {});
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].option(), "state_dtype");
  EXPECT_THROW((void)in_tree_registry().create("adam", a, {{"state_dtype", std::string("int4")}}), optreg::OptionError);
}

TEST(StateDtype, Float64ParametersKeepFloat64StateAndRefuseAnother) {
  std::vector<Parameter> a = {Parameter("w", Tensor({8}, DType::Float64)), Parameter("x", Tensor({8}))};
  try {
    (void)in_tree_registry().create("adam", a, {{"state_dtype", std::string("bfloat16")}});
    FAIL() << "a float64 parameter took bfloat16 state";
  } catch (const optreg::OptionError& e) {
    EXPECT_EQ(e.option(), "state_dtype");
    EXPECT_NE(std::string(e.what()).find("parameter 'w' (position 0) is float64"), std::string::npos) << e.what();
  }
  auto opt = in_tree_registry().create("adam", a, {});
  EXPECT_THROW(opt->set_option("state_dtype", optreg::Value(std::string("int8"))), optreg::OptionError);
  EXPECT_EQ(opt->state(a[0]).tensor("exp_avg").dtype(), DType::Float64);
  EXPECT_EQ(opt->state(a[1]).tensor("exp_avg").dtype(), DType::Float32);
}

TEST(DtypeConversion, ACheckpointOfAnotherPrecisionIsRefusedUnlessTheHostAsksToConvert) {
  const std::string path = ::testing::TempDir() + "dtype_conversion.ckpt";
  Tensor f64_flat;
  std::vector<Parameter> wide = params_of(DType::Float64, f64_flat);
  auto saved = in_tree_registry().create("adam", wide, {{"lr", 0.01}, {"amsgrad", true}});
  for (int step = 1; step <= 3; ++step) {
    set_grads(wide, step);
    saved->step().clear_grad();
  }
  optreg::save_optimizer(path, *saved);

  Tensor f32_flat;
  std::vector<Parameter> single = params_of(DType::Float32, f32_flat);
  auto opt = in_tree_registry().create("adam", single, {{"lr", 0.01}, {"amsgrad", true}});
  const optreg::StateDict before = opt->state_dict();
  try {
    optreg::load_optimizer(path, *opt);
    FAIL() << "a float64 checkpoint loaded into float32 parameters without being asked to convert";
  } catch (const optreg::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("parameter id 0 ('a') is float64 in the file, but float32 in the optimizer"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("convert_dtypes"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(optreg_test::same_bits(opt->state_dict(), before)) << "a refused load changed the optimizer";

  std::vector<optreg::DTypeConversion> conversions;
  optreg::LoadOptions convert;
  convert.convert_dtypes = true;
  convert.conversions = &conversions;
  optreg::load_optimizer(path, *opt, convert);
  // 4 parameter values and, per parameter, exp_avg, exp_avg_sq and max_exp_avg_sq.
  ASSERT_EQ(conversions.size(), 4U + 4U * 3U);
  for (const auto& c : conversions) {
    EXPECT_EQ(c.from, DType::Float64) << c.what;
    EXPECT_EQ(c.to, DType::Float32) << c.what;
  }
  EXPECT_EQ(conversions[0].what, "parameter 'a' (id 0)");
  EXPECT_FALSE(conversions[0].exact) << "sines do not fit in float32";
  for (std::size_t k = 0; k < single.size(); ++k) {
    EXPECT_TRUE(optreg_test::same_bits(single[k].value(), wide[k].value().to(DType::Float32))) << single[k].name();
    EXPECT_TRUE(optreg_test::same_bits(opt->state(single[k]).tensor("exp_avg"),
                                       saved->state(wide[k]).tensor("exp_avg").to(DType::Float32)));
  }
  set_grads(single, 4);
  EXPECT_NO_THROW(opt->step());

  // Widening is exact, and says so.
  std::vector<optreg::DTypeConversion> back;
  convert.conversions = &back;
  optreg::save_optimizer(path, *opt);
  Tensor again_flat;
  std::vector<Parameter> again = params_of(DType::Float64, again_flat);
  auto wider = in_tree_registry().create("adam", again, {{"lr", 0.01}, {"amsgrad", true}});
  optreg::load_optimizer(path, *wider, convert);
  ASSERT_EQ(back.size(), conversions.size());
  for (const auto& c : back) EXPECT_TRUE(c.exact) << c.what;
  EXPECT_EQ(back[4].what, "state tensor 'exp_avg' of parameter 'a' (id 0)");
  std::remove(path.c_str());
}
