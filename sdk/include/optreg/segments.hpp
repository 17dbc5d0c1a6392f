#pragma once
/// \file
/// Per-tensor reductions (norms, sums) that give the same bits with any thread count, for
/// optimizers whose update of a tensor depends on a norm of the whole tensor (LAMB, LARS).
///
/// Contract:
/// - plan() cuts each of a group's tensors into segments of at most Segments::kLength (or a
///   given number of) elements, counted from the tensor's first element. The cut depends only
///   on the tensors' sizes, never on the thread count.
/// - run() calls the kernel once per segment, each segment wholly on one thread, in parallel;
///   a kernel that sums its segment in a fixed order therefore gives the same partial sum with
///   any thread count, and sum() adds a tensor's partial sums in segment order.
/// - After the first step over the same tensors, plan() and run() do not allocate.

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include <optreg/parallel.hpp>

namespace optreg::sdk {

/// The segments of one step's tensors; keep one as a member of the optimizer.
class Segments {
 public:
  /// Elements per segment (the last segment of a tensor may be shorter).
  static constexpr std::size_t kLength = std::size_t{1} << 14;

  /// Plans the segments of `count` tensors, tensor i holding `size_of(i)` elements.
  template <typename Size>
  void plan(std::size_t count, Size&& size_of) {
    plan(count, std::forward<Size>(size_of), [](std::size_t) { return kLength; });
  }

  /// Plans the segments of `count` tensors, tensor i holding `size_of(i)` elements in
  /// segments of `length_of(i)` elements (a multiple of a row length, say, so that every
  /// segment holds whole rows).
  template <typename Size, typename Length>
  void plan(std::size_t count, Size&& size_of, Length&& length_of) {
    first_.resize(count + 1);
    start_.clear();
    piece_.clear();
    std::size_t offset = 0;
    for (std::size_t i = 0; i < count; ++i) {
      first_[i] = start_.size();
      const std::size_t n = size_of(i);
      const std::size_t length = std::max<std::size_t>(1, length_of(i));
      for (std::size_t b = 0; b < n; b += length) {
        start_.push_back(offset + b);
        piece_.push_back(i);
      }
      offset += n;
    }
    first_[count] = start_.size();
    start_.push_back(offset);  // the end of the last segment
  }

  /// The number of segments.
  std::size_t size() const noexcept { return piece_.size(); }
  /// The segments of tensor i are [first(i), first(i + 1)).
  std::size_t first(std::size_t i) const noexcept { return first_[i]; }

  /// Calls `kernel(segment, tensor, begin, end)` for every segment, in parallel: elements
  /// [begin, end) of the tensor, each segment on one thread. The threads get about equal
  /// numbers of elements.
  template <typename F>
  void run(F&& kernel) const {
    parallel_for(start_.back(), kLength, [&](std::size_t begin, std::size_t end) {
      // Each segment belongs to the range that holds its first element.
      auto s = static_cast<std::size_t>(std::lower_bound(start_.begin(), start_.end() - 1, begin) - start_.begin());
      for (; s < piece_.size() && start_[s] < end; ++s) {
        const std::size_t i = piece_[s];
        const std::size_t at = start_[s] - start_[first_[i]];
        kernel(s, i, at, at + (start_[s + 1] - start_[s]));
      }
    });
  }

  /// The sum of `partial[s * stride + k]` over the segments s of tensor i, in segment order.
  double sum(const std::vector<double>& partial, std::size_t i, std::size_t stride = 1, std::size_t k = 0) const {
    double total = 0.0;
    for (std::size_t s = first_[i]; s < first_[i + 1]; ++s) total += partial[s * stride + k];
    return total;
  }

 private:
  std::vector<std::size_t> first_;  // first_[i]: the first segment of tensor i
  std::vector<std::size_t> start_;  // start_[s]: the first element of segment s, counted over all tensors
  std::vector<std::size_t> piece_;  // piece_[s]: the tensor of segment s
};

/// The sum of squares of x[begin, end) in double, in an order fixed by the indices alone (eight
/// running sums, then a fixed tree), so that every build and thread count gives the same bits.
/// Called from an OPTREG_KERNEL function, it is compiled for that function's instruction set.
inline double sum_of_squares(const float* x, std::size_t begin, std::size_t end) noexcept {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (std::size_t k = 0; k < 8; ++k) {
      const double v = x[i + k];
      lane[k] += v * v;
    }
  }
  for (std::size_t k = 0; i < end; ++i, ++k) {
    const double v = x[i];
    lane[k] += v * v;
  }
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

}  // namespace optreg::sdk
