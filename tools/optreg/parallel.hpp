#pragma once
// Data-parallel `optreg train` and `optreg compare` (docs/distributed.md): the ranks of an MPI
// job, when the tool was built with optreg::mpi and started by mpirun (or given --slices).
#include <memory>
#include <string>

#include <optreg/train/run.hpp>

namespace optreg::cli {

/// The job this process is a rank of, for the length of a command.
class ParallelJob {
 public:
  virtual ~ParallelJob() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// A new sharded optimizer's calls for one run (DataParallel).
  virtual std::unique_ptr<train::DataParallel> run() = 0;
  /// Ends the whole job with `code` after an error on this rank (the others may be waiting
  /// for it); does nothing in a job of one process, which ends normally.
  virtual void fail(int code) = 0;
};

/// Whether this process was started by mpirun as one of several ranks.
bool launched_as_ranks() noexcept;
/// Joins the MPI job (a job of one process when not started by mpirun). Throws
/// CommandLineError when the tool was built without optreg::mpi, naming `command`.
std::unique_ptr<ParallelJob> join_parallel_job(const std::string& command);

}  // namespace optreg::cli
