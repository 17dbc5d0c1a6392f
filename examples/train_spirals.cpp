// Trains a two-layer perceptron (2 -> 32 tanh -> 2 softmax) to separate two interleaved
// spirals, once per optimizer named on the command line, and prints the loss as it falls.
// Every optimizer comes from the registry by name; this program knows none of them.
//
//   train_spirals [--plugin-path DIR] [--epochs N] [--config FILE]... [NAME[:key=value,...]]...
//   train_spirals --config examples/configs/spirals-adam.yaml
//   train_spirals sgd:lr=0.1,momentum=0.9 adam:lr=0.01
//
// Exits with 3 when an optimizer fails to halve the initial loss.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <optreg/config.hpp>
#include <optreg/error.hpp>
#include <optreg/registry.hpp>
#include <optreg/text.hpp>

namespace {

struct Dataset {
  std::vector<float> x;  // n x 2
  std::vector<int> y;    // n
  std::size_t n = 0;
};

Dataset make_spirals(std::size_t per_class, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0F, 0.08F);
  Dataset d;
  for (int c = 0; c < 2; ++c) {
    for (std::size_t i = 0; i < per_class; ++i) {
      const float t = 0.25F + 3.0F * static_cast<float>(i) / static_cast<float>(per_class);  // radius and angle
      const float angle = 2.2F * t + static_cast<float>(c) * 3.14159265F;
      d.x.push_back(t * std::cos(angle) / 3.25F + noise(rng));
      d.x.push_back(t * std::sin(angle) / 3.25F + noise(rng));
      d.y.push_back(c);
    }
  }
  d.n = d.y.size();
  return d;
}

constexpr std::size_t kIn = 2;
constexpr std::size_t kHidden = 32;
constexpr std::size_t kOut = 2;

/// The model's parameters, initialised the same way for every optimizer.
struct Model {
  optreg::Parameter w1{"layer1.weight", optreg::Tensor({kHidden, kIn})};
  optreg::Parameter b1{"layer1.bias", optreg::Tensor({kHidden})};
  optreg::Parameter w2{"layer2.weight", optreg::Tensor({kOut, kHidden})};
  optreg::Parameter b2{"layer2.bias", optreg::Tensor({kOut})};

  explicit Model(std::uint32_t seed) {
    std::mt19937 rng(seed);
    auto init = [&](optreg::Tensor& t, std::size_t fan_in) {
      std::uniform_real_distribution<float> u(-1.0F / std::sqrt(static_cast<float>(fan_in)),
                                              1.0F / std::sqrt(static_cast<float>(fan_in)));
      for (std::size_t i = 0; i < t.numel(); ++i) t[i] = 3.0F * u(rng);
    };
    init(w1.value(), kIn);
    init(b1.value(), kIn);
    init(w2.value(), kHidden);
    init(b2.value(), kHidden);
  }

  std::vector<optreg::Parameter> parameters() const { return {w1, b1, w2, b2}; }

  /// Mean cross-entropy over the dataset and accuracy; accumulates gradients when `backward`.
  std::pair<double, double> run(const Dataset& d, bool backward) {
    optreg::Tensor gw1({kHidden, kIn}), gb1({kHidden}), gw2({kOut, kHidden}), gb2({kOut});
    double loss = 0.0;
    std::size_t correct = 0;
    float h[kHidden];
    for (std::size_t s = 0; s < d.n; ++s) {
      const float* x = &d.x[2 * s];
      for (std::size_t j = 0; j < kHidden; ++j) {
        float a = b1.value()[j];
        for (std::size_t k = 0; k < kIn; ++k) a += w1.value()[j * kIn + k] * x[k];
        h[j] = std::tanh(a);
      }
      float logits[kOut];
      for (std::size_t o = 0; o < kOut; ++o) {
        float a = b2.value()[o];
        for (std::size_t j = 0; j < kHidden; ++j) a += w2.value()[o * kHidden + j] * h[j];
        logits[o] = a;
      }
      const float m = std::max(logits[0], logits[1]);
      const float z = std::exp(logits[0] - m) + std::exp(logits[1] - m);
      float p[kOut];
      for (std::size_t o = 0; o < kOut; ++o) p[o] = std::exp(logits[o] - m) / z;
      const auto label = static_cast<std::size_t>(d.y[s]);
      loss -= std::log(std::max(p[label], 1e-12F));
      correct += (p[label] >= 0.5F) ? 1 : 0;
      if (!backward) continue;
      const float scale = 1.0F / static_cast<float>(d.n);
      float dh[kHidden] = {};
      for (std::size_t o = 0; o < kOut; ++o) {
        const float dl = (p[o] - (o == label ? 1.0F : 0.0F)) * scale;
        gb2[o] += dl;
        for (std::size_t j = 0; j < kHidden; ++j) {
          gw2[o * kHidden + j] += dl * h[j];
          dh[j] += dl * w2.value()[o * kHidden + j];
        }
      }
      for (std::size_t j = 0; j < kHidden; ++j) {
        const float da = dh[j] * (1.0F - h[j] * h[j]);
        gb1[j] += da;
        for (std::size_t k = 0; k < kIn; ++k) gw1[j * kIn + k] += da * x[k];
      }
    }
    if (backward) {
      w1.accumulate_grad(gw1);
      b1.accumulate_grad(gb1);
      w2.accumulate_grad(gw2);
      b2.accumulate_grad(gb2);
    }
    return {loss / static_cast<double>(d.n), static_cast<double>(correct) / static_cast<double>(d.n)};
  }
};

/// "adam:lr=0.01,amsgrad=true" -> name and options (numbers, true/false).
std::pair<std::string, optreg::Options> parse_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  std::pair<std::string, optreg::Options> out{spec.substr(0, colon), {}};
  if (colon == std::string::npos) return out;
  std::string rest = spec.substr(colon + 1);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string kv = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const auto eq = kv.find('=');
    if (eq == std::string::npos) throw optreg::UsageError("expected key=value in '" + spec + "', got '" + kv + "'");
    const std::string key = kv.substr(0, eq);
    const std::string value = kv.substr(eq + 1);
    if (value == "true" || value == "false") {
      out.second[key] = optreg::Value(value == "true");
    } else {
      char* end = nullptr;
      const double d = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0') throw optreg::UsageError("'" + kv + "' in '" + spec + "' is not a number");
      out.second[key] = optreg::Value(d);
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> specs;
  std::vector<std::string> configs;
  std::vector<std::string> plugin_paths;
  int epochs = 300;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plugin-path" && i + 1 < argc) {
      plugin_paths.emplace_back(argv[++i]);
    } else if (a == "--config" && i + 1 < argc) {
      configs.emplace_back(argv[++i]);
    } else if (a == "--epochs" && i + 1 < argc) {
      epochs = std::atoi(argv[++i]);
    } else {
      specs.push_back(a);
    }
  }
  if (specs.empty() && configs.empty()) specs = {"sgd:lr=0.5,momentum=0.9", "adam:lr=0.02"};
  bool failed = false;
  try {
    optreg::Registry registry;
    for (const auto& p : plugin_paths) registry.load_directory(p);
    // Paths, reasons and names come from files: printed through the rule of <optreg/text.hpp>.
    const auto refused = [](const optreg::Refusal& x) {
      std::fprintf(stderr, "refused %s: %s\n", optreg::escape_text(x.path).c_str(),
                   optreg::escape_message(x.reason).c_str());
    };
    for (const auto& r : registry.load_default()) refused(r);
    const Dataset data = make_spirals(200, 7);
    // Each run is a config file or a NAME:key=value spec; both give the same kind of optimizer.
    std::vector<std::string> runs = configs;
    runs.insert(runs.end(), specs.begin(), specs.end());
    for (std::size_t r = 0; r < runs.size(); ++r) {
      const std::string& spec = runs[r];
      Model model(42);
      optreg::OptimizerPtr opt;
      if (r < configs.size()) {
        const optreg::OptimizerConfig config = optreg::load_config(spec);
        for (const auto& x : optreg::load_config_plugins(config, registry)) refused(x);
        opt = optreg::build_optimizer(config, model.parameters(), registry);
      } else {
        auto [name, options] = parse_spec(spec);
        opt = registry.create(name, model.parameters(), options);
      }
      std::printf("== %s (plugin %s %s)\n", optreg::escape_text(spec).c_str(), opt->name().c_str(),
                  optreg::escape_text(opt->plugin_version()).c_str());
      const auto [loss0, acc0] = model.run(data, false);
      std::printf("  epoch %4d  loss %.4f  accuracy %5.1f%%\n", 0, loss0, 100.0 * acc0);
      double loss = loss0;
      double acc = acc0;
      for (int e = 1; e <= epochs; ++e) {
        std::tie(loss, acc) = model.run(data, true);
        opt->step().clear_grad();
        if (e % (epochs / 6 > 0 ? epochs / 6 : 1) == 0) {
          std::printf("  epoch %4d  loss %.4f  accuracy %5.1f%%\n", e, loss, 100.0 * acc);
        }
      }
      std::printf("  loss fell from %.4f to %.4f\n", loss0, loss);
      if (!(loss < 0.5 * loss0)) {
        std::fprintf(stderr, "train_spirals: %s did not halve the loss (%.4f -> %.4f)\n",
                     optreg::escape_text(spec).c_str(), loss0, loss);
        failed = true;
      }
    }
  } catch (const optreg::Error& e) {
    std::fprintf(stderr, "train_spirals: %s\n", e.what());
    return 1;
  }
  return failed ? 3 : 0;
}
