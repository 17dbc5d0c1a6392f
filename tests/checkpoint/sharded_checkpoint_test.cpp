// Sharded checkpoints read without MPI (read_any_checkpoint()): a manifest and its rank files
// assembled into what one process would have saved, and every way the set can be damaged or
// mixed up named by the file at fault.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>
#include <optreg/sharded_checkpoint.hpp>
#include <optreg/state_dict.hpp>

#include "test_support.hpp"

using optreg::Checkpoint;
using optreg::CheckpointError;
using optreg::CheckpointSection;
using optreg::NamedTensor;
using optreg::ParamState;
using optreg::Tensor;
using optreg_test::TempDir;
using optreg_test::throws_with;

namespace {

constexpr char kGeneration[] = "00000000deadbeef";

Tensor table(const std::vector<std::vector<double>>& rows) {
  const std::size_t columns = rows.front().size();
  Tensor t(optreg::Shape{static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(columns)},
           optreg::DType::Float64);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < columns; ++c) t.data_as<double>()[r * columns + c] = rows[r][c];
  }
  return t;
}

Tensor range(std::size_t from, std::size_t count, const optreg::Shape& shape) {
  Tensor t(shape);
  for (std::size_t i = 0; i < count; ++i) t[i] = static_cast<float>(from + i) * 0.5f;
  return t;
}

ParamState state_of(std::size_t from, std::size_t count, const optreg::Shape& shape, std::int64_t step) {
  ParamState s;
  s.add_scalar("step", step);
  s.add_tensor("exp_avg", range(from, count, shape));
  return s;
}

/// A checkpoint of two parameters saved by two ranks: "w" [4, 3] split at element 5 between
/// ranks 0 and 1, "b" [2] whole on rank 1; `pieces` replaces the manifest's piece map.
struct Sharded {
  TempDir dir;
  std::string path = dir / "run.ckpt";
  std::vector<std::vector<double>> pieces{{0, 0, 5, 0}, {0, 5, 7, 1}, {1, 0, 2, 1}};

  Checkpoint manifest() const {
    Checkpoint m;
    m.optimizer.optimizer = "adam";
    m.optimizer.plugin_version = "1";
    m.optimizer.param_groups.push_back({{{"lr", 0.01}}, {0, 1}});
    m.parameters.push_back(NamedTensor{"w", range(100, 12, {4, 3})});
    m.parameters.push_back(NamedTensor{"b", range(200, 2, {2})});
    m.metadata["step"] = optreg::Value(std::int64_t{3});
    CheckpointSection s;
    s.name = optreg::kShardsSection;
    s.scalars["world_size"] = optreg::Value(std::int64_t{2});
    s.scalars["generation"] = optreg::Value(std::string(kGeneration));
    s.tensors.push_back(NamedTensor{"pieces", table(pieces)});
    m.sections.push_back(s);
    return m;
  }

  Checkpoint rank_file(std::uint32_t rank, const std::string& generation = kGeneration) const {
    Checkpoint r;
    r.optimizer.optimizer = "adam";
    r.optimizer.plugin_version = "1";
    std::vector<std::vector<double>> rows;
    if (rank == 0) {
      r.optimizer.param_groups.push_back({{{"lr", 0.01}}, {0}});
      r.optimizer.state[0] = state_of(0, 5, {5}, 3);
      rows = {{0, 0, 5}};
    } else {
      r.optimizer.param_groups.push_back({{{"lr", 0.01}}, {0, 1}});
      r.optimizer.state[0] = state_of(5, 7, {7}, 3);
      r.optimizer.state[1] = state_of(0, 2, {2}, 3);
      rows = {{0, 5, 7}, {1, 0, 2}};
    }
    CheckpointSection s;
    s.name = optreg::kShardSection;
    s.scalars["rank"] = optreg::Value(static_cast<std::int64_t>(rank));
    s.scalars["world_size"] = optreg::Value(std::int64_t{2});
    s.scalars["generation"] = optreg::Value(generation);
    s.tensors.push_back(NamedTensor{"pieces", table(rows)});
    r.sections.push_back(s);
    return r;
  }

  std::string file(std::uint32_t rank) const { return optreg::shard_file_path(path, kGeneration, rank, 2); }

  void write() const {
    std::filesystem::create_directories(optreg::shard_folder(path));
    optreg::save_checkpoint(file(0), rank_file(0));
    optreg::save_checkpoint(file(1), rank_file(1));
    optreg::save_checkpoint(path, manifest());
  }
};

TEST(ShardedCheckpoint, AssemblesWhatOneProcessWouldHaveSaved) {
  Sharded s;
  s.write();
  optreg::ShardManifest m;
  const Checkpoint c = optreg::read_any_checkpoint(s.path, &m);
  EXPECT_EQ(m.world_size, 2u);
  EXPECT_EQ(m.generation, kGeneration);
  ASSERT_EQ(m.pieces.size(), 3u);
  EXPECT_EQ(m.pieces[1].offset, 5u);
  EXPECT_EQ(m.pieces[1].rank, 1u);
  ASSERT_EQ(c.optimizer.state.size(), 2u);
  const ParamState& w = c.optimizer.state.at(0);
  EXPECT_EQ(w.tensor("exp_avg").shape(), (optreg::Shape{4, 3}));
  EXPECT_EQ(w.tensor("exp_avg").to_vector(), range(0, 12, {4, 3}).to_vector());
  EXPECT_EQ(std::get<std::int64_t>(w.scalar("step")), 3);
  EXPECT_EQ(c.optimizer.state.at(1).tensor("exp_avg").to_vector(), range(0, 2, {2}).to_vector());
  EXPECT_TRUE(c.sections.empty()) << "the piece map is the manifest's, not the assembled checkpoint's";
  EXPECT_EQ(c.metadata.at("step").as_int(), 3);
}

TEST(ShardedCheckpoint, PlainCheckpointIsReadAsItIs) {
  Sharded s;
  Checkpoint plain = s.rank_file(1);
  plain.sections.clear();
  optreg::save_checkpoint(s.path, plain);
  optreg::ShardManifest m;
  m.world_size = 9;
  const Checkpoint c = optreg::read_any_checkpoint(s.path, &m);
  EXPECT_EQ(m.world_size, 0u);
  EXPECT_EQ(c.optimizer.state.size(), 2u);
}

TEST(ShardedCheckpoint, MissingRankFileIsNamed) {
  Sharded s;
  s.write();
  std::filesystem::remove(s.file(1));
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, s.file(1)));
}

TEST(ShardedCheckpoint, RankFileOfAnotherSaveIsRefused) {
  Sharded s;
  s.write();
  optreg::save_checkpoint(s.file(1), s.rank_file(1, "0000000000000001"));
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           "it is not rank 1 of 2 of save 00000000deadbeef"));
}

TEST(ShardedCheckpoint, RankFileInAnotherRanksPlaceIsRefused) {
  Sharded s;
  s.write();
  optreg::save_checkpoint(s.file(0), s.rank_file(1));
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, s.file(0)));
}

TEST(ShardedCheckpoint, OverlappingPiecesAreRefused) {
  Sharded s;
  s.pieces = {{0, 0, 6, 0}, {0, 5, 7, 1}, {1, 0, 2, 1}};
  s.write();
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "does not continue"));
}

TEST(ShardedCheckpoint, UncoveredParameterIsRefused) {
  Sharded s;
  s.pieces = {{0, 0, 5, 0}, {0, 5, 7, 1}};
  s.write();
  EXPECT_TRUE(
      throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "parameter 1 ('b') is not covered"));
}

TEST(ShardedCheckpoint, RankOutOfRangeIsRefused) {
  Sharded s;
  s.pieces = {{0, 0, 5, 0}, {0, 5, 7, 2}, {1, 0, 2, 1}};
  s.write();
  EXPECT_TRUE(
      throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "rank 2 is out of range (2 ranks)"));
}

TEST(ShardedCheckpoint, PieceTheManifestGivesAnotherRankIsRefused) {
  Sharded s;
  s.pieces = {{0, 0, 5, 1}, {0, 5, 7, 0}, {1, 0, 2, 1}};
  s.write();
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "is no piece of rank"));
}

TEST(ShardedCheckpoint, PiecesThatDisagreeOnAScalarAreRefused) {
  Sharded s;
  s.write();
  Checkpoint r1 = s.rank_file(1);
  r1.optimizer.state[0] = state_of(5, 7, {7}, 4);
  optreg::save_checkpoint(s.file(1), r1);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           s.file(1) + ": parameter 0 ('w'), elements [5, 12) (rank 1): its state "
                                                       "entries or scalars differ from those of elements [0, 5)"));
}

TEST(ShardedCheckpoint, PieceOfTheWrongSizeIsRefused) {
  Sharded s;
  s.write();
  Checkpoint r1 = s.rank_file(1);
  r1.optimizer.state[0] = state_of(5, 6, {6}, 3);
  optreg::save_checkpoint(s.file(1), r1);
  EXPECT_TRUE(
      throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "has 6 float32 elements, not 7"));
}

TEST(ShardedCheckpoint, ManifestWithStateIsRefused) {
  Sharded s;
  s.write();
  Checkpoint m = s.manifest();
  m.optimizer.state[0] = state_of(0, 12, {4, 3}, 3);
  optreg::save_checkpoint(s.path, m);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "no per-parameter state"));
}

TEST(ShardedCheckpoint, GenerationThatIsNotATokenIsRefused) {
  Sharded s;
  s.write();
  Checkpoint m = s.manifest();
  m.sections[0].scalars["generation"] = optreg::Value(std::string("../../etc"));
  optreg::save_checkpoint(s.path, m);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           "not a token of 16 hexadecimal digits"));
}

TEST(ShardedCheckpoint, PieceMissingFromItsRankFileNamesThatFile) {
  Sharded s;
  s.write();
  Checkpoint r1 = s.rank_file(1);
  r1.optimizer.param_groups[0].params = {0};
  r1.optimizer.state.erase(1);
  r1.sections[0].tensors[0].value = table({{0, 5, 7}});
  optreg::save_checkpoint(s.file(1), r1);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           s.file(1) + ": it holds no state for parameter 1 ('b'), elements [0, 2), "
                                                       "which the manifest gives rank 1"));
}

TEST(ShardedCheckpoint, RankFileThatRepeatsAPieceIsRefused) {
  Sharded s;
  s.write();
  Checkpoint r1 = s.rank_file(1);
  r1.sections[0].tensors[0].value = table({{0, 5, 7}, {0, 5, 7}});
  optreg::save_checkpoint(s.file(1), r1);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           s.file(1) + ": its parameter 1 repeats parameter 0, elements [5, 12)"));
}

TEST(ShardedCheckpoint, StandInRowWithElementsIsRefused) {
  Sharded s;
  s.write();
  Checkpoint r0 = s.rank_file(0);
  r0.sections[0].tensors[0].value = table({{-1, 0, 5}});
  optreg::save_checkpoint(s.file(0), r0);
  EXPECT_TRUE(
      throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "a stand-in row must be (-1, 0, 0)"));
}

TEST(ShardedCheckpoint, RankFileOfAnotherPluginVersionIsRefused) {
  Sharded s;
  s.write();
  Checkpoint r1 = s.rank_file(1);
  r1.optimizer.plugin_version = "2";
  optreg::save_checkpoint(s.file(1), r1);
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           s.file(1) + ": it holds the state of 'adam' 2, the manifest of 'adam' 1"));
}

TEST(ShardedCheckpoint, NegativeNumberInThePieceMapIsNamedByItsRow) {
  Sharded s;
  s.pieces = {{0, 0, 5, 0}, {-1, 5, 7, 1}, {1, 0, 2, 1}};
  s.write();
  EXPECT_TRUE(throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); },
                                           "section 'shards', piece 1: a negative number"));
}

TEST(ShardedCheckpoint, ParameterOfNoElementsIsOnePieceOfNone) {
  Sharded s;
  s.pieces = {{0, 0, 5, 0}, {0, 5, 7, 1}, {1, 0, 2, 1}, {2, 0, 0, 0}};
  std::filesystem::create_directories(optreg::shard_folder(s.path));
  Checkpoint m = s.manifest();
  m.parameters.push_back(NamedTensor{"empty", Tensor(optreg::Shape{0, 3})});
  m.optimizer.param_groups[0].params.push_back(2);
  Checkpoint r0 = s.rank_file(0);
  r0.optimizer.param_groups[0].params.push_back(1);
  r0.optimizer.state[1] = state_of(0, 0, {0, 3}, 3);
  r0.sections[0].tensors[0].value = table({{0, 0, 5}, {2, 0, 0}});
  optreg::save_checkpoint(s.file(0), r0);
  optreg::save_checkpoint(s.file(1), s.rank_file(1));
  optreg::save_checkpoint(s.path, m);
  const Checkpoint c = optreg::read_any_checkpoint(s.path);
  ASSERT_EQ(c.optimizer.state.size(), 3u);
  EXPECT_EQ(c.optimizer.state.at(2).tensor("exp_avg").shape(), (optreg::Shape{0, 3}));

  m.sections[0].tensors[0].value = table({{0, 0, 5, 0}, {0, 5, 7, 1}, {1, 0, 2, 1}, {2, 0, 0, 0}, {2, 0, 0, 1}});
  optreg::save_checkpoint(s.path, m);
  EXPECT_TRUE(
      throws_with<CheckpointError>([&] { optreg::read_any_checkpoint(s.path); }, "piece 4 (parameter 2 'empty')"))
      << "a second piece of nothing";
}

TEST(ShardedCheckpoint, CutStateTakesElementwiseEntriesAndRefusesOthers) {
  const ParamState whole = state_of(0, 12, {4, 3}, 3);
  const ParamState part = optreg::cut_state(whole, {4, 3}, 5, 7, "parameter 0");
  EXPECT_EQ(part.tensor("exp_avg").to_vector(), range(5, 7, {7}).to_vector());
  EXPECT_EQ(std::get<std::int64_t>(part.scalar("step")), 3);
  EXPECT_EQ(optreg::cut_state(whole, {4, 3}, 0, 12, "p").tensor("exp_avg").shape(), (optreg::Shape{4, 3}));
  ParamState factored;
  factored.add_tensor("row", Tensor({4}));
  EXPECT_TRUE(throws_with<optreg::StateDictError>(
      [&] {
        optreg::cut_state(factored, {4, 3}, 0, 5, "parameter 0");
      },
      "cannot be split between ranks"));
  EXPECT_TRUE(throws_with<optreg::StateDictError>(
      [&] {
        optreg::cut_state(whole, {4, 3}, 10, 5, "parameter 0");
      },
      "lie outside"));
}

}  // namespace
