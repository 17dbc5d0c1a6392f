#pragma once
/// \file
/// Checkpoint files: a state dict, optionally with parameter values and run metadata, in a
/// Boost.Serialization binary archive inside optreg's envelope (docs/checkpoint-format.md).
///
/// Contract:
/// - Writing is atomic: the file is written to a temporary file in the same folder, flushed,
///   fsync'd and renamed over the target, so a crash or a full disk mid-write leaves the
///   previous file intact.
/// - Reading checks the file size, magic, envelope version, payload length and checksum, and
///   bounds every count by the payload length, so a small damaged or hostile file can neither
///   crash the reader nor make it allocate more than its own size. Every failure is a
///   CheckpointError naming the file and what is wrong.
/// - Loading into an optimizer validates everything before changing anything: on an error the
///   optimizer and its parameters are unchanged.
/// - Binary archives are specific to the platform's byte order and type sizes.

#include <optreg/export.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/scheduler.hpp>
#include <optreg/state_dict.hpp>

namespace optreg {

/// What the envelope of a checkpoint file says.
struct OPTREG_API CheckpointInfo {
  std::uint64_t file_size = 0;
  std::uint32_t envelope_version = 0;
  std::uint32_t format = 0;
  std::uint64_t payload_length = 0;
  /// The checksum stored in the file (XXH3-64 of the payload), verified by every read.
  std::uint64_t checksum = 0;
};

/// Writes `checkpoint` to `path` atomically; throws CheckpointError naming the file.
OPTREG_API void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
/// Writes a state dict alone.
OPTREG_API void save_checkpoint(const std::string& path, const StateDict& state);

/// The bytes save_checkpoint() would write for `checkpoint` (header and payload), held in memory:
/// for hosts that keep checkpoints elsewhere than in files (pickled by Python, sent over a
/// network). parse_checkpoint() reads them back.
OPTREG_API std::string encode_checkpoint(const Checkpoint& checkpoint);

/// Reads and verifies a checkpoint file; throws CheckpointError naming the file and the fault.
/// When `info` is given it receives the envelope.
OPTREG_API Checkpoint read_checkpoint(const std::string& path, CheckpointInfo* info = nullptr);
/// Parses a checkpoint held in memory (`name` is used in messages).
OPTREG_API Checkpoint parse_checkpoint(const void* data, std::size_t size, const std::string& name,
                            CheckpointInfo* info = nullptr);

/// Something a host keeps beside the optimizer whose state a checkpoint holds in a section of
/// its own (CheckpointSection): a weight average (WeightAverage, <optreg/average.hpp>), a
/// gradient accumulation (GradientAccumulator, <optreg/accumulate.hpp>). save_optimizer() writes
/// the sections of the components it is given; load_optimizer() checks each component's section
/// together with everything else before anything changes, then loads it.
class OPTREG_API CheckpointComponent {
 public:
  virtual ~CheckpointComponent();
  /// The name of its section, unique among the components of one checkpoint.
  virtual std::string section_name() const = 0;
  /// Its state as a section named section_name().
  virtual CheckpointSection save_section() const = 0;
  /// Checks a section for load_section() without changing anything; throws StateDictError
  /// naming what does not fit.
  virtual void check_section(const CheckpointSection& section) const = 0;
  /// Takes the state of a section that check_section() accepted; must not throw.
  virtual void load_section(const CheckpointSection& section) = 0;
};

/// How load_optimizer() treats a checkpoint whose tensors have other dtypes than the optimizer
/// keeps them in, and what else it loads.
struct OPTREG_API LoadOptions {
  /// false (the default): such a checkpoint is refused, naming the tensor and both dtypes.
  /// true: parameter values of another dtype are converted to the parameter's dtype, and state
  /// tensors to the dtype the optimizer keeps them in (Optimizer::convert_state_dict()), exactly
  /// where the values fit and rounding to nearest where they do not.
  bool convert_dtypes = false;
  /// When not null, receives every conversion made, each saying whether it rounded.
  std::vector<DTypeConversion>* conversions = nullptr;
  /// Components to load from their sections, checked with the rest before anything changes:
  /// a checkpoint without the section of one of them is a CheckpointError. Sections of the
  /// checkpoint that no component names are ignored.
  std::vector<CheckpointComponent*> components{};
};

/// Saves an optimizer's state dict and its parameters' values (in id order), with `metadata`.
OPTREG_API void save_optimizer(const std::string& path, const Optimizer& optimizer, const Options& metadata = {});
/// Restores what save_optimizer() wrote: the state dict and the parameter values, after checking
/// every shape; all or nothing. Returns the metadata. A scheduler state in the file is ignored.
OPTREG_API Options load_optimizer(const std::string& path, Optimizer& optimizer);
/// The same, converting dtypes when `options` asks for it.
OPTREG_API Options load_optimizer(const std::string& path, Optimizer& optimizer, const LoadOptions& options);

/// save_optimizer() plus the state of `scheduler`, which drives `optimizer`: a run resumed
/// with load_optimizer(path, optimizer, scheduler) continues the schedule exactly.
OPTREG_API void save_optimizer(const std::string& path, const Optimizer& optimizer, const Scheduler& scheduler,
                    const Options& metadata = {});
/// save_optimizer() with the state of `scheduler` (when not null) and the section of each of
/// `components`; throws UsageError for two components of one section name.
OPTREG_API void save_optimizer(const std::string& path, const Optimizer& optimizer, const Scheduler* scheduler,
                               const std::vector<const CheckpointComponent*>& components, const Options& metadata = {});
/// The checkpoint save_optimizer() would write, for a host that writes it elsewhere
/// (encode_checkpoint()) or adds to it.
OPTREG_API Checkpoint make_checkpoint(const Optimizer& optimizer, const Scheduler* scheduler,
                                      const std::vector<const CheckpointComponent*>& components,
                                      const Options& metadata = {});

/// load_optimizer() plus the scheduler's state, all or nothing: the scheduler's name and state
/// are checked (Scheduler::check_state()) together with the optimizer's before anything
/// changes. A file without a scheduler state is a CheckpointError. Make the fresh optimizer and
/// scheduler as the first run made them (the same config), then load.
OPTREG_API Options load_optimizer(const std::string& path, Optimizer& optimizer, Scheduler& scheduler);
/// The same, converting dtypes when `options` asks for it.
OPTREG_API Options load_optimizer(const std::string& path, Optimizer& optimizer, Scheduler& scheduler,
                                  const LoadOptions& options);

/// load_optimizer() from a checkpoint already read (read_checkpoint()), for a host that looks
/// at the metadata before it loads: into `optimizer` and, when not null, `scheduler`, with the
/// same checks, all or nothing; `name` names the checkpoint in messages.
OPTREG_API Options load_optimizer(Checkpoint checkpoint, const std::string& name, Optimizer& optimizer,
                       Scheduler* scheduler = nullptr, const LoadOptions& options = {});

/// How load_optimizer_by_name() matches a checkpoint's parameters to an optimizer's: by name,
/// not by position, for a model that changed a little since the checkpoint was written.
struct OPTREG_API NameMatchPolicy {
  /// A parameter of the optimizer whose name the checkpoint lacks: an error (false), or it keeps
  /// the state and value it has, fresh for an optimizer just made (true).
  bool fresh_for_missing = false;
  /// A parameter of the checkpoint whose name the optimizer lacks: an error (false), or its
  /// state and value are left out (true).
  bool drop_unexpected = false;
  /// Renames of the checkpoint's names before they are matched, the first that applies: a glob
  /// FROM (`*` and `?`) and TO, in which each `*` stands for what the `*` of FROM in the same
  /// place matched ("encoder.*" -> "backbone.*"). Two names renamed to one are an error.
  std::vector<std::pair<std::string, std::string>> renames;
};

/// What a name-matched load did (or would do, as plan_name_match() says).
struct OPTREG_API NameMatchReport {
  struct Match {
    std::string param;  // the optimizer's parameter
    std::string saved;  // the checkpoint's name it took the state of (before any rename)
  };
  std::vector<Match> matched;        // in the optimizer's id order
  std::vector<std::string> created;  // the optimizer's parameters that kept their own state
  std::vector<std::string> dropped;  // the checkpoint's names left out
};

/// How a checkpoint (named `name` in messages) would load into `optimizer` by name under
/// `policy`, changing nothing. Throws CheckpointError naming the parameter for a checkpoint
/// without parameter names, a shape that differs (always an error), a parameter with no saved
/// state or saved state with no parameter that the policy does not allow, two saved names
/// renamed to one, and two parameters of the optimizer of one name.
OPTREG_API NameMatchReport plan_name_match(const Checkpoint& checkpoint, const std::string& name,
                                           const Optimizer& optimizer, const NameMatchPolicy& policy);

/// Loads what save_optimizer() wrote into `optimizer`, matching parameters by name
/// (plan_name_match()): a matched parameter takes its saved state and value, the optimizer's
/// groups keep their options. All or nothing: every check (plan_name_match(), then every state
/// entry as load_optimizer() checks it) is made before anything changes. Returns the report; the
/// checkpoint's metadata goes to `metadata` when it is not null. A scheduler state and the
/// sections are ignored; LoadOptions::components must be empty (UsageError).
OPTREG_API NameMatchReport load_optimizer_by_name(const std::string& path, Optimizer& optimizer,
                                                  const NameMatchPolicy& policy, const LoadOptions& options = {},
                                                  Options* metadata = nullptr);
/// The same from a checkpoint already read, named `name` in messages.
OPTREG_API NameMatchReport load_optimizer_by_name(Checkpoint checkpoint, const std::string& name, Optimizer& optimizer,
                                                  const NameMatchPolicy& policy, const LoadOptions& options = {},
                                                  Options* metadata = nullptr);

}  // namespace optreg
