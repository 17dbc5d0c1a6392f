// The sharded optimizer's figures (docs/distributed.md), under mpirun:
//   mpirun --oversubscribe -np 4 build/bin/sharded_bench [MILLIONS_OF_PARAMETERS]
// For 1, 2 and 4 ranks (the world's first ranks): Adam's state per rank against one process's,
// the step time and where it goes, and the bandwidth of the gradient exchange (reduce-scatter)
// and the gather against Open MPI's own point-to-point bandwidth for the same traffic (every
// rank sending its share to every other at once, MPI_Isend/MPI_Irecv/MPI_Waitall), measured in
// the same run.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <optreg/mpi.hpp>
#include <optreg/registry.hpp>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Seconds for every rank of `comm` to send `bytes` to every other and receive as much.
double raw_exchange(MPI_Comm comm, std::size_t bytes) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::vector<std::vector<unsigned char>> out(static_cast<std::size_t>(size), std::vector<unsigned char>(bytes, 1));
  std::vector<std::vector<unsigned char>> in(static_cast<std::size_t>(size), std::vector<unsigned char>(bytes));
  std::vector<double> times;
  for (int trial = 0; trial < 6; ++trial) {
    MPI_Barrier(comm);
    const auto t = std::chrono::steady_clock::now();
    std::vector<MPI_Request> requests;
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      requests.emplace_back();
      MPI_Irecv(in[static_cast<std::size_t>(p)].data(), static_cast<int>(bytes), MPI_BYTE, p, 7, comm,
                &requests.back());
    }
    for (int p = 0; p < size; ++p) {
      if (p == rank) continue;
      requests.emplace_back();
      MPI_Isend(out[static_cast<std::size_t>(p)].data(), static_cast<int>(bytes), MPI_BYTE, p, 7, comm,
                &requests.back());
    }
    MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE);
    MPI_Barrier(comm);
    if (trial > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  }
  return median(times);
}

std::uint64_t max_over(optreg::mpi::Communicator& comm, std::uint64_t mine) {
  const auto all = comm.allgather(&mine, sizeof mine, "bench");
  std::uint64_t best = 0;
  for (int r = 0; r < comm.size(); ++r) {
    std::uint64_t v;
    std::memcpy(&v, all.data() + static_cast<std::size_t>(r) * sizeof v, sizeof v);
    best = std::max(best, v);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  optreg::mpi::Environment environment(&argc, &argv);
  const double millions = argc > 1 ? std::atof(argv[1]) : 8.0;
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  optreg::Registry registry;
  registry.load_default();
  const auto per_tensor = static_cast<std::int64_t>(millions * 1e6 / 8);
  if (world_rank == 0) {
    std::printf(
        "sharded adam over 8 float32 tensors of %lld elements (%.1f MB of parameters); %d ranks on %u "
        "hardware threads%s\n",
        static_cast<long long>(per_tensor), 8.0 * static_cast<double>(per_tensor) * 4 / 1e6, world_size,
        std::thread::hardware_concurrency(),
        static_cast<unsigned>(world_size) > std::thread::hardware_concurrency() ? " (oversubscribed)" : "");
    std::printf("%5s %14s %9s %10s %10s %9s %9s %12s %12s %7s\n", "ranks", "state/rank MB", "of 1 proc", "step ms",
                "exchange", "fold+step", "gather", "ours GB/s", "p2p GB/s", "ratio");
  }
  double one_process_state = 0;
  for (const int size : {1, 2, 4}) {
    if (size > world_size) break;
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank < size ? 0 : MPI_UNDEFINED, world_rank, &sub);
    if (sub != MPI_COMM_NULL) {
      optreg::mpi::Communicator comm(sub, 600);
      std::vector<optreg::Parameter> params;
      for (int p = 0; p < 8; ++p) params.emplace_back("w" + std::to_string(p), optreg::Tensor({per_tensor}, 0.1f));
      auto opt = optreg::mpi::ShardedOptimizer::create(comm, registry, "adam", {{params, {}}}, {{"lr", 1e-3}});
      std::vector<double> step_times, exchange, fold, gather;
      std::uint64_t moved = 0;
      for (int k = 0; k < 6; ++k) {
        for (auto& p : params) p.set_grad(optreg::Tensor({per_tensor}, 0.01f * static_cast<float>(k + 1)));
        MPI_Barrier(sub);
        const auto t = std::chrono::steady_clock::now();
        opt->step();
        MPI_Barrier(sub);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        if (k == 0) continue;  // the state is allocated at the first step
        const auto& profile = opt->last_step_profile();
        step_times.push_back(s);
        exchange.push_back(profile.exchange_seconds);
        fold.push_back(profile.step_seconds);
        gather.push_back(profile.gather_seconds);
        moved = profile.exchange_bytes + profile.gather_bytes;
      }
      const double state = static_cast<double>(max_over(comm, opt->state_bytes()));
      if (size == 1) one_process_state = state;
      // The same traffic through Open MPI alone: a share of the parameters to and from every peer, twice.
      const std::size_t share = static_cast<std::size_t>(8 * per_tensor * 4 / size);
      const double raw = size > 1 ? 2 * raw_exchange(sub, share) : 0;
      const double ours = median(exchange) + median(gather);
      if (comm.rank() == 0) {
        const double raw_moved = 2.0 * 2.0 * static_cast<double>(share) * (size - 1);
        const double ours_bw = size > 1 ? static_cast<double>(moved) / ours / 1e9 : 0.0;
        const double raw_bw = size > 1 ? raw_moved / raw / 1e9 : 0.0;
        std::printf("%5d %14.1f %8.0f%% %10.1f %8.1fms %8.1fms %8.1fms %12.2f %12.2f %6.0f%%\n", size, state / 1e6,
                    100.0 * state / one_process_state, 1e3 * median(step_times), 1e3 * median(exchange),
                    1e3 * median(fold), 1e3 * median(gather), ours_bw, raw_bw,
                    raw_bw > 0 ? 100.0 * ours_bw / raw_bw : 0.0);
      }
      opt.reset();
      MPI_Comm_free(&sub);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return 0;
}
