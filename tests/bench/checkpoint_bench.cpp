// Checkpoint throughput: saves and loads the state of a 50-million-element Adam optimizer and
// compares each with a plain write()/read() of the same bytes to the same folder, measured in
// the same run. Both sides fsync before they stop the clock on writing, and both read into
// memory they allocate as they read (a loaded checkpoint's tensors are new memory).
//
//   checkpoint_bench [FOLDER] [--elements N] [--repeat R]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (w <= 0) {
      std::perror("write");
      std::exit(1);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
    if (r <= 0) {
      std::perror("read");
      std::exit(1);
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string folder = std::filesystem::temp_directory_path().string();
  std::size_t elements = 50'000'000;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--elements" && i + 1 < argc) {
      elements = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--repeat" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      folder = a;
    }
  }

  optreg::Registry registry;
  registry.load_default();
  // Five parameters of equal size, so that the state has ten large tensors.
  std::vector<optreg::Parameter> params;
  for (int i = 0; i < 5; ++i) {
    params.emplace_back("p" + std::to_string(i), optreg::Tensor({static_cast<std::int64_t>(elements / 5)}, 0.5F));
  }
  auto opt = registry.create("adam", params);
  for (auto& p : params) p.accumulate_grad(optreg::Tensor(p.value().shape(), 0.25F));
  opt->step().clear_grad();
  const optreg::StateDict state = opt->state_dict(optreg::TensorCopy::Shared);

  std::size_t raw = 0;
  for (const auto& [id, s] : state.state) {
    for (const auto& [name, t] : s.tensors()) raw += t.numel() * sizeof(float);
  }
  const std::string ckpt = folder + "/optreg-bench.ckpt";
  const std::string plain = folder + "/optreg-bench.raw";

  double best_save = 1e9, best_load = 1e9, best_write = 1e9, best_read = 1e9;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = Clock::now();
    optreg::save_checkpoint(ckpt, state);
    best_save = std::min(best_save, seconds_since(t0));

    t0 = Clock::now();
    const optreg::Checkpoint loaded = optreg::read_checkpoint(ckpt);
    best_load = std::min(best_load, seconds_since(t0));

    t0 = Clock::now();
    {
      const int fd = ::open(plain.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      for (const auto& [id, s] : state.state) {
        for (const auto& [name, t] : s.tensors()) {
          write_all(fd, reinterpret_cast<const char*>(t.data()), t.numel() * sizeof(float));
        }
      }
      ::fsync(fd);
      ::close(fd);
    }
    best_write = std::min(best_write, seconds_since(t0));

    t0 = Clock::now();
    {
      std::unique_ptr<char[]> buffer(new char[raw]);  // fresh, untouched memory
      const int fd = ::open(plain.c_str(), O_RDONLY);
      read_all(fd, buffer.get(), raw);
      ::close(fd);
    }
    best_read = std::min(best_read, seconds_since(t0));
  }
  const auto file_size = std::filesystem::file_size(ckpt);
  std::filesystem::remove(ckpt);
  std::filesystem::remove(plain);

  const double gb = static_cast<double>(raw) / 1e9;
  std::printf("checkpoint of adam over %zu elements: %.1f MB of state tensors, folder %s, best of %d\n", elements,
              static_cast<double>(raw) / 1e6, folder.c_str(), repeat);
  std::printf("  save  %7.3f s  %6.2f GB/s   plain write+fsync %7.3f s  %6.2f GB/s   ratio %.2f\n", best_save,
              gb / best_save, best_write, gb / best_write, best_write / best_save);
  std::printf("  load  %7.3f s  %6.2f GB/s   plain read        %7.3f s  %6.2f GB/s   ratio %.2f\n", best_load,
              gb / best_load, best_read, gb / best_read, best_read / best_load);
  std::printf("  file  %llu bytes = raw tensor bytes + %.4f%%\n", static_cast<unsigned long long>(file_size),
              100.0 * (static_cast<double>(file_size) - static_cast<double>(raw)) / static_cast<double>(raw));
  return 0;
}
