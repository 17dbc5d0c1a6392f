// The shared thread pool: every index once, exceptions, nesting and forked children.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/parallel.hpp>

#include "test_support.hpp"

using optreg_test::ThreadCount;

TEST(ParallelFor, CoversEveryIndexExactlyOnce) {
  for (std::size_t threads : {1, 2, 3, 7}) {
    ThreadCount t(threads);
    for (std::size_t n : {0, 1, 5, 1000, 100003}) {
      std::vector<std::atomic<int>> hits(n);
      optreg::parallel_for(n, 16, [&](std::size_t b, std::size_t e) {
        for (std::size_t i = b; i < e; ++i) ++hits[i];
      });
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " index " << i;
    }
  }
}

TEST(ParallelFor, RethrowsAnExceptionAfterEveryRangeFinished) {
  ThreadCount t(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(optreg::parallel_for(1 << 20, 1, [&](std::size_t b, std::size_t) {
                 ++ran;
                 if (b == 0) throw std::runtime_error("range 0 failed");
               }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 2);
}

TEST(ParallelFor, NestedAndConcurrentCallsRunSeriallyInsteadOfWaiting) {
  ThreadCount t(2);
  std::atomic<long> sum{0};
  optreg::parallel_for(4, 1, [&](std::size_t b, std::size_t e) {
    optreg::parallel_for(1000, 1, [&](std::size_t bb, std::size_t ee) { sum += static_cast<long>(ee - bb); });
    sum += static_cast<long>(e - b);
  });
  EXPECT_EQ(sum.load(), 2 * 1000 + 4);
}

TEST(ParallelFor, AForkedChildRunsSerially) {
  ThreadCount t(2);
  optreg::parallel_for(1000, 1, [](std::size_t, std::size_t) {});  // the workers exist
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    long n = 0;
    optreg::parallel_for(1000, 1, [&](std::size_t b, std::size_t e) { n += static_cast<long>(e - b); });
    _exit(n == 1000 && optreg::num_threads() == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
