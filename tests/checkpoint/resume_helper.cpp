// Runs an optimizer on a fixed, deterministic problem and saves or resumes checkpoints, so that
// resume_test can compare a run interrupted by a process restart with an uninterrupted one.
//
//   resume_helper --plugins DIR run NAME [KEY=VALUE]... [--group [KEY=VALUE]...]... --steps N --out FILE
//   resume_helper --plugins DIR resume FILE --steps K --out FILE2
//
// `run` creates optimizer NAME with the KEY=VALUE options as its defaults, over five fixed
// parameters; with G `--group` sections, parameter k goes to group k % G, with that section's
// options as the group's overrides. It takes N steps and saves the optimizer with save_optimizer,
// recording the configuration and the step count in the metadata. `resume` rebuilds the same
// optimizer from FILE's metadata, loads FILE with load_optimizer, takes K more steps and saves.
//
// VALUE is `true`/`false`, an integer, a float (strtod syntax), a list `[a,b,...]` of floats, or
// else a string. The gradient of each parameter is computed from its value, so the trajectory
// depends on the optimizer's state. The parameter named "frozen" never has a gradient. A
// `--group` section with `optimizer=OTHER` makes a composite (make_composite()): NAME with the
// defaults given, and OTHER at its defaults for the groups that name it. A wrapper NAME
// (lookahead) wraps the optimizer `inner=OTHER` names (adam by default).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>

namespace {

struct Usage {
  std::string what;
};

optreg::Value parse_value(const std::string& text) {
  if (text == "true") return true;
  if (text == "false") return false;
  if (!text.empty() && text.front() == '[') {
    if (text.back() != ']') throw Usage{"a list must end with ']': " + text};
    std::vector<double> list;
    const std::string inner = text.substr(1, text.size() - 2);
    std::size_t pos = 0;
    while (pos < inner.size()) {
      const std::size_t comma = std::min(inner.find(',', pos), inner.size());
      const std::string item = inner.substr(pos, comma - pos);
      char* end = nullptr;
      const double d = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0') throw Usage{"not a float in a list: '" + item + "'"};
      list.push_back(d);
      pos = comma + 1;
    }
    return list;
  }
  std::int64_t i = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
  if (!text.empty() && ec == std::errc() && ptr == text.data() + text.size()) return i;
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (!text.empty() && *end == '\0') return d;
  return text;
}

/// The optimizer and its configuration: defaults, then one options set per `--group`.
struct Config {
  std::string name;
  std::vector<std::string> tokens;  // as given, to be recorded in the checkpoint
  optreg::Options defaults;
  std::vector<optreg::Options> groups;
};

Config parse_config(const std::string& name, const std::vector<std::string>& tokens) {
  Config c;
  c.name = name;
  c.tokens = tokens;
  for (const std::string& t : tokens) {
    if (t == "--group") {
      c.groups.emplace_back();
      continue;
    }
    const std::size_t eq = t.find('=');
    if (eq == std::string::npos || eq == 0) throw Usage{"expected KEY=VALUE or --group, got '" + t + "'"};
    optreg::Options& target = c.groups.empty() ? c.defaults : c.groups.back();
    target[t.substr(0, eq)] = parse_value(t.substr(eq + 1));
  }
  return c;
}

std::string join(const std::vector<std::string>& tokens) {
  std::string s;
  for (const auto& t : tokens) s += (s.empty() ? "" : " ") + t;
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t space = std::min(s.find(' ', pos), s.size());
    if (space > pos) out.push_back(s.substr(pos, space - pos));
    pos = space + 1;
  }
  return out;
}

/// Five parameters with fixed values; "frozen" never receives a gradient. For an optimizer of
/// matrices only, the vectors are columns.
std::vector<optreg::Parameter> make_parameters(bool matrices) {
  const std::int64_t one = 1;
  const std::vector<std::pair<std::string, optreg::Shape>> specs = {
      {"layer1.weight", {4, 3}},
      {"layer1.bias", matrices ? optreg::Shape{3, one} : optreg::Shape{3}},
      {"layer2.weight", {3, 2}},
      {"frozen", matrices ? optreg::Shape{5, one} : optreg::Shape{5}},
      {"layer2.bias", matrices ? optreg::Shape{2, one} : optreg::Shape{2}}};
  std::vector<optreg::Parameter> params;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    optreg::Tensor t(specs[k].second);
    for (std::size_t i = 0; i < t.numel(); ++i) {
      t[i] = static_cast<float>(0.8 * std::sin(1.3 * static_cast<double>(k) + 0.7 * static_cast<double>(i) + 0.2));
    }
    params.emplace_back(specs[k].first, t);
  }
  return params;
}

optreg::OptimizerPtr build(const optreg::Registry& registry, const Config& c) {
  // A group whose options name another optimizer (`optimizer=NAME`) makes create() build a
  // composite; the parameters are matrices when any of its optimizers steps matrices only.
  std::vector<std::string> parts{c.name};
  for (const auto& o : c.groups) {
    const auto it = o.find("optimizer");
    if (it != o.end() && std::find(parts.begin(), parts.end(), it->second.as_string()) == parts.end()) {
      parts.push_back(it->second.as_string());
    }
  }
  bool matrices = false;
  for (const auto& name : parts) {
    const auto d = registry.find(name);
    matrices = matrices || (d && (d->flags & optreg::abi::kOptimizerMatricesOnly) != 0);
  }
  std::vector<optreg::Parameter> params = make_parameters(matrices);
  const std::size_t g = c.groups.empty() ? 1 : c.groups.size();
  if (g > params.size()) throw Usage{"at most " + std::to_string(params.size()) + " groups"};
  std::vector<optreg::ParamGroupSpec> groups(g);
  for (std::size_t k = 0; k < params.size(); ++k) groups[k % g].params.push_back(params[k]);
  for (std::size_t i = 0; i < c.groups.size(); ++i) groups[i].options = c.groups[i];
  const auto d = registry.find(c.name);
  if (!d || (d->flags & optreg::abi::kOptimizerWrapper) == 0) return registry.create(c.name, std::move(groups), c.defaults);
  // A wrapper wraps the optimizer that `inner` names (adam by default); the defaults that are
  // the wrapper's own options are its, the others the inner optimizer's.
  optreg::Options wrapper_options;
  optreg::Options inner_options;
  std::string inner = "adam";
  for (const auto& [key, value] : c.defaults) {
    if (key == "inner") {
      inner = value.as_string();
    } else if (d->schema->find(key) != nullptr && key != "master_weights" && key != "rounding" &&
               key != "rounding_seed" && key != "state_dtype") {
      wrapper_options[key] = value;
    } else {
      inner_options[key] = value;
    }
  }
  return registry.create_wrapped(c.name, wrapper_options, inner, std::move(groups), inner_options);
}

/// Sets the gradient of f(x) = sum((1 + i % 3) / 2 * x^2 + sin(3x + i) / 4 + x^4 / 8) at `x`;
/// returns f(x).
double set_gradient(optreg::Parameter& p) {
  const optreg::Tensor& x = p.value();
  optreg::Tensor g(x.shape());
  double f = 0;
  for (std::size_t i = 0; i < x.numel(); ++i) {
    const double v = x[i];
    const double a = 1.0 + static_cast<double>(i % 3);
    g[i] = static_cast<float>(a * v + 0.75 * std::cos(3.0 * v + static_cast<double>(i)) + 0.5 * v * v * v);
    f += a / 2 * v * v + std::sin(3.0 * v + static_cast<double>(i)) / 4 + v * v * v * v / 8;
  }
  p.set_grad(g);
  return f;
}

/// `steps` steps on f over every parameter but "frozen"; an optimizer that re-evaluates the
/// loss gets the closure that evaluates f.
void take_steps(optreg::Optimizer& opt, std::int64_t steps) {
  std::vector<optreg::Parameter> params = opt.parameters();
  const optreg::Closure closure = [&] {
    double f = 0;
    for (optreg::Parameter& p : params) {
      if (p.name() != "frozen") f += set_gradient(p);
    }
    return f;
  };
  for (std::int64_t s = 0; s < steps; ++s) {
    if (opt.needs_closure()) {
      opt.step(closure);
    } else {
      closure();
      opt.step();
    }
    opt.clear_grad();
  }
}

void save(const std::string& path, const optreg::Optimizer& opt, const Config& c, std::int64_t steps) {
  optreg::save_optimizer(path, opt, {{"optimizer", c.name}, {"config", join(c.tokens)}, {"steps", steps}});
}

std::int64_t parse_count(const std::string& text) {
  std::int64_t n = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || ptr != text.data() + text.size() || n < 0) throw Usage{"not a step count: '" + text + "'"};
  return n;
}

/// Takes `--steps N --out FILE` off the end of `args`.
void take_tail(std::vector<std::string>& args, std::int64_t& steps, std::string& out) {
  if (args.size() < 4 || args[args.size() - 4] != "--steps" || args[args.size() - 2] != "--out") {
    throw Usage{"the arguments must end with --steps N --out FILE"};
  }
  steps = parse_count(args[args.size() - 3]);
  out = args.back();
  args.resize(args.size() - 4);
}

int run(std::vector<std::string> args) {
  if (args.size() < 2 || args[0] != "--plugins") throw Usage{"the first argument must be --plugins DIR"};
  optreg::Registry registry;
  for (const auto& r : registry.load_directory(args[1])) std::cerr << "refused: " << r.path << ": " << r.reason << "\n";
  args.erase(args.begin(), args.begin() + 2);
  std::int64_t steps = 0;
  std::string out;
  take_tail(args, steps, out);
  if (args.size() >= 2 && args[0] == "run") {
    const Config c = parse_config(args[1], std::vector<std::string>(args.begin() + 2, args.end()));
    optreg::OptimizerPtr opt = build(registry, c);
    take_steps(*opt, steps);
    save(out, *opt, c, steps);
    return 0;
  }
  if (args.size() == 2 && args[0] == "resume") {
    const optreg::Options meta = optreg::read_checkpoint(args[1]).metadata;
    const Config c = parse_config(meta.at("optimizer").as_string(), split(meta.at("config").as_string()));
    optreg::OptimizerPtr opt = build(registry, c);
    const optreg::Options loaded = optreg::load_optimizer(args[1], *opt);
    const std::int64_t done = loaded.at("steps").as_int();
    take_steps(*opt, steps);
    save(out, *opt, c, done + steps);
    return 0;
  }
  throw Usage{"expected 'run NAME ...' or 'resume FILE'"};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const Usage& u) {
    std::cerr << "resume_helper: " << u.what
              << "\nusage: resume_helper --plugins DIR run NAME [KEY=VALUE]... [--group [KEY=VALUE]...]... --steps N "
                 "--out FILE\n       resume_helper --plugins DIR resume FILE --steps K --out FILE2\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "resume_helper: " << e.what() << "\n";
    return 1;
  }
}
