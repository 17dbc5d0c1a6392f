#pragma once
/// \file
/// The thread pool that step kernels share.
///
/// Contract:
/// - parallel_for() splits [0, n) into at most num_threads() contiguous ranges and runs them on
///   the pool, the calling thread included; it returns when all are done. The split depends
///   only on n, the grain and num_threads(), so elementwise kernels give the same bits with any
///   thread count.
/// - When the pool is busy (another thread's parallel_for is running), the call runs serially
///   on its own thread: concurrent optimizers never wait for each other or deadlock.
/// - A call does not allocate.
/// - An exception thrown by `fn` is rethrown by parallel_for() after every range has finished
///   (the first one; the others are dropped), and the pool keeps no reference to it.

#include <optreg/export.hpp>
#include <cstddef>
#include <utility>

namespace optreg {

/// The threads step kernels use: set_num_threads(), else the environment variable
/// OPTREG_NUM_THREADS (a whole number from 1 to 1024; anything else is ignored), else the
/// hardware's threads.
OPTREG_API std::size_t num_threads() noexcept;
/// Sets the number of threads (0: back to the default; at most 1024, else UsageError). Not to
/// be called while a step runs.
OPTREG_API void set_num_threads(std::size_t n);

/// Runs fn(ctx, begin, end) over contiguous ranges covering [0, n), each at least `grain` long
/// except when n itself is shorter.
OPTREG_API void parallel_for(std::size_t n, std::size_t grain, void (*fn)(void* ctx, std::size_t begin, std::size_t end),
                  void* ctx);

/// parallel_for() with any callable `f(begin, end)`.
template <typename F>
void parallel_for(std::size_t n, std::size_t grain, F&& f) {
  parallel_for(
      n, grain, [](void* ctx, std::size_t b, std::size_t e) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace optreg
