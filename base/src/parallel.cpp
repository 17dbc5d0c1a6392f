#include <optreg/parallel.hpp>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <optreg/error.hpp>

namespace optreg {

namespace {

/// The most threads the pool starts (set_num_threads() refuses more).
constexpr std::size_t kMaxThreads = 1024;

std::size_t default_threads() {
  if (const char* env = std::getenv("OPTREG_NUM_THREADS")) {
    // Anything but a whole number in [1, kMaxThreads] is ignored: the pool is made where no
    // error can be reported, and a huge number would start threads until the system refuses.
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && static_cast<unsigned long>(v) <= kMaxThreads) {
      return static_cast<std::size_t>(v);
    }
  }
  return std::max(1U, std::thread::hardware_concurrency());
}

/// A fixed set of workers that run one job at a time; the caller runs range 0 itself.
class Pool {
 public:
  static Pool& instance() {
    static Pool pool;
    return pool;
  }

  std::size_t threads() const noexcept { return threads_.load(std::memory_order_relaxed); }

  void resize(std::size_t n) {
    std::lock_guard busy(busy_);
    stop_workers();
    threads_.store(n == 0 ? default_threads() : n);
    start_workers();
  }

  void run(std::size_t n, std::size_t grain, void (*fn)(void*, std::size_t, std::size_t), void* ctx) {
    if (n == 0) return;
    const std::size_t t = threads();
    const std::size_t parts = std::min(t, std::max<std::size_t>(1, n / std::max<std::size_t>(grain, 1)));
    if (parts <= 1) {
      fn(ctx, 0, n);
      return;
    }
    std::unique_lock busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) {
      fn(ctx, 0, n);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      job_ = Job{n, parts, fn, ctx};
      error_ = nullptr;
      pending_.store(parts - 1);
      ++generation_;
    }
    wake_.notify_all();
    run_part(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_.load() == 0; });
    // Keep no reference to the exception: its class may be a plugin's, whose library may be
    // unloaded once the exception is handled, and releasing it later would run unmapped code.
    if (std::exception_ptr error = std::exchange(error_, nullptr)) std::rethrow_exception(error);
  }

 private:
  struct Job {
    std::size_t n = 0, parts = 0;
    void (*fn)(void*, std::size_t, std::size_t) = nullptr;
    void* ctx = nullptr;
  };

  Pool() : threads_(default_threads()) {
    start_workers();
    ::pthread_atfork(nullptr, nullptr, [] { instance().forget_workers(); });
  }

  /// In a forked child the workers do not exist: run serially, and never join them.
  void forget_workers() {
    threads_.store(1);
    new std::vector<std::thread>(std::move(workers_));  // left alone on purpose
  }
  ~Pool() { stop_workers(); }

  void run_part(std::size_t k) {
    const std::size_t begin = job_.n * k / job_.parts;
    const std::size_t end = job_.n * (k + 1) / job_.parts;
    try {
      job_.fn(job_.ctx, begin, end);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(std::size_t index, std::uint64_t seen) {
    // `seen` is the generation at the worker's start: jobs posted before it are not its own.
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= job_.parts) continue;  // this job needs fewer threads
      }
      run_part(index);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard lock(mutex_);
        done_.notify_one();
      }
    }
  }

  void start_workers() {
    std::uint64_t now = 0;
    {
      std::lock_guard lock(mutex_);
      stopping_ = false;
      now = generation_;
    }
    for (std::size_t i = 1; i < threads(); ++i) workers_.emplace_back([this, i, now] { worker(i, now); });
  }

  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::atomic<std::size_t> threads_;
  std::vector<std::thread> workers_;
  std::mutex busy_;  // held by the one job that owns the workers
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job job_;
  std::exception_ptr error_;
  std::atomic<std::size_t> pending_{0};
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace

std::size_t num_threads() noexcept { return Pool::instance().threads(); }

void set_num_threads(std::size_t n) {
  if (n > kMaxThreads) {
    throw UsageError("set_num_threads: " + std::to_string(n) + " threads is more than " + std::to_string(kMaxThreads));
  }
  Pool::instance().resize(n);
}

void parallel_for(std::size_t n, std::size_t grain, void (*fn)(void*, std::size_t, std::size_t), void* ctx) {
  Pool::instance().run(n, grain, fn, ctx);
}

}  // namespace optreg
