// Steps a libtorch tensor with the installed sgd plugin through <optreg/torch.hpp>.
#include <cstdio>
#include <vector>

#include <optreg/torch.hpp>

int main() {
  optreg::Registry registry;
  registry.load_default();
  at::Tensor w = at::ones({2});
  optreg::torch::Optimizer opt(registry, "sgd", std::vector<at::Tensor>{w}, {{"lr", 0.5}});
  w.mutable_grad() = at::ones({2});
  opt.step();
  std::printf("host: libtorch tensor stepped by sgd to %.3f %.3f\n", w[0].item<double>(), w[1].item<double>());
  return 0;
}
