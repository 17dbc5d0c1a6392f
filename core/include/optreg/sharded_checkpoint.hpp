#pragma once
/// \file
/// Sharded checkpoints: the files a sharded optimizer (optreg::mpi::ShardedOptimizer) writes,
/// one per rank and a manifest, and what reads them without MPI: `optreg inspect`, a plain
/// single-process optimizer, a sharded one on another number of ranks (docs/distributed.md).
///
/// Layout of a checkpoint saved at PATH by N ranks:
/// - PATH, the manifest (an ordinary checkpoint file): the optimizer's name and version, every
///   param group's options and global parameter ids, no per-parameter state, every parameter's
///   value, the run's metadata and the scheduler's state, and a section `shards` that holds the
///   world size, the save's generation and the piece map: for each piece (a parameter's
///   elements [offset, offset + count) stepped by one rank) its parameter id, offset, count and
///   rank.
/// - PATH.shards/GENERATION-rank-R-of-N, one per rank: the state dict of that rank's optimizer
///   over its pieces, with a section `shard` that maps its parameter ids to the pieces.
/// The manifest is written last and atomically, and names its generation, so a save that stops
/// part way leaves the previous manifest and the files it names untouched.

#include <optreg/export.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include <optreg/optimizer.hpp>
#include <optreg/state_dict.hpp>

namespace optreg {

/// Elements [offset, offset + count) of parameter `param` (its id: position by first appearance
/// across the param groups), stepped by rank `rank`. A piece with offset 0 and count the
/// parameter's size is the whole tensor, of the parameter's shape; any other is 1-dimensional.
struct OPTREG_API ShardPiece {
  std::uint64_t param = 0;
  std::uint64_t offset = 0;
  std::uint64_t count = 0;
  std::uint32_t rank = 0;
};

/// The manifest's section.
inline constexpr char kShardsSection[] = "shards";
/// A rank file's section.
inline constexpr char kShardSection[] = "shard";

/// What a manifest says beside the optimizer's state.
struct OPTREG_API ShardManifest {
  std::uint32_t world_size = 0;
  std::string generation;
  std::vector<ShardPiece> pieces;
};

/// Whether `checkpoint` is the manifest of a sharded checkpoint (it has a `shards` section).
OPTREG_API bool is_shard_manifest(const Checkpoint& checkpoint) noexcept;

/// The manifest's section read back; throws CheckpointError naming `path` when it is malformed
/// (a piece out of its parameter's range, parameters not covered exactly once, a rank out of
/// range).
OPTREG_API ShardManifest read_shard_manifest(const Checkpoint& manifest, const std::string& path);

/// The file of rank `rank` of a checkpoint whose manifest is `path`.
OPTREG_API std::string shard_file_path(const std::string& path, const std::string& generation, std::uint32_t rank,
                                       std::uint32_t world_size);

/// The folder that holds the rank files of a checkpoint whose manifest is `path`.
OPTREG_API std::string shard_folder(const std::string& path);

/// Reads the checkpoint at `path`, sharded or not: of a sharded one, the manifest and every
/// rank's file, assembled into what one process stepping every parameter would have saved (each
/// parameter's state put together from its pieces). Throws CheckpointError naming the file at
/// fault: a missing or damaged rank file, one of another save (generation) or rank, pieces that
/// disagree on a scalar or an entry. When `manifest` is given it receives the manifest's section
/// (world size 0 for a checkpoint that is not sharded).
OPTREG_API Checkpoint read_any_checkpoint(const std::string& path, ShardManifest* manifest = nullptr);

/// The state of elements [offset, offset + count) of a parameter of shape `shape` cut from its
/// whole state `whole`: the whole state for the whole tensor, else each tensor entry's elements
/// (every scalar as it is). Throws StateDictError, naming `where` and the entry, for an entry
/// that cannot be cut (not shaped like the parameter, or quantized): its optimizer needs whole
/// tensors (abi::kOptimizerWholeTensors).
OPTREG_API ParamState cut_state(const ParamState& whole, const Shape& shape, std::uint64_t offset,
                                std::uint64_t count, const std::string& where);

}  // namespace optreg
