// A host program: loads the plugins the registry finds by default, creates SGD by name over
// one parameter, takes one step and prints the parameter.
#include <cstdio>
#include <exception>

#include <optreg/registry.hpp>

int main() {
  try {
    optreg::Registry registry;
    for (const auto& r : registry.load_default()) std::fprintf(stderr, "refused %s: %s\n", r.path.c_str(), r.reason.c_str());
    optreg::Parameter w{"w", optreg::Tensor({2}, {1.0F, 2.0F})};
    w.set_grad(optreg::Tensor({2}, {0.5F, -0.5F}));
    const optreg::OptimizerPtr sgd = registry.create("sgd", {w}, {{"lr", 0.1}});
    sgd->step();
    std::printf("host: sgd stepped w to %.3f %.3f\n", static_cast<double>(w.value().data()[0]),
                static_cast<double>(w.value().data()[1]));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "host: %s\n", e.what());
    return 1;
  }
}
