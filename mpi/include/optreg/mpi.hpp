#pragma once
/// \file
/// optreg::mpi: optimizer state sharded across the ranks of an MPI job (ZeRO stage 1), on Open
/// MPI. Built when MPI is found (CMake target optreg::mpi); docs/distributed.md describes it.
///
/// A ShardedOptimizer wraps any optimizer the registry makes, by name or from a config. Every
/// rank holds every parameter (replicated, as in data-parallel training) and computes gradients
/// of its part of each batch; the optimizer's state is split: each rank owns a balanced share of
/// the parameters' bytes (its pieces) and keeps state for those only. One step():
/// 1. exchanges gradients so that each rank receives, from every rank, its pieces' gradients,
///    and reduces them in a fixed order (rank 0's contributions first, each rank's in the order
///    it made them; reduce_in_order());
/// 2. steps its pieces with the wrapped optimizer;
/// 3. sends its pieces' new values to every rank, so every rank again holds every parameter.
/// The result does not depend on the number of ranks: the same contributions in the same order
/// give the same bits on 1, 2, 3 or 4 ranks, and the same bits as one plain optimizer given
/// reduce_in_order() of them.
///
/// Every exchange waits at most the communicator's timeout without progress: a rank that died,
/// hangs, or failed makes the others throw RankError naming it, never a silent hang. After a
/// RankError the job cannot go on (peers may be inside an exchange): report it and call
/// Communicator::abort().

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <optreg/config.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/registry.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/sharded_checkpoint.hpp>

namespace optreg::mpi {

/// A rank failed, did not answer within the timeout, or disagreed with the others.
class OPTREG_API RankError : public Error {
 public:
  /// `rank`: the rank at fault (-1: none in particular).
  RankError(const std::string& message, int rank);
  ~RankError() override;
  int rank() const noexcept { return rank_; }

 private:
  int rank_ = -1;
};

/// Starts MPI when it is not started yet (MPI_Init_thread, funnelled) and finalizes it at
/// destruction when it started it. One per process, in main().
class OPTREG_API Environment {
 public:
  Environment(int* argc, char*** argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  /// Whether this process was started by a launcher: mpirun (OMPI_COMM_WORLD_SIZE), PMIx
  /// (PMIX_RANK) or PMI (PMI_SIZE), with one rank or several.
  static bool launched() noexcept;

 private:
  bool started_ = false;
};

/// A buffer one exchange reads from or writes to.
struct OPTREG_API ConstBytes {
  const void* data = nullptr;
  std::size_t size = 0;
};
struct OPTREG_API Bytes {
  void* data = nullptr;
  std::size_t size = 0;
};

/// An MPI communicator (MPI_COMM_WORLD by default) whose exchanges wait at most `timeout`
/// seconds without progress (no part arriving or leaving). Its errors are RankErrors naming
/// the peer; a part of another size than expected is one too.
class OPTREG_API Communicator {
 public:
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD, double timeout_seconds = 60.0);
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  double timeout() const noexcept { return timeout_; }
  void set_timeout(double seconds);

  /// Sends send[d] to every rank d and receives recv[s] from every rank s (each of the size the
  /// sender sends: both sides must agree); the part to and from this rank is copied. `what`
  /// names the exchange in errors. Throws RankError naming the first rank whose part did not
  /// arrive within the timeout.
  void exchange(const std::vector<ConstBytes>& send, const std::vector<Bytes>& recv, const std::string& what);
  /// Every rank's `mine` (of the same size on every rank), in rank order.
  std::vector<unsigned char> allgather(const void* mine, std::size_t size, const std::string& what);
  /// Every rank says whether it succeeded (`error` empty) or why not; throws RankError naming
  /// the lowest rank that failed, with its message, on every rank. A collective point where a
  /// failure on one rank becomes an error on all. `timeout_seconds`, when longer than the
  /// communicator's, is this wait's (where a rank may be writing or reading large files).
  void agree(const std::string& error, const std::string& what, double timeout_seconds = 0);
  /// Ends the whole job (MPI_Abort) with `code`.
  [[noreturn]] void abort(int code) const noexcept;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  double timeout_ = 60.0;
  int sequence_ = 0;
};

/// The reduction a ShardedOptimizer applies to the gradients of a parameter, in this order, in
/// float32 (float64 for float64 gradients): without weights, ((c0 + c1) + c2) + ... divided by
/// the count; with weights, ((w0*c0 + w1*c1) + w2*c2) + ...; the result rounded to nearest into
/// the gradients' dtype. What one process that averages the same gradients in the same order
/// computes; `weights` empty or one per contribution.
OPTREG_API Tensor reduce_in_order(const std::vector<Tensor>& contributions, const std::vector<double>& weights = {});

/// How a ShardedOptimizer splits parameters between ranks.
struct OPTREG_API ShardSettings {
  /// A tensor of an elementwise optimizer is split at multiples of this many elements (counted
  /// from its first); 0 keeps every tensor whole.
  std::size_t split_elements = 4096;
  /// How long an exchange waits without progress; 0 keeps the communicator's.
  double timeout_seconds = 0;
  /// How long the ranks of a save or a load wait for each other's files (rank 0 writes the
  /// manifest, with every parameter's value, while the others wait).
  double file_timeout_seconds = 1800;
};

/// The pieces of `shapes` (parameters in id order, with their dtypes) for `world_size` ranks:
/// byte-balanced contiguous ranges with tensors split at multiples of `split_elements`, or, with
/// `whole` (or a split of 0), whole tensors, the largest first to the least loaded rank. Every
/// parameter is covered exactly once; every rank computes the same plan.
OPTREG_API std::vector<ShardPiece> plan_shards(const std::vector<Shape>& shapes, const std::vector<DType>& dtypes,
                                               int world_size, bool whole, std::size_t split_elements);

/// Where the last ShardedOptimizer::step() spent its time, and what this rank moved.
struct OPTREG_API StepProfile {
  /// Comparing the ranks' headers and sending every gradient piece to its owner (reduce-scatter).
  double exchange_seconds = 0;
  /// Folding the contributions in order and stepping this rank's pieces.
  double step_seconds = 0;
  /// Sending this rank's new values to every rank (all-gather).
  double gather_seconds = 0;
  /// Bytes this rank sent to and received from other ranks in the gradient exchange.
  std::uint64_t exchange_bytes = 0;
  /// The same in the gather.
  std::uint64_t gather_bytes = 0;
};

/// An optimizer whose state is sharded across the ranks of a communicator (see the file's
/// comment). Every rank must make it with the same optimizer, options and parameters (names,
/// shapes and dtypes, in the same order): construction compares them and throws RankError
/// naming a rank that differs.
class OPTREG_API ShardedOptimizer {
 public:
  /// The optimizer `name` of the registry with `options`, over `groups`.
  static std::unique_ptr<ShardedOptimizer> create(Communicator& comm, const Registry& registry, const std::string& name,
                                                  std::vector<ParamGroupSpec> groups, const Options& options = {},
                                                  const ShardSettings& settings = {});
  /// The optimizer a config describes over named parameters (build_optimizer()).
  static std::unique_ptr<ShardedOptimizer> build(Communicator& comm, const Registry& registry,
                                                 const OptimizerConfig& config, std::vector<Parameter> params,
                                                 const ShardSettings& settings = {});
  ~ShardedOptimizer();
  ShardedOptimizer(const ShardedOptimizer&) = delete;
  ShardedOptimizer& operator=(const ShardedOptimizer&) = delete;

  /// Takes this rank's gradients (of the parameters that have one) as one contribution to the
  /// next step, copied, and clears them: a rank that computes the gradients of several slices
  /// of its batch contributes each. `weight`: see reduce_in_order(); every contribution of a
  /// step, on every rank, has a weight or none has.
  void contribute(std::optional<double> weight = std::nullopt);
  /// Reduces the contributions (this rank's present gradients, when it made none), steps this
  /// rank's pieces and gathers every parameter's new value. Every parameter must have a
  /// gradient on every rank or on none (else RankError naming the parameter and the rank).
  ShardedOptimizer& step();
  /// Clears the gradients of every parameter and any contribution.
  ShardedOptimizer& clear_grad() noexcept;

  /// The optimizer over this rank's pieces: its param groups are the sharded optimizer's (a
  /// group of which this rank owns nothing holds one stand-in element that is never stepped),
  /// so options set on it (set_option(), a scheduler) are set on every rank alike.
  Optimizer& local() noexcept { return *local_; }
  const Optimizer& local() const noexcept { return *local_; }
  /// Every parameter, in id order.
  const std::vector<Parameter>& parameters() const noexcept { return params_; }
  /// Every rank's pieces.
  const std::vector<ShardPiece>& pieces() const noexcept { return pieces_; }
  /// Whether tensors are kept whole (the optimizer needs whole tensors, or the settings say so).
  bool whole_tensors() const noexcept { return whole_; }
  Communicator& communicator() noexcept { return comm_; }
  /// The bytes of optimizer state this rank holds.
  std::size_t state_bytes() const;
  /// Of the last step().
  const StepProfile& last_step_profile() const noexcept { return profile_; }

  /// Writes this rank's state and (rank 0) the manifest of a sharded checkpoint at `path`
  /// (<optreg/sharded_checkpoint.hpp>), with the run's `metadata` and the scheduler's state.
  /// Collective; a failure on any rank is a RankError on every rank, and leaves the checkpoint
  /// that was at `path` loadable.
  void save(const std::string& path, const Options& metadata = {}, const Scheduler* scheduler = nullptr);
  /// Loads a checkpoint saved by any number of ranks, or by a plain optimizer, into this one
  /// (and `scheduler`), and, with `restore_values`, sets every parameter to its saved value.
  /// Checked on every rank before any changes anything: on an error, nothing changed on any
  /// rank. Returns the metadata. Collective.
  Options load(const std::string& path, Scheduler* scheduler = nullptr, bool restore_values = true);

  /// Of an optimizer with eval weights (schedule-free): writes them into every parameter on
  /// every rank (Optimizer::write_eval_weights() on each rank's pieces, then gathered).
  void write_eval_weights();

 private:
  struct Piece;
  ShardedOptimizer(Communicator& comm, std::vector<Parameter> params, std::vector<ShardPiece> pieces, bool whole);
  void make_local(const std::vector<std::vector<std::size_t>>& groups,
                  const std::function<OptimizerPtr(const GroupSubstitute&)>& make);
  void refresh_views();
  /// Sends this rank's pieces of the `present` parameters to every rank, and tells each
  /// whether this rank failed before (`error`, `failure`: rethrown here after the exchange; a
  /// peer's failure is a RankError naming it).
  void gather_values(const std::vector<bool>& present, const std::string& what, const std::string& error = {},
                     const std::exception_ptr& failure = nullptr);
  void set_file_timeout(double seconds);

  Communicator& comm_;
  std::vector<Parameter> params_;
  std::vector<ShardPiece> pieces_;
  bool whole_ = false;
  std::uint32_t flags_ = 0;                       // the optimizers' descriptor flags
  std::string who_;                               // the optimizers' names, for messages
  double file_timeout_ = 1800;                    // ShardSettings::file_timeout_seconds
  std::vector<std::vector<std::size_t>> groups_;  // per param group: its parameters' ids
  std::vector<std::unique_ptr<Piece>> mine_;      // this rank's pieces, in plan order
  std::vector<std::int64_t> local_of_piece_;      // per piece of pieces_: its index in mine_, or -1
  std::vector<Parameter> local_params_;           // the local optimizer's parameters, in its id order
  std::vector<std::int64_t> piece_of_local_;      // per local parameter: index in mine_, -1 for a stand-in
  OptimizerPtr local_;
  struct Contribution {
    std::vector<Tensor> grads;  // per parameter; empty where absent
    std::vector<bool> present;
    std::optional<double> weight;
  };
  std::vector<Contribution> contributions_;
  std::int64_t steps_ = 0;
  StepProfile profile_;
  // Per peer, what a step sends and receives, kept between steps (no fresh pages every step).
  std::vector<std::vector<unsigned char>> send_buffers_;
  std::vector<std::vector<unsigned char>> recv_buffers_;
};

}  // namespace optreg::mpi
