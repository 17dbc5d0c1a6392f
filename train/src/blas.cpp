// OpenBLAS, loaded when a problem first needs it (see blas.hpp).
#include "blas.hpp"

#include <dlfcn.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <optreg/error.hpp>

namespace optreg::train {

namespace {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
/// OpenBLAS 0.3's work buffer, one per thread (BUFFER_SIZE on x86-64, plus its alignment).
constexpr std::uint64_t kBuffer = 128 * kMiB + kMiB;
/// What a worker thread adds besides its buffer: glibc's malloc arena for the thread.
constexpr std::uint64_t kArena = 64 * kMiB;
/// The library itself and what it maps besides the buffers (libgfortran, tables).
constexpr std::uint64_t kLibrary = 96 * kMiB;

/// The threads OpenBLAS will start: OPENBLAS_NUM_THREADS (1 when unset, see blas()), at most
/// one per CPU this process may run on.
int openblas_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? std::max(1, CPU_COUNT(&set)) : 1024;
  long requested = 1;
  if (const char* env = std::getenv("OPENBLAS_NUM_THREADS")) {
    requested = std::strtol(env, nullptr, 10);
    if (requested <= 0) requested = cpus;  // OpenBLAS then falls back to other variables or the CPUs
  }
  return static_cast<int>(std::min<long>(requested, cpus));
}

/// The address space OpenBLAS takes when it starts with `threads` threads and the first product runs.
std::uint64_t address_space_needed(int threads) {
  rlimit stack{};
  std::uint64_t stack_size = 8 * kMiB;  // glibc's default thread stack follows RLIMIT_STACK
  if (::getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur != RLIM_INFINITY) stack_size = stack.rlim_cur;
  return kLibrary + kBuffer + static_cast<std::uint64_t>(threads - 1) * (kBuffer + kArena + stack_size);
}

template <typename F>
void resolve(void* library, const char* name, F& f) {
  void* symbol = ::dlsym(library, name);
  if (symbol == nullptr) throw Error(std::string("OpenBLAS (") + OPTREG_OPENBLAS_SONAME + ") has no " + name);
  static_assert(sizeof f == sizeof symbol);
  std::memcpy(&f, &symbol, sizeof f);
}

/// Loads the library; throws Error naming `user`.
Blas load(const std::string& user) {
  const std::string what = user + " needs OpenBLAS (" + OPTREG_OPENBLAS_SONAME + ")";
  const int threads = openblas_threads();
  const std::uint64_t needed = address_space_needed(threads);
  // Try to map what OpenBLAS will take before it starts: a thread of it that cannot get its
  // buffer never returns, so it must not start short of memory.
  void* probe = ::mmap(nullptr, needed, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (probe == MAP_FAILED) {
    const int error = errno;
    throw Error(what + ", which takes about " + std::to_string(needed / kMiB) + " MiB of address space with " +
                std::to_string(threads) + (threads == 1 ? " thread" : " threads") +
                ", and this process cannot map that much (" + std::strerror(error) + "); raise its memory limit" +
                (threads > 1 ? " or set OPENBLAS_NUM_THREADS=1" : std::string(" (ulimit -v)")));
  }
  ::munmap(probe, needed);

  // One thread unless OPENBLAS_NUM_THREADS says otherwise: OpenBLAS splits a product
  // differently for each thread count, which changes the bits, and the products here are small
  // enough that more threads gain little. OpenBLAS reads the variable only while it loads, so
  // it is set for that moment and the environment is left as it was.
  const bool set_threads = std::getenv("OPENBLAS_NUM_THREADS") == nullptr;
  if (set_threads) ::setenv("OPENBLAS_NUM_THREADS", "1", 0);
  void* library = ::dlopen(OPTREG_OPENBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
  const char* failure = library == nullptr ? ::dlerror() : nullptr;
  if (set_threads) ::unsetenv("OPENBLAS_NUM_THREADS");
  if (library == nullptr) {
    throw Error(what + ", which cannot be loaded: " + (failure != nullptr ? failure : "unknown error") +
                " (Debian package libopenblas0)");
  }
  // Never unloaded: its threads live until the process ends.
  Blas b;
  resolve(library, "cblas_ddot", b.ddot);
  resolve(library, "cblas_daxpy", b.daxpy);
  resolve(library, "cblas_dscal", b.dscal);
  resolve(library, "cblas_dnrm2", b.dnrm2);
  resolve(library, "cblas_dgemm", b.dgemm);
  resolve(library, "cblas_sgemm", b.sgemm);
  resolve(library, "cblas_sgemv", b.sgemv);
  // The calling thread takes its work buffer at its first product: take it now, while the
  // memory checked above is still there.
  double d = 1;
  b.dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0, &d, 1, &d, 1, 0.0, &d, 1);
  float f = 1;
  b.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0F, &f, 1, &f, 1, 0.0F, &f, 1);
  return b;
}

}  // namespace

const Blas& blas(const std::string& user) {
  static std::mutex mutex;
  static Blas loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded.dgemm == nullptr) loaded = load(user);
  return loaded;
}

}  // namespace optreg::train
