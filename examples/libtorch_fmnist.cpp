// A libtorch (C++) training loop with an optreg optimizer: an MLP (784-256-10) on
// Fashion-MNIST trained with torch::optim::Adam and with optreg's adam loaded by name, from the
// same seed and data order; prints test accuracy, optimizer-step time and total time.
//
//   libtorch_fmnist [--epochs N] [--train-limit N] [--test-limit N] [--threads N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include <optreg/torch.hpp>
#include <optreg/train/data.hpp>

namespace {

struct Mlp : torch::nn::Module {
  Mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(784, 256));
    fc2 = register_module("fc2", torch::nn::Linear(256, 10));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

struct Split {
  at::Tensor x, y;
};

Split split_of(const optreg::train::Dataset& d, std::size_t limit) {
  const auto n = static_cast<std::int64_t>(std::min(limit, d.count));
  const auto features = static_cast<std::int64_t>(d.features);
  at::Tensor x = torch::from_blob(const_cast<float*>(d.x.data()), {n, features}).clone();
  at::Tensor y = torch::from_blob(const_cast<std::uint8_t*>(d.y.data()), {n}, at::kByte).to(at::kLong);
  return {(x - 0.2860) / 0.3530, y};
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Result {
  double loss = 0, accuracy = 0, step_time = 0, total = 0;
};

/// Trains a fresh model; `make` returns the step and zero-grad functions of its optimizer.
template <typename Make>
Result run(const Split& train, const Split& test, int epochs, Make make) {
  torch::manual_seed(1);
  auto model = std::make_shared<Mlp>();
  auto [zero_grad, step] = make(*model);
  auto order = at::make_generator<at::CPUGeneratorImpl>(1);
  Result r;
  const Clock::time_point start = Clock::now();
  const std::int64_t n = train.x.size(0);
  for (int e = 0; e < epochs; ++e) {
    const at::Tensor perm = at::randperm(n, order);
    for (std::int64_t i = 0; i < n; i += 128) {
      const at::Tensor batch = perm.slice(0, i, std::min(i + 128, n));
      zero_grad();
      at::Tensor loss = torch::nn::functional::cross_entropy(model->forward(train.x.index_select(0, batch)),
                                                             train.y.index_select(0, batch));
      loss.backward();
      const Clock::time_point t = Clock::now();
      step();
      r.step_time += seconds_since(t);
      r.loss = loss.item<double>();
    }
  }
  r.total = seconds_since(start);
  torch::NoGradGuard no_grad;
  const at::Tensor predicted = model->forward(test.x).argmax(1);
  r.accuracy = 100.0 * predicted.eq(test.y).sum().item<double>() / static_cast<double>(test.y.size(0));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = 1;
  std::size_t train_limit = 60000, test_limit = 10000;
  int threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--epochs") {
      epochs = std::atoi(v);
    } else if (a == "--train-limit") {
      train_limit = std::strtoul(v, nullptr, 10);
    } else if (a == "--test-limit") {
      test_limit = std::strtoul(v, nullptr, 10);
    } else if (a == "--threads") {
      threads = std::atoi(v);
    } else {
      std::fprintf(stderr, "usage: libtorch_fmnist [--epochs N] [--train-limit N] [--test-limit N] [--threads N]\n");
      return 2;
    }
  }
  try {
    torch::set_num_threads(threads);
    const optreg::train::ImageData data = optreg::train::load_mnist_format(optreg::train::kFashionMnistDir);
    const Split train = split_of(data.train, train_limit), test = split_of(data.test, test_limit);
    optreg::Registry registry;
    registry.load_default();

    std::printf("Fashion-MNIST MLP 784-256-10 in libtorch, %lld training images, %d epoch(s), batch 128\n\n",
                static_cast<long long>(train.x.size(0)), epochs);
    std::printf("%-20s %11s %9s %11s %9s\n", "run", "train loss", "test acc", "step time", "time");
    std::printf("--------------------------------------------------------------------\n");
    const auto print = [](const char* label, const Result& r) {
      std::printf("%-20s %11.4f %8.2f%% %9.3f s %7.2f s\n", label, r.loss, r.accuracy, r.step_time, r.total);
      std::fflush(stdout);
    };
    std::unique_ptr<torch::optim::Adam> adam;
    print("torch::optim::Adam", run(train, test, epochs, [&](Mlp& m) {
            adam = std::make_unique<torch::optim::Adam>(m.parameters(), torch::optim::AdamOptions(1e-3));
            return std::make_pair(std::function<void()>([&] { adam->zero_grad(); }),
                                  std::function<void()>([&] { adam->step(); }));
          }));
    std::unique_ptr<optreg::torch::Optimizer> opt;
    print("optreg adam", run(train, test, epochs, [&](Mlp& m) {
            opt = std::make_unique<optreg::torch::Optimizer>(registry, "adam", m.named_parameters(),
                                                             optreg::Options{{"lr", 1e-3}});
            return std::make_pair(std::function<void()>([&] { opt->zero_grad(); }),
                                  std::function<void()>([&] { opt->step(); }));
          }));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "libtorch_fmnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
