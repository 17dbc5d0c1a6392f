#include "parallel.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "cli.hpp"

#ifdef OPTREG_TOOL_WITH_MPI
#include <optreg/mpi.hpp>
#endif

namespace optreg::cli {

bool launched_as_ranks() noexcept {
  // mpirun sets OMPI_COMM_WORLD_SIZE; a PMI launcher (srun --mpi=pmi2) PMI_SIZE; under PMIx
  // (srun --mpi=pmix) Slurm says how many tasks the step has.
  const auto more_than_one = [](const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && std::strtol(v, nullptr, 10) > 1;
  };
  return more_than_one("OMPI_COMM_WORLD_SIZE") || more_than_one("PMI_SIZE") ||
         (std::getenv("PMIX_RANK") != nullptr && more_than_one("SLURM_STEP_NUM_TASKS"));
}

#ifdef OPTREG_TOOL_WITH_MPI

namespace {

class Sharded final : public train::DataParallel {
 public:
  explicit Sharded(mpi::Communicator& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  Optimizer& build(const OptimizerConfig& config, const std::vector<Parameter>& params,
                   const Registry& registry) override {
    opt_.reset();
    opt_ = mpi::ShardedOptimizer::build(comm_, registry, config, params);
    return opt_->local();
  }
  void contribute(double weight) override { opt_->contribute(weight); }
  void step() override { opt_->step(); }
  std::vector<double> gather(const std::vector<double>& mine) override {
    const auto bytes = comm_.allgather(mine.data(), mine.size() * sizeof(double), "gathering the slices' losses");
    std::vector<double> all(bytes.size() / sizeof(double));
    std::memcpy(all.data(), bytes.data(), bytes.size());
    return all;
  }
  bool any(bool mine) override {
    const unsigned char flag = mine ? 1 : 0;
    const auto all = comm_.allgather(&flag, 1, "checking for an interruption");
    for (unsigned char f : all) {
      if (f != 0) return true;
    }
    return false;
  }
  void write_eval_weights() override { opt_->write_eval_weights(); }
  void save(const std::string& path, const Options& metadata, const Scheduler* scheduler) override {
    opt_->save(path, metadata, scheduler);
  }
  void load(const std::string& path, Scheduler* scheduler) override { opt_->load(path, scheduler, true); }
  void settle(const std::exception_ptr& failure) override {
    std::string error;
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "an unknown error";
      }
    }
    try {
      // Ranks may be reading a large checkpoint or data set: the files' timeout.
      comm_.agree(error, "setting up the run on every rank", mpi::ShardSettings{}.file_timeout_seconds);
    } catch (const mpi::RankError&) {
      throw train::SharedFailure(failure ? failure : std::current_exception());
    }
  }
  std::size_t state_bytes() override {
    const std::uint64_t mine = opt_->state_bytes();
    const auto bytes = comm_.allgather(&mine, sizeof mine, "adding up the ranks' optimizer state");
    std::uint64_t total = 0;
    for (std::size_t r = 0; r < bytes.size() / sizeof mine; ++r) {
      std::uint64_t v;
      std::memcpy(&v, bytes.data() + r * sizeof mine, sizeof mine);
      total += v;
    }
    return static_cast<std::size_t>(total);
  }

 private:
  mpi::Communicator& comm_;
  std::unique_ptr<mpi::ShardedOptimizer> opt_;
};

class Job final : public ParallelJob {
 public:
  Job() : environment_(nullptr, nullptr), comm_(MPI_COMM_WORLD) {
    if (launched_as_ranks() && comm_.size() == 1) {
      // Each process would train alone, all into the same files.
      throw CommandLineError{"the launcher started several processes, but MPI sees a job of one: this optreg's "
                             "Open MPI does not speak the launcher's protocol (use Open MPI's mpirun, or srun "
                             "--mpi=pmix with an Open MPI built for it)"};
    }
  }
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  std::unique_ptr<train::DataParallel> run() override { return std::make_unique<Sharded>(comm_); }
  void fail(int code) override {
    if (comm_.size() > 1) comm_.abort(code);
  }

 private:
  mpi::Environment environment_;
  mpi::Communicator comm_;
};

}  // namespace

std::unique_ptr<ParallelJob> join_parallel_job(const std::string&) { return std::make_unique<Job>(); }

#else

std::unique_ptr<ParallelJob> join_parallel_job(const std::string& command) {
  throw CommandLineError{"optreg " + command +
                         ": this optreg was built without optreg::mpi (Open MPI was not found: apt-get install "
                         "libopenmpi-dev openmpi-bin, then build again), so it cannot train data-parallel"};
}

#endif

}  // namespace optreg::cli
