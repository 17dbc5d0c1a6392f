#include <optreg/sharded_checkpoint.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>

namespace optreg {
namespace {

const CheckpointSection* find_section(const Checkpoint& c, const std::string& name) noexcept {
  for (const auto& s : c.sections) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const Tensor* find_tensor(const CheckpointSection& s, const std::string& name) noexcept {
  for (const auto& t : s.tensors) {
    if (t.name == name) return &t.value;
  }
  return nullptr;
}

/// Scalar `name` of section `s` as an integer in [0, limit]; throws CheckpointError at `path`.
std::uint64_t section_count(const CheckpointSection& s, const std::string& name, std::uint64_t limit,
                            const std::string& path) {
  const auto it = s.scalars.find(name);
  if (it == s.scalars.end() || it->second.type() != ValueType::Int || it->second.as_int() < 0 ||
      static_cast<std::uint64_t>(it->second.as_int()) > limit) {
    throw CheckpointError(path,
                          "section '" + s.name + "' lacks a valid '" + name + "' (0 to " + std::to_string(limit) + ")");
  }
  return static_cast<std::uint64_t>(it->second.as_int());
}

std::string section_string(const CheckpointSection& s, const std::string& name, const std::string& path) {
  const auto it = s.scalars.find(name);
  if (it == s.scalars.end() || it->second.type() != ValueType::String) {
    throw CheckpointError(path, "section '" + s.name + "' lacks the string '" + name + "'");
  }
  return it->second.as_string();
}

/// The rows of float64 table `name` (`columns` whole numbers each) of section `s`.
std::vector<std::vector<std::uint64_t>> section_table(const CheckpointSection& s, const std::string& name,
                                                      std::size_t columns, const std::string& path) {
  const Tensor* t = find_tensor(s, name);
  if (t == nullptr || t->dtype() != DType::Float64 || t->dim() != 2 ||
      t->shape()[1] != static_cast<std::int64_t>(columns)) {
    throw CheckpointError(path, "section '" + s.name + "' lacks its table '" + name + "' (float64, " +
                                    std::to_string(columns) + " columns)");
  }
  const double* d = t->data_as<double>();
  std::vector<std::vector<std::uint64_t>> rows(static_cast<std::size_t>(t->shape()[0]));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < columns; ++c) {
      const double v = d[r * columns + c];
      if (!(v >= -1.0 && v <= 9007199254740992.0) || v != static_cast<double>(static_cast<std::int64_t>(v))) {
        throw CheckpointError(
            path, "section '" + s.name + "', table '" + name + "', row " + std::to_string(r) + ": not a whole number");
      }
      rows[r].push_back(v < 0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(v));
    }
  }
  return rows;
}

bool quantized(DType d) noexcept { return d == DType::QInt8 || d == DType::QUInt8; }

std::string piece_text(std::uint64_t offset, std::uint64_t count) {
  return "elements [" + std::to_string(offset) + ", " + std::to_string(offset + count) + ")";
}

/// The state of one parameter put together from its pieces' states (sorted by offset), which
/// cover it exactly. Throws CheckpointError naming the rank file (`file_of` a piece) whose
/// piece disagrees with the first.
ParamState join_states(const std::vector<std::pair<ShardPiece, const ParamState*>>& parts, const Shape& shape,
                       const std::string& where, const std::function<std::string(const ShardPiece&)>& file_of) {
  const ParamState& first = *parts.front().second;
  if (parts.size() == 1) return first;  // the whole tensor
  const auto fail = [&](const ShardPiece& piece, const std::string& why) {
    throw CheckpointError(file_of(piece), where + ", " + piece_text(piece.offset, piece.count) + " (rank " +
                                              std::to_string(piece.rank) + "): " + why);
  };
  for (const auto& [piece, state] : parts) {  // the same entries, in the same order, in every piece
    bool same = state->num_tensors() == first.num_tensors() && state->num_scalars() == first.num_scalars();
    for (std::size_t e = 0; same && e < first.num_tensors(); ++e)
      same = state->tensors()[e].first == first.tensors()[e].first;
    for (std::size_t e = 0; same && e < first.num_scalars(); ++e) {
      same = state->scalars()[e].first == first.scalars()[e].first &&
             state->scalars()[e].second == first.scalars()[e].second;
    }
    if (!same) {
      fail(piece, "its state entries or scalars differ from those of " +
                      piece_text(parts.front().first.offset, parts.front().first.count));
    }
  }
  ParamState out;
  for (const auto& [name, value] : first.scalars()) out.add_scalar(name, value);
  for (std::size_t e = 0; e < first.num_tensors(); ++e) {
    const auto& [name, t0] = first.tensors()[e];
    if (quantized(t0.dtype())) fail(parts.front().first, "state entry '" + name + "' is quantized and cannot be split");
    Tensor whole = Tensor::uninitialized(shape, t0.dtype());
    auto* dst = static_cast<unsigned char*>(whole.raw());
    for (const auto& [piece, state] : parts) {
      const Tensor& t = state->tensors()[e].second;
      if (t.dtype() != t0.dtype() || t.numel() != piece.count) {
        fail(piece, "state entry '" + name + "' has " + std::to_string(t.numel()) + " " + dtype_name(t.dtype()) +
                        " elements, not " + std::to_string(piece.count) + " " + dtype_name(t0.dtype()));
      }
      std::memcpy(dst + piece.offset * t.element_size(), t.raw(), piece.count * t.element_size());
    }
    out.add_tensor(name, std::move(whole));
  }
  return out;
}

}  // namespace

bool is_shard_manifest(const Checkpoint& checkpoint) noexcept {
  return find_section(checkpoint, kShardsSection) != nullptr;
}

ShardManifest read_shard_manifest(const Checkpoint& manifest, const std::string& path) {
  const CheckpointSection* s = find_section(manifest, kShardsSection);
  if (s == nullptr) throw CheckpointError(path, "not a sharded checkpoint: it has no 'shards' section");
  ShardManifest m;
  m.world_size = static_cast<std::uint32_t>(section_count(*s, "world_size", 1u << 20, path));
  if (m.world_size == 0) throw CheckpointError(path, "section 'shards': world_size is 0");
  m.generation = section_string(*s, "generation", path);
  if (m.generation.size() != 16 || m.generation.find_first_not_of("0123456789abcdef") != std::string::npos) {
    throw CheckpointError(path, "section 'shards': the generation is not a token of 16 hexadecimal digits");
  }
  const auto& params = manifest.parameters;
  std::vector<std::uint64_t> covered(params.size(), 0);
  std::vector<bool> started(params.size(), false);
  const auto rows = section_table(*s, "pieces", 4, path);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const std::string at = "section 'shards', piece " + std::to_string(r);
    for (std::uint64_t v : row) {
      if (v == ~std::uint64_t{0}) throw CheckpointError(path, at + ": a negative number");
    }
    ShardPiece p{row[0], row[1], row[2], static_cast<std::uint32_t>(row[3])};
    if (p.param >= params.size()) {
      throw CheckpointError(path, at + ": parameter " + std::to_string(p.param) + " is out of range (" +
                                      std::to_string(params.size()) + " parameters)");
    }
    const std::string of = at + " (parameter " + std::to_string(p.param) + " '" + params[p.param].name + "')";
    if (row[3] >= m.world_size) {
      throw CheckpointError(path, of + ": rank " + std::to_string(row[3]) + " is out of range (" +
                                      std::to_string(m.world_size) + " ranks)");
    }
    const std::uint64_t n = params[p.param].value.numel();
    // A parameter of no elements is one piece of none.
    const bool empty_ok = n == 0 && p.count == 0 && !started[p.param];
    if ((p.count == 0 && !empty_ok) || p.offset > n || p.count > n - p.offset || p.offset != covered[p.param]) {
      throw CheckpointError(path, of + ": " + piece_text(p.offset, p.count) + " does not continue its pieces at " +
                                      std::to_string(covered[p.param]) + " within its " + std::to_string(n) +
                                      " elements");
    }
    started[p.param] = true;
    covered[p.param] += p.count;
    m.pieces.push_back(p);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!started[i] || covered[i] != params[i].value.numel()) {
      throw CheckpointError(path, "section 'shards': parameter " + std::to_string(i) + " ('" + params[i].name +
                                      "') is not covered by its pieces");
    }
  }
  return m;
}

std::string shard_folder(const std::string& path) { return path + ".shards"; }

std::string shard_file_path(const std::string& path, const std::string& generation, std::uint32_t rank,
                            std::uint32_t world_size) {
  return shard_folder(path) + "/" + generation + "-rank-" + std::to_string(rank) + "-of-" + std::to_string(world_size);
}

Checkpoint read_any_checkpoint(const std::string& path, ShardManifest* manifest) {
  Checkpoint c = read_checkpoint(path);
  if (!is_shard_manifest(c)) {
    if (manifest != nullptr) *manifest = ShardManifest{};
    return c;
  }
  ShardManifest m = read_shard_manifest(c, path);
  if (!c.optimizer.state.empty()) throw CheckpointError(path, "a manifest holds no per-parameter state");
  // Every piece's state, found in its rank's file.
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::size_t> piece_at;  // (param, offset) -> piece
  for (std::size_t k = 0; k < m.pieces.size(); ++k)
    piece_at.emplace(std::make_pair(m.pieces[k].param, m.pieces[k].offset), k);
  std::vector<ParamState> states(m.pieces.size());
  std::vector<bool> found(m.pieces.size(), false);
  const auto file_of = [&](const ShardPiece& p) { return shard_file_path(path, m.generation, p.rank, m.world_size); };
  for (std::uint32_t r = 0; r < m.world_size; ++r) {
    const std::string file = shard_file_path(path, m.generation, r, m.world_size);
    Checkpoint shard = read_checkpoint(file);
    const CheckpointSection* s = find_section(shard, kShardSection);
    if (s == nullptr) throw CheckpointError(file, "not a rank file of a sharded checkpoint: it has no 'shard' section");
    if (section_string(*s, "generation", file) != m.generation || section_count(*s, "rank", m.world_size, file) != r ||
        section_count(*s, "world_size", m.world_size, file) != m.world_size) {
      throw CheckpointError(file, "it is not rank " + std::to_string(r) + " of " + std::to_string(m.world_size) +
                                      " of save " + m.generation + " that the manifest names");
    }
    if (shard.optimizer.optimizer != c.optimizer.optimizer ||
        shard.optimizer.plugin_version != c.optimizer.plugin_version) {
      throw CheckpointError(file, "it holds the state of '" + shard.optimizer.optimizer + "' " +
                                      shard.optimizer.plugin_version + ", the manifest of '" + c.optimizer.optimizer +
                                      "' " + c.optimizer.plugin_version);
    }
    const auto rows = section_table(*s, "pieces", 3, file);
    for (std::size_t local = 0; local < rows.size(); ++local) {
      const auto& row = rows[local];
      const std::string at = "its parameter " + std::to_string(local);
      if (row[0] == ~std::uint64_t{0}) {  // a stand-in for a group this rank holds nothing of
        if (row[1] != 0 || row[2] != 0) throw CheckpointError(file, at + ": a stand-in row must be (-1, 0, 0)");
        continue;
      }
      const auto it = piece_at.find(std::make_pair(row[0], row[1]));
      if (it == piece_at.end() || m.pieces[it->second].count != row[2] || m.pieces[it->second].rank != r) {
        throw CheckpointError(file, at + " (parameter " + std::to_string(row[0]) + ", " + piece_text(row[1], row[2]) +
                                        ") is no piece of rank " + std::to_string(r) + " in the manifest");
      }
      if (found[it->second]) {
        throw CheckpointError(file,
                              at + " repeats parameter " + std::to_string(row[0]) + ", " + piece_text(row[1], row[2]));
      }
      const auto st = shard.optimizer.state.find(local);
      if (st == shard.optimizer.state.end()) throw CheckpointError(file, "no state for " + at);
      states[it->second] = std::move(st->second);
      found[it->second] = true;
    }
  }
  std::vector<std::vector<std::pair<ShardPiece, const ParamState*>>> parts(c.parameters.size());
  for (std::size_t k = 0; k < m.pieces.size(); ++k) {
    const ShardPiece& p = m.pieces[k];
    if (!found[k]) {
      throw CheckpointError(file_of(p), "it holds no state for parameter " + std::to_string(p.param) + " ('" +
                                            c.parameters[p.param].name + "'), " + piece_text(p.offset, p.count) +
                                            ", which the manifest gives rank " + std::to_string(p.rank));
    }
    parts[p.param].emplace_back(p, &states[k]);  // in offset order: the manifest's pieces are
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    c.optimizer.state[i] = join_states(parts[i], c.parameters[i].value.shape(),
                                       "parameter " + std::to_string(i) + " ('" + c.parameters[i].name + "')", file_of);
  }
  c.sections.erase(std::remove_if(c.sections.begin(), c.sections.end(),
                                  [](const CheckpointSection& s) { return s.name == kShardsSection; }),
                   c.sections.end());
  if (manifest != nullptr) *manifest = std::move(m);
  return c;
}

ParamState cut_state(const ParamState& whole, const Shape& shape, std::uint64_t offset, std::uint64_t count,
                     const std::string& where) {
  const std::size_t numel = numel_of(shape);
  if (offset == 0 && count == numel) return whole;
  if (count == 0 || offset > numel || count > numel - offset) {
    throw StateDictError(where + ": " + piece_text(offset, count) + " lie outside its " + std::to_string(numel) +
                         " elements");
  }
  ParamState out;
  for (const auto& [name, value] : whole.scalars()) out.add_scalar(name, value);
  for (const auto& [name, t] : whole.tensors()) {
    if (quantized(t.dtype()) || t.numel() != numel) {
      throw StateDictError(where + ": state entry '" + name + "' (" + dtype_name(t.dtype()) + ", " +
                           to_string(t.shape()) +
                           ") cannot be split between ranks; its optimizer needs whole tensors "
                           "(abi::kOptimizerWholeTensors)");
    }
    Tensor part = Tensor::uninitialized(Shape{static_cast<std::int64_t>(count)}, t.dtype());
    std::memcpy(part.raw(), static_cast<const unsigned char*>(t.raw()) + offset * t.element_size(),
                count * t.element_size());
    out.add_tensor(name, std::move(part));
  }
  return out;
}

}  // namespace optreg
