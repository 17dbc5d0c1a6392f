// Writes the seed corpus of checkpoint_fuzz: a few small, valid checkpoints of the in-tree
// optimizers, the same bytes on every run, each read back before it counts.
//   checkpoint_fuzz_seeds <folder> <sgd plugin> <adam plugin>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

namespace {

std::vector<optreg::Parameter> params(int n) {
  std::vector<optreg::Parameter> out;
  for (int i = 0; i < n; ++i) {
    const std::int64_t len = 2 + i;
    std::vector<float> v(static_cast<std::size_t>(len * 2));
    for (std::size_t j = 0; j < v.size(); ++j) v[j] = 0.25F * static_cast<float>(j) - static_cast<float>(i);
    out.emplace_back("p" + std::to_string(i), optreg::Tensor({len, 2}, v));
  }
  out.emplace_back("scalar", optreg::Tensor(optreg::Shape{}, {0.5F}));
  return out;
}

void train(optreg::Optimizer& opt, int steps) {
  for (int s = 0; s < steps; ++s) {
    for (optreg::Parameter p : opt.parameters()) {
      p.accumulate_grad(optreg::Tensor(p.value().shape(), 0.1F * static_cast<float>(s + 1)).to(p.value().dtype()));
    }
    opt.step().clear_grad();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: checkpoint_fuzz_seeds <folder> <sgd plugin> <adam plugin>\n";
    return 2;
  }
  const std::string dir = argv[1];
  try {
    std::filesystem::create_directories(dir);
    optreg::Registry registry;
    registry.load_file(argv[2]);
    registry.load_file(argv[3]);

    auto sgd = registry.create("sgd", params(1), {{"lr", 0.1}, {"momentum", 0.9}});
    train(*sgd, 2);
    optreg::save_optimizer(dir + "/sgd-momentum.ckpt", *sgd, {{"step", 2}});

    auto adam = registry.create("adam", params(2), {{"lr", 0.01}, {"amsgrad", true}});
    train(*adam, 3);
    optreg::save_optimizer(dir + "/adam-amsgrad.ckpt", *adam, {{"step", 3}, {"run", "seed"}, {"ratio", 0.5}});

    std::vector<optreg::Parameter> p = params(2);
    auto groups = registry.create("adam", std::vector<optreg::ParamGroupSpec>{{{p[0], p[1]}, {}}, {{p[2]}, {{"lr", 0.5}}}});
    train(*groups, 1);
    optreg::save_optimizer(dir + "/adam-two-groups.ckpt", *groups);

    // Quantized and bfloat16 moments, and bfloat16 parameters with float32 master weights.
    auto int8 = registry.create("adam", params(2), {{"lr", 0.01}, {"state_dtype", "int8"}});
    train(*int8, 2);
    optreg::save_optimizer(dir + "/adam-int8-state.ckpt", *int8);
    std::vector<optreg::Parameter> half = params(1);
    for (optreg::Parameter& h : half) h.value() = h.value().to(optreg::DType::BFloat16);
    auto master = registry.create("adam", half, {{"lr", 0.01}, {"state_dtype", "bfloat16"}, {"master_weights", true}});
    train(*master, 2);
    optreg::save_optimizer(dir + "/adam-bfloat16-master.ckpt", *master);

    optreg::save_checkpoint(dir + "/state-dict-only.ckpt", sgd->state_dict());
    optreg::save_checkpoint(dir + "/empty.ckpt", optreg::Checkpoint{});

    int seeds = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      optreg::read_checkpoint(entry.path().string());
      ++seeds;
    }
    std::cout << seeds << " seed checkpoints in " << dir << "\n";
    if (seeds != 7) return 1;
  } catch (const std::exception& e) {
    std::cerr << "checkpoint_fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
