// The SDK's range helpers: what each accepts, infinity included only where asked for, as the
// registry reads them (a Range from the same four fields); the domains of state entries; and
// the count helpers, which refuse a step rather than pass the top of a count's domain.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/elementwise.hpp>
#include <optreg/plugin.hpp>
#include <optreg/state_dict.hpp>

namespace {

namespace sdk = optreg::sdk;

constexpr double kInf = std::numeric_limits<double>::infinity();

/// The Range a host makes of a hyperparameter declared with `b`.
optreg::Range range_of(sdk::Bounds b) { return optreg::Range{b.lo, b.hi, b.lo_open, b.hi_open}; }

/// The Range a host makes of a declared state domain.
optreg::Range range_of(const optreg::abi::StateDomainSpec& d) {
  return optreg::Range{d.lo, d.hi, d.lo_open != 0, d.hi_open != 0};
}

}  // namespace

TEST(SdkBounds, UnboundedHelpersLeaveInfinityOut) {
  EXPECT_EQ(range_of(sdk::at_least(0.0)).to_string(), "[0.0, inf)");
  EXPECT_FALSE(range_of(sdk::at_least(0.0)).contains(kInf));
  EXPECT_EQ(range_of(sdk::greater_than(0.0)).to_string(), "(0.0, inf)");
  EXPECT_FALSE(range_of(sdk::greater_than(0.0)).contains(kInf));
  EXPECT_EQ(range_of(sdk::any()).to_string(), "(-inf, inf)");
  EXPECT_FALSE(range_of(sdk::any()).contains(kInf));
  EXPECT_FALSE(range_of(sdk::any()).contains(-kInf));
  EXPECT_TRUE(range_of(sdk::any()).contains(-1e308));
}

TEST(SdkBounds, IncludingInfLetsInfinityInAndSaysSo) {
  const optreg::Range r = range_of(sdk::including_inf(sdk::at_least(0.0)));
  EXPECT_EQ(r.to_string(), "[0.0, inf]");
  EXPECT_TRUE(r.contains(kInf));
  EXPECT_FALSE(r.contains(-1.0));
  EXPECT_EQ(range_of(sdk::including_inf(sdk::any())).to_string(), "[-inf, inf]");
  EXPECT_EQ(range_of(sdk::closed(0.0, kInf)).to_string(), "[0.0, inf]");
  // A finite end is left as it is.
  EXPECT_EQ(range_of(sdk::including_inf(sdk::open(0.0, 1.0))).to_string(), "(0.0, 1.0)");
}

TEST(SdkBounds, TheCompileTimeCheckOfADefaultAgreesWithRange) {
  constexpr optreg::abi::HyperparamSpec unbounded = sdk::float_option("x", 1.0, sdk::at_least(0.0), "x");
  static_assert(!optreg::sdk::detail::in_bounds(kInf, unbounded), "at_least(0.0) leaves inf out");
  constexpr optreg::abi::HyperparamSpec with_inf =
      sdk::float_option("x", 1.0, sdk::including_inf(sdk::at_least(0.0)), "x");
  static_assert(optreg::sdk::detail::in_bounds(kInf, with_inf), "including_inf lets inf in");
  SUCCEED();
}

TEST(SdkDomains, StateHelpersCarryTheirDomainAndBareEntriesAllowAnyValue) {
  constexpr sdk::State step = sdk::state_int("step", sdk::count(), "updates");
  static_assert(step.domain.flags == optreg::abi::kDomainRange, "a declared range");
  EXPECT_EQ(range_of(step.domain).to_string(optreg::ValueType::Int), "[0, 9007199254740992]");
  constexpr sdk::State moment = sdk::state_tensor("v", sdk::non_negative(), "second moment");
  EXPECT_EQ(range_of(moment.domain).to_string(), "[0.0, inf]");
  constexpr sdk::State bare = sdk::state_tensor("m", "no domain");
  static_assert(bare.domain.flags == 0, "a bare StateSpec allows any value");
  constexpr sdk::State any = sdk::state_tensor("g", sdk::any_value(), "anything");
  static_assert(any.domain.flags == 0, "any_value() allows any value");
  static_assert(!sdk::detail::domain_valid(sdk::State(sdk::state_float("x", "x"), sdk::closed(1.0, 0.0)).domain),
                "a backwards range is empty");
  static_assert(!sdk::detail::domain_valid(sdk::State(sdk::state_float("x", "x"), sdk::closed_open(1.0, 1.0)).domain),
                "one point with an open end is empty");
  SUCCEED();
}

namespace {

constexpr sdk::State kCountingState[] = {sdk::state_int("step", sdk::count(), "updates")};
constexpr auto kCountingStep = sdk::scalar_entry(kCountingState, "step");

/// Counts each update of a group's tensors with sdk::advance_counts() and adds 1 to every element.
class CountingTensors final : public optreg::Optimizer {
 protected:
  void update_group(const optreg::Options& /*options*/, const std::vector<Slot>& slots) override {
    sdk::advance_counts(slots, kCountingStep);
    for (const Slot& slot : slots) {
      optreg::Tensor& value = slot.param->value();
      for (std::size_t i = 0; i < value.numel(); ++i) value[i] += 1.0F;
    }
  }
};

}  // namespace

TEST(SdkCounts, AdvanceCountsRefusesAFullCountBeforeAnyTensorChanges) {
  optreg::Parameter a("a", optreg::Tensor({2}, {1, 2}));
  optreg::Parameter b("b", optreg::Tensor({1}, {3}));
  CountingTensors opt;
  auto state = std::make_shared<const optreg::StateSchema>(std::vector<optreg::StateEntry>{
      {"step", optreg::StateKind::Int, false, false, "updates", optreg::kCountDomain}});
  std::vector<optreg::ParamGroupSpec> groups(1);
  groups[0].params = {a, b};
  opt.setup(optreg::OptimizerInfo{"counting", "1.0.0", std::make_shared<const optreg::Schema>(), state}, {},
            std::move(groups));
  for (optreg::Parameter& p : opt.parameters()) p.set_grad(optreg::Tensor(p.value().shape(), 1.0F));
  opt.step();
  EXPECT_EQ(std::get<std::int64_t>(opt.state(b).scalar("step")), 1);

  optreg::StateDict full = opt.state_dict();
  full.state.at(1).scalar("step") = optreg::kMaxCount;  // b is parameter id 1
  opt.load_state_dict(full);
  try {
    opt.step();
    ADD_FAILURE() << "a count at 2^53 was advanced";
  } catch (const optreg::UsageError& e) {
    EXPECT_STREQ(e.what(), "parameter 'b' cannot take another step: its state count 'step' = 9007199254740992 is at the "
                           "top of its domain [0, 9007199254740992] (a count stops at 2^53 rather than overflow)");
  }
  // 'a' comes first and was not updated either: the refusal came before any tensor changed.
  EXPECT_EQ(a.value().to_vector(), (std::vector<float>{2, 3}));
  EXPECT_EQ(std::get<std::int64_t>(opt.state(a).scalar("step")), 1);
  EXPECT_EQ(std::get<std::int64_t>(opt.state(b).scalar("step")), optreg::kMaxCount);
}

TEST(SdkCounts, AdvanceCountsAdvancesNoneWhenOneIsAtTheTop) {
  optreg::Parameter a("a", optreg::Tensor({1}, {0}));
  optreg::Parameter b("b", optreg::Tensor({1}, {0}));
  std::vector<optreg::ParamState> states(2);
  for (auto& s : states) s.add_scalar("step", std::int64_t{5});
  states[1].scalar(0) = optreg::kMaxCount;
  const std::vector<optreg::Optimizer::Slot> slots = {{&a, &states[0]}, {&b, &states[1]}};
  EXPECT_THROW(sdk::advance_counts(slots, kCountingStep), optreg::UsageError);
  EXPECT_EQ(std::get<std::int64_t>(states[0].scalar(0)), 5);
  states[1].scalar(0) = optreg::kMaxCount - 1;
  sdk::advance_counts(slots, kCountingStep);
  EXPECT_EQ(std::get<std::int64_t>(states[0].scalar(0)), 6);
  EXPECT_EQ(std::get<std::int64_t>(states[1].scalar(0)), optreg::kMaxCount);
}

TEST(SdkCounts, AdvanceCountsAdvancesNoneWhenALaterStateLacksTheCount) {
  optreg::Parameter a("a", optreg::Tensor({1}, {0}));
  optreg::Parameter b("b", optreg::Tensor({1}, {0}));
  optreg::Parameter c("c", optreg::Tensor({1}, {0}));
  std::vector<optreg::ParamState> states(3);
  states[0].add_scalar("step", std::int64_t{5});
  states[1].add_scalar("step", std::int64_t{7});
  states[2].add_scalar("step", 2.5);  // a float under the count's name
  const std::vector<optreg::Optimizer::Slot> slots = {{&a, &states[0]}, {&b, &states[1]}, {&c, &states[2]}};
  EXPECT_ANY_THROW(sdk::advance_counts(slots, kCountingStep));
  EXPECT_EQ(std::get<std::int64_t>(states[0].scalar(0)), 5);
  EXPECT_EQ(std::get<std::int64_t>(states[1].scalar(0)), 7);
  optreg::ParamState empty;
  const std::vector<optreg::Optimizer::Slot> missing = {{&a, &states[0]}, {&b, &states[1]}, {&c, &empty}};
  EXPECT_THROW(sdk::advance_counts(missing, kCountingStep), optreg::UsageError);
  EXPECT_EQ(std::get<std::int64_t>(states[0].scalar(0)), 5);
  EXPECT_EQ(std::get<std::int64_t>(states[1].scalar(0)), 7);
}
