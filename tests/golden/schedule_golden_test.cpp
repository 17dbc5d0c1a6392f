// Replays the PyTorch 1.13 learning-rate schedules of schedules.txt (written by
// generate_schedules.py) through the schedulers plugin and the core's sequential scheduler,
// each built from the same config section the case records, and compares every group's lr
// (and cycled momentum) after every step.
//
// Tolerance: relative 1e-12. The schedulers evaluate the same double expressions in the same
// order as PyTorch with the same libm, so they agree to the last bit on this machine; the
// margin allows a libm whose cos() rounds differently in the last place.
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/config.hpp>
#include <optreg/registry.hpp>

#include "registry_fixture.hpp"
#include "test_support.hpp"

namespace {

constexpr double kRtol = 1e-12;
constexpr std::size_t kMinCases = 32;

struct ScheduleCase {
  std::string name;
  std::string optimizer;
  std::vector<double> lrs;
  std::string scheduler_yaml;
  int steps = 0;
  std::vector<double> metrics;
  std::map<int, std::vector<double>> lr;        // by step
  std::map<int, std::vector<double>> momentum;  // by step, when it cycles
};

std::vector<double> numbers(std::istringstream& in) {
  std::vector<double> out;
  std::string tok;
  while (in >> tok) out.push_back(std::stod(tok));
  return out;
}

std::vector<ScheduleCase> load_cases() {
  std::ifstream in(std::string(OPTREG_TEST_SOURCE_DIR) + "/golden/schedules.txt");
  std::vector<ScheduleCase> out;
  std::string line;
  bool header = false;
  std::size_t declared = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string key;
    s >> key;
    if (!header) {
      if (line != "optreg-schedules 1") throw std::runtime_error("schedules.txt: unknown format line '" + line + "'");
      header = true;
    } else if (key == "cases") {
      s >> declared;
    } else if (key == "case") {
      out.emplace_back();
      s >> out.back().name;
    } else if (key == "optimizer") {
      s >> out.back().optimizer;
    } else if (key == "groups") {
      out.back().lrs = numbers(s);
    } else if (key == "scheduler") {
      out.back().scheduler_yaml = line.substr(line.find(' ') + 1);
    } else if (key == "steps") {
      s >> out.back().steps;
    } else if (key == "metrics") {
      out.back().metrics = numbers(s);
    } else if (key == "lr" || key == "momentum") {
      int step = 0;
      s >> step;
      (key == "lr" ? out.back().lr : out.back().momentum)[step] = numbers(s);
    } else if (key != "end") {
      throw std::runtime_error("schedules.txt: unknown line '" + line + "'");
    }
  }
  if (out.size() != declared) throw std::runtime_error("schedules.txt: the case count does not match its 'cases' line");
  return out;
}

const std::vector<ScheduleCase>& all_cases() {
  static const std::vector<ScheduleCase> cases = load_cases();
  return cases;
}

const optreg::Registry& registry() { return optreg_test::in_tree_registry(); }

std::vector<double> momentum_of(const optreg::Optimizer& opt) {
  std::vector<double> out;
  for (const auto& g : opt.param_groups()) {
    out.push_back(opt.name() == "sgd" ? g.option("momentum").as_float() : g.option("betas").as_float_list().at(0));
  }
  return out;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t g = 0; g < want.size(); ++g) {
    EXPECT_LE(std::fabs(got[g] - want[g]), kRtol * std::fabs(want[g]))
        << what << ", group " << g << ": got " << got[g] << ", PyTorch " << want[g];
  }
}

class Schedule : public ::testing::TestWithParam<ScheduleCase> {};

}  // namespace

TEST_P(Schedule, MatchesPyTorch) {
  const ScheduleCase& c = GetParam();
  std::vector<optreg::ParamGroupSpec> groups;
  for (std::size_t g = 0; g < c.lrs.size(); ++g) {
    groups.push_back({{optreg::Parameter("p" + std::to_string(g), optreg::Tensor({2}))}, {{"lr", c.lrs[g]}}});
  }
  const std::string optimizer_yaml = c.optimizer == "sgd" ? "{name: sgd, momentum: 0.9}" : "{name: adam}";
  const optreg::OptimizerConfig config =
      optreg::parse_config("optimizer: " + optimizer_yaml + "\nscheduler: " + c.scheduler_yaml + "\n", c.name);
  optreg::OptimizerPtr opt = registry().create(c.optimizer, std::move(groups),
                                               c.optimizer == "sgd" ? optreg::Options{{"momentum", 0.9}} : optreg::Options{});
  optreg::SchedulerPtr s = optreg::build_scheduler(config, *opt, registry());
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->needs_metric(), !c.metrics.empty());
  for (int k = 0; k <= c.steps; ++k) {
    if (k > 0) {
      if (s->needs_metric()) {
        s->step(c.metrics.at(static_cast<std::size_t>(k - 1)));
      } else {
        s->step();
      }
    }
    const std::string at = c.name + ", step " + std::to_string(k);
    expect_close(s->last_lr(), c.lr.at(k), at + ", last_lr()");
    std::vector<double> held;
    for (const auto& g : opt->param_groups()) held.push_back(g.option("lr").as_float());
    expect_close(held, c.lr.at(k), at + ", the optimizer's lr");
    if (c.momentum.count(k) != 0) expect_close(momentum_of(*opt), c.momentum.at(k), at + ", momentum");
    EXPECT_EQ(s->last_step(), k);
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, Schedule, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<ScheduleCase>& info) { return info.param.name; });

TEST(ScheduleGolden, EverySchedulerIsCovered) {
  EXPECT_GE(all_cases().size(), kMinCases);
  std::map<std::string, int> seen;
  for (const auto& c : all_cases()) {
    const optreg::OptimizerConfig config = optreg::parse_config("optimizer: {name: sgd}\nscheduler: " + c.scheduler_yaml + "\n");
    ++seen[config.scheduler->name];
  }
  for (const auto& d : registry().list_schedulers()) EXPECT_GE(seen[d.name], 2) << d.name << " needs two cases or more";
}
