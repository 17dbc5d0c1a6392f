#include <optreg/mpi.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/dtype.hpp>
#include <optreg/state_dict.hpp>

namespace optreg::mpi {
namespace {

__extension__ using Wide = unsigned __int128;  // a byte position times the world size

/// A float32 weight for float32 arithmetic, as reduce_in_order() documents.
template <typename A>
A weight_as(double w) noexcept {
  return static_cast<A>(w);
}

template <typename T>
T load(const unsigned char* bytes, std::size_t i) noexcept {
  T x;
  std::memcpy(&x, bytes + i * sizeof(T), sizeof(T));
  return x;
}

template <typename T>
using Accumulator = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
Accumulator<T> widen(T x) noexcept {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return x;
  } else {
    return to_float(x);
  }
}

template <typename T>
T narrow(Accumulator<T> x) noexcept {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return x;
  } else {
    return from_float<T>(x);
  }
}

/// The fold of reduce_in_order() over `count` elements of type T at each of `parts`, written to `out`.
template <typename T>
void fold_as(const std::vector<const unsigned char*>& parts, const std::vector<double>& weights, std::size_t count,
             unsigned char* out, std::vector<Accumulator<T>>& acc) {
  using A = Accumulator<T>;
  const bool weighted = !weights.empty();
  acc.resize(count);
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const unsigned char* in = parts[k];
    if (weighted) {
      const A w = weight_as<A>(weights[k]);
      if (k == 0) {
        for (std::size_t i = 0; i < count; ++i) acc[i] = w * widen(load<T>(in, i));
      } else {
        for (std::size_t i = 0; i < count; ++i) acc[i] = acc[i] + w * widen(load<T>(in, i));
      }
    } else if (k == 0) {
      for (std::size_t i = 0; i < count; ++i) acc[i] = widen(load<T>(in, i));
    } else {
      for (std::size_t i = 0; i < count; ++i) acc[i] = acc[i] + widen(load<T>(in, i));
    }
  }
  const A n = static_cast<A>(parts.size());
  for (std::size_t i = 0; i < count; ++i) {
    const T v = narrow<T>(weighted ? acc[i] : acc[i] / n);
    std::memcpy(out + i * sizeof(T), &v, sizeof(T));
  }
}

struct FoldBuffers {
  std::vector<float> f;
  std::vector<double> d;
};

void fold(DType dtype, const std::vector<const unsigned char*>& parts, const std::vector<double>& weights,
          std::size_t count, unsigned char* out, FoldBuffers& buffers) {
  switch (dtype) {
    case DType::Float32:
      return fold_as<float>(parts, weights, count, out, buffers.f);
    case DType::Float64:
      return fold_as<double>(parts, weights, count, out, buffers.d);
    case DType::BFloat16:
      return fold_as<bfloat16>(parts, weights, count, out, buffers.f);
    case DType::Float16:
      return fold_as<float16>(parts, weights, count, out, buffers.f);
    default:
      throw UsageError(std::string("gradients of dtype ") + dtype_name(dtype) + " cannot be reduced");
  }
}

/// FNV-1a, for comparing what ranks were made with.
std::uint64_t fnv1a(const std::string& s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string value_text(const Value& v) {
  switch (v.type()) {
    case ValueType::Bool:
      return v.as_bool() ? "true" : "false";
    case ValueType::Int:
      return std::to_string(v.as_int());
    case ValueType::Float: {
      const double d = v.as_float();
      std::uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      return "f" + std::to_string(bits);
    }
    case ValueType::String:
      return "s" + v.as_string();
    case ValueType::FloatList: {
      std::string out = "[";
      for (double d : v.as_float_list()) out += value_text(Value(d)) + ",";
      return out + "]";
    }
  }
  return "?";
}

bool option_is(const Options& o, const char* name, const char* value) {
  const auto it = o.find(name);
  return it != o.end() && it->second.type() == ValueType::String && it->second.as_string() == value;
}

/// What a sharded optimizer cannot step, or must keep whole, given its optimizers' flags and
/// every group's options.
bool needs_whole(std::uint32_t flags, const std::vector<const Options*>& options, const std::string& who) {
  if ((flags & abi::kOptimizerNeedsClosure) != 0) {
    throw UsageError("optimizer '" + who +
                     "' is stepped with a closure that re-evaluates the loss, which a sharded optimizer cannot "
                     "give it (each rank holds part of its state)");
  }
  bool whole = (flags & (abi::kOptimizerWholeTensors | abi::kOptimizerMatricesOnly)) != 0;
  for (const Options* o : options) {
    if (option_is(*o, "rounding", "stochastic")) {
      throw UsageError("optimizer '" + who +
                       "': rounding: stochastic is seeded by each parameter's id, which a sharded optimizer's "
                       "pieces do not keep; use rounding: nearest or master_weights: true");
    }
    if (option_is(*o, "state_dtype", "int8")) whole = true;  // quantized blocks stay whole
  }
  return whole;
}

/// Communicator::agree() on the outcome of a phase: a rank that failed throws its own error
/// (its type kept), the others a RankError naming it.
void agree_or_rethrow(Communicator& comm, const std::exception_ptr& failure, const std::string& error,
                      const std::string& what, double timeout_seconds = 0) {
  try {
    comm.agree(error, what, timeout_seconds);
  } catch (const RankError&) {
    if (failure) std::rethrow_exception(failure);
    throw;
  }
}

/// Whether `file` is a rank file's name: 16 hexadecimal digits, "-rank-R-of-N".
bool rank_file_name(const std::string& file) {
  if (file.size() < 16 + 6 + 1 + 4 + 1 || file.find_first_not_of("0123456789abcdef") != 16) return false;
  const std::string rest = file.substr(16);
  const auto digits = [&](std::size_t from, std::size_t to) {
    return to > from && rest.find_first_not_of("0123456789", from) >= to;
  };
  if (rest.rfind("-rank-", 0) != 0) return false;
  const std::size_t of = rest.find("-of-", 6);
  return of != std::string::npos && digits(6, of) && digits(of + 4, rest.size()) &&
         rest.find_first_not_of("0123456789", of + 4) == std::string::npos;
}

std::string generation_token() {
  std::random_device device;
  const auto now = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  std::uint64_t x = (static_cast<std::uint64_t>(device()) << 32 ^ device()) ^ now;
  static const char* hex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, x >>= 4) out[static_cast<std::size_t>(i)] = hex[x & 15];
  return out;
}

Tensor table(const std::vector<std::vector<double>>& rows, std::size_t columns) {
  Tensor t(Shape{static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(columns)}, DType::Float64);
  double* d = t.data_as<double>();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < columns; ++c) d[r * columns + c] = rows[r][c];
  }
  return t;
}

/// Elements [offset, offset + count) of `t` as a tensor of `shape`.
Tensor cut_value(const Tensor& t, std::uint64_t offset, std::uint64_t count, const Shape& shape) {
  if (offset == 0 && count == t.numel()) return t;
  Tensor part = Tensor::uninitialized(shape, t.dtype());
  std::memcpy(part.raw(), static_cast<const unsigned char*>(t.raw()) + offset * t.element_size(),
              count * t.element_size());
  return part;
}

}  // namespace

Tensor reduce_in_order(const std::vector<Tensor>& contributions, const std::vector<double>& weights) {
  if (contributions.empty()) throw UsageError("reduce_in_order: no contribution");
  if (!weights.empty() && weights.size() != contributions.size()) {
    throw UsageError("reduce_in_order: " + std::to_string(weights.size()) + " weights for " +
                     std::to_string(contributions.size()) + " contributions");
  }
  const Tensor& first = contributions.front();
  std::vector<const unsigned char*> parts;
  for (std::size_t k = 0; k < contributions.size(); ++k) {
    const Tensor& c = contributions[k];
    if (c.shape() != first.shape() || c.dtype() != first.dtype()) {
      throw UsageError("reduce_in_order: contribution " + std::to_string(k) + " is " + dtype_name(c.dtype()) + " " +
                       to_string(c.shape()) + ", contribution 0 " + dtype_name(first.dtype()) + " " +
                       to_string(first.shape()));
    }
    parts.push_back(static_cast<const unsigned char*>(c.raw()));
  }
  Tensor out(first.shape(), first.dtype());
  FoldBuffers buffers;
  fold(first.dtype(), parts, weights, first.numel(), static_cast<unsigned char*>(out.raw()), buffers);
  return out;
}

std::vector<ShardPiece> plan_shards(const std::vector<Shape>& shapes, const std::vector<DType>& dtypes, int world_size,
                                    bool whole, std::size_t split_elements) {
  if (world_size < 1) throw UsageError("plan_shards: the world size must be at least 1");
  if (shapes.size() != dtypes.size()) throw UsageError("plan_shards: one dtype per shape is needed");
  const auto n = static_cast<std::uint64_t>(world_size);
  std::vector<ShardPiece> pieces;
  if (whole || split_elements == 0) {
    // Largest first, each to the least loaded rank (the lowest of equals).
    std::vector<std::size_t> order(shapes.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto bytes = [&](std::size_t i) { return numel_of(shapes[i]) * dtype_size(dtypes[i]); };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return bytes(a) > bytes(b); });
    std::vector<std::uint64_t> load(n, 0);
    std::vector<std::uint32_t> owner(shapes.size(), 0);
    for (std::size_t i : order) {
      const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      owner[i] = static_cast<std::uint32_t>(r);
      load[r] += bytes(i);
    }
    for (std::size_t i = 0; i < shapes.size(); ++i) pieces.push_back(ShardPiece{i, 0, numel_of(shapes[i]), owner[i]});
    return pieces;
  }
  // Contiguous: the parameters' bytes in id order cut into world_size equal ranges; a block of
  // split_elements elements goes to the rank whose range holds its first byte.
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < shapes.size(); ++i) total += numel_of(shapes[i]) * dtype_size(dtypes[i]);
  std::uint64_t start = 0;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const std::uint64_t numel = numel_of(shapes[i]);
    const std::uint64_t es = dtype_size(dtypes[i]);
    auto owner_at = [&](std::uint64_t element) {
      const Wide pos = Wide{start} + Wide{element} * es;
      return static_cast<std::uint32_t>(std::min<Wide>(pos * n / std::max<std::uint64_t>(total, 1), n - 1));
    };
    std::uint64_t from = 0;
    std::uint32_t rank = owner_at(0);
    for (std::uint64_t block = split_elements; block < numel; block += split_elements) {
      const std::uint32_t r = owner_at(block);
      if (r == rank) continue;
      pieces.push_back(ShardPiece{i, from, block - from, rank});
      from = block;
      rank = r;
    }
    pieces.push_back(ShardPiece{i, from, numel - from, rank});
    start += numel * es;
  }
  return pieces;
}

struct ShardedOptimizer::Piece {
  Piece(Parameter p, Tensor g) : local(std::move(p)), grad(std::move(g)) {}
  std::size_t index = 0;  // in pieces_
  std::size_t param = 0;
  std::uint64_t offset = 0;
  std::uint64_t count = 0;
  Shape shape;
  Parameter local;  // a view of the global parameter's elements
  Tensor grad;
  const void* viewed = nullptr;
};

ShardedOptimizer::ShardedOptimizer(Communicator& comm, std::vector<Parameter> params, std::vector<ShardPiece> pieces,
                                   bool whole)
    : comm_(comm), params_(std::move(params)), pieces_(std::move(pieces)), whole_(whole) {}

ShardedOptimizer::~ShardedOptimizer() = default;

namespace {

/// Parameters in id order (by first appearance across groups) and each group as ids; throws
/// UsageError for a parameter given twice.
std::vector<Parameter> ids_of(const std::vector<std::vector<Parameter>>& groups,
                              std::vector<std::vector<std::size_t>>& members) {
  std::vector<Parameter> params;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    members.emplace_back();
    for (const Parameter& p : groups[g]) {
      for (std::size_t j = 0; j < params.size(); ++j) {
        if (params[j].same_as(p)) {
          throw UsageError("sharded optimizer, param group " + std::to_string(g), p.name(),
                           static_cast<std::int64_t>(members.back().size()), "the parameter appears twice");
        }
      }
      members.back().push_back(params.size());
      params.push_back(p);
    }
  }
  return params;
}

std::vector<ShardPiece> plan_for(const std::vector<Parameter>& params, int world, bool whole,
                                 const ShardSettings& settings) {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  for (const Parameter& p : params) {
    shapes.push_back(p.value().shape());
    dtypes.push_back(p.value().dtype());
  }
  return plan_shards(shapes, dtypes, world, whole, settings.split_elements);
}

}  // namespace

std::unique_ptr<ShardedOptimizer> ShardedOptimizer::create(Communicator& comm, const Registry& registry,
                                                           const std::string& name, std::vector<ParamGroupSpec> groups,
                                                           const Options& options, const ShardSettings& settings) {
  if (settings.timeout_seconds > 0) comm.set_timeout(settings.timeout_seconds);
  const std::optional<OptimizerDescriptor> d = registry.find(name);
  if (!d) registry.create(name, std::vector<ParamGroupSpec>{}, options);  // throws the registry's own error
  std::vector<const Options*> all{&options};
  for (const auto& g : groups) all.push_back(&g.options);
  const bool whole = needs_whole(d ? d->flags : 0, all, name);
  std::vector<std::vector<Parameter>> lists;
  for (const auto& g : groups) lists.push_back(g.params);
  std::vector<std::vector<std::size_t>> members;
  std::vector<Parameter> params = ids_of(lists, members);
  std::unique_ptr<ShardedOptimizer> s(
      new ShardedOptimizer(comm, params, plan_for(params, comm.size(), whole, settings), whole));
  s->flags_ = d ? d->flags : 0;
  s->who_ = name;
  s->set_file_timeout(settings.file_timeout_seconds);
  s->make_local(members, [&](const GroupSubstitute& substitute) {
    std::vector<ParamGroupSpec> local;
    for (std::size_t g = 0; g < groups.size(); ++g)
      local.push_back(ParamGroupSpec{substitute(g, groups[g].params), groups[g].options});
    return registry.create(name, std::move(local), options);
  });
  return s;
}

std::unique_ptr<ShardedOptimizer> ShardedOptimizer::build(Communicator& comm, const Registry& registry,
                                                          const OptimizerConfig& config, std::vector<Parameter> params,
                                                          const ShardSettings& settings) {
  if (settings.timeout_seconds > 0) comm.set_timeout(settings.timeout_seconds);
  std::vector<ParamInfo> infos;
  for (const auto& p : params) infos.push_back(ParamInfo{p.name(), p.value().shape()});
  // A rank whose registry lacks a plugin the others have fails every rank here.
  std::optional<ConfigCheck> c;
  std::exception_ptr failure;
  std::string error;
  try {
    c = resolve_config_with_shapes(config, registry, infos);
    if (!c->errors.empty()) throw c->errors.front();
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  agree_or_rethrow(comm, failure, error, "resolving the config '" + config.source + "' on every rank");
  const ResolvedConfig& r = *c->resolved;
  std::uint32_t flags = r.optimizer.flags;
  for (const auto& o : r.group_optimizers) flags |= o.flags;
  for (const auto& w : r.wrappers) flags |= w.descriptor.flags;
  std::vector<const Options*> all{&r.defaults};
  for (const auto& g : r.groups) all.push_back(&g);
  const bool whole = needs_whole(flags, all, optimizer_names(config));
  std::vector<std::vector<Parameter>> lists;
  for (const auto& g : r.plan->groups) {
    lists.emplace_back();
    for (std::size_t i : g.params) lists.back().push_back(params[i]);
  }
  std::vector<std::vector<std::size_t>> members;
  std::vector<Parameter> ordered = ids_of(lists, members);
  std::unique_ptr<ShardedOptimizer> s(
      new ShardedOptimizer(comm, ordered, plan_for(ordered, comm.size(), whole, settings), whole));
  s->flags_ = flags;
  s->who_ = optimizer_names(config);
  s->set_file_timeout(settings.file_timeout_seconds);
  s->make_local(members, [&](const GroupSubstitute& substitute) {
    return build_optimizer(config, params, registry, substitute);
  });
  return s;
}

void ShardedOptimizer::make_local(const std::vector<std::vector<std::size_t>>& groups,
                                  const std::function<OptimizerPtr(const GroupSubstitute&)>& make) {
  groups_ = groups;
  const auto me = static_cast<std::uint32_t>(comm_.rank());
  local_of_piece_.assign(pieces_.size(), -1);
  for (std::size_t k = 0; k < pieces_.size(); ++k) {
    const ShardPiece& sp = pieces_[k];
    if (sp.rank != me) continue;
    const Parameter& p = params_[sp.param];
    const bool all = sp.offset == 0 && sp.count == p.value().numel();
    const Shape shape = all ? p.value().shape() : Shape{static_cast<std::int64_t>(sp.count)};
    const std::string name =
        all ? p.name() : p.name() + "[" + std::to_string(sp.offset) + ":" + std::to_string(sp.offset + sp.count) + "]";
    auto piece =
        std::make_unique<Piece>(Parameter(name, Tensor(shape, p.value().dtype())), Tensor(shape, p.value().dtype()));
    piece->index = k;
    piece->param = sp.param;
    piece->offset = sp.offset;
    piece->count = sp.count;
    piece->shape = shape;
    local_of_piece_[k] = static_cast<std::int64_t>(mine_.size());
    mine_.push_back(std::move(piece));
  }
  refresh_views();
  std::vector<std::vector<std::int64_t>> substituted(groups_.size());
  GroupSubstitute substitute = [&](std::size_t g, const std::vector<Parameter>& members) {
    if (g >= groups_.size() || members.size() != groups_[g].size()) {
      throw UsageError("sharded optimizer: the optimizer's grouping differs from the plan at group " +
                       std::to_string(g));
    }
    std::vector<Parameter> out;
    for (std::size_t id : groups_[g]) {
      for (std::size_t m = 0; m < mine_.size(); ++m) {
        if (mine_[m]->param != id) continue;
        out.push_back(mine_[m]->local);
        substituted[g].push_back(static_cast<std::int64_t>(m));
      }
    }
    if (out.empty()) {
      // A stand-in, so that the groups (and what sets their options) are the same on every rank.
      const Parameter& first = params_[groups_[g].front()];
      out.emplace_back(
          "<stand-in: rank " + std::to_string(comm_.rank()) + " holds no piece of group " + std::to_string(g) + ">",
          Tensor(Shape{1, 1}, first.value().dtype()));
      substituted[g].push_back(-1);
    }
    return out;
  };
  // A rank that cannot make its optimizer (its pieces' memory, say) fails every rank here,
  // rather than leaving the others waiting for it.
  std::exception_ptr failure;
  std::string error;
  try {
    local_ = make(substitute);
    for (const auto& g : substituted) piece_of_local_.insert(piece_of_local_.end(), g.begin(), g.end());
    local_params_ = local_->parameters();
    if (local_params_.size() != piece_of_local_.size()) {
      throw UsageError("sharded optimizer: the optimizer made over the pieces has " +
                       std::to_string(local_params_.size()) + " parameters, not " +
                       std::to_string(piece_of_local_.size()));
    }
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  agree_or_rethrow(comm_, failure, error, "making the sharded optimizer's optimizer over each rank's pieces");
  // What every rank must agree on: the parameters, the plan (ShardSettings) and the optimizer.
  std::string params_text, optimizer_text = local_->name() + "|" + local_->plugin_version();
  for (const Parameter& p : params_) {
    params_text += p.name() + "|" + to_string(p.value().shape()) + "|" + dtype_name(p.value().dtype()) + ";";
  }
  optimizer_text += "|plan:";
  for (const ShardPiece& p : pieces_) {
    optimizer_text += std::to_string(p.param) + "," + std::to_string(p.offset) + "," + std::to_string(p.count) + "," +
                      std::to_string(p.rank) + ";";
  }
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    optimizer_text += "#";
    for (std::size_t id : groups_[g]) optimizer_text += std::to_string(id) + ",";
    for (const auto& [k, v] : local_->param_groups()[g].options()) optimizer_text += k + "=" + value_text(v) + ";";
  }
  const std::uint64_t mine[2] = {fnv1a(params_text), fnv1a(optimizer_text + (whole_ ? "|whole" : "|split"))};
  const auto all = comm_.allgather(mine, sizeof mine, "checking that every rank made the same sharded optimizer");
  for (int r = 1; r < comm_.size(); ++r) {
    std::uint64_t theirs[2];
    std::memcpy(theirs, all.data() + static_cast<std::size_t>(r) * sizeof mine, sizeof mine);
    std::uint64_t first[2];
    std::memcpy(first, all.data(), sizeof first);
    if (theirs[0] != first[0] || theirs[1] != first[1]) {
      throw RankError(std::string("rank ") + std::to_string(r) + " made its sharded optimizer with other " +
                          (theirs[0] != first[0] ? "parameters (names, shapes or dtypes)"
                                                 : "optimizer, options, param groups or shard settings") +
                          " than rank 0: every rank must run the same config over the same model",
                      r);
    }
  }
}

void ShardedOptimizer::refresh_views() {
  for (auto& piece : mine_) {
    Parameter& global = params_[piece->param];
    Tensor& value = global.value();
    if (value.raw() == piece->viewed && value.dtype() == piece->local.value().dtype()) continue;
    if (value.numel() < piece->offset + piece->count || value.dtype() != piece->local.value().dtype()) {
      throw UsageError("sharded optimizer", global.name(), static_cast<std::int64_t>(piece->param),
                       "its value is now " + std::string(dtype_name(value.dtype())) + " " + to_string(value.shape()) +
                           ", not what the optimizer was made with");
    }
    auto owner = std::make_shared<Tensor>(value);
    void* at = static_cast<unsigned char*>(value.raw()) + piece->offset * value.element_size();
    piece->local.value() =
        Tensor::view(at, value.dtype(), piece->shape, std::shared_ptr<const void>(owner, owner.get()));
    piece->viewed = value.raw();
  }
}

void ShardedOptimizer::contribute(std::optional<double> weight) {
  if (weight && !std::isfinite(*weight)) throw UsageError("sharded optimizer: a contribution's weight must be finite");
  Contribution c;
  c.weight = weight;
  c.present.resize(params_.size());
  c.grads.resize(params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    if (!p.has_grad()) continue;
    c.present[i] = true;
    c.grads[i] = p.grad().clone();
    p.clear_grad();
  }
  contributions_.push_back(std::move(c));
}

ShardedOptimizer& ShardedOptimizer::clear_grad() noexcept {
  for (Parameter& p : params_) p.clear_grad();
  contributions_.clear();
  return *this;
}

std::size_t ShardedOptimizer::state_bytes() const {
  std::size_t total = 0;
  std::size_t local = 0;
  for (const ParamGroup& g : local_->param_groups()) {
    for (const ParamState& s : g.states()) {
      if (piece_of_local_[local++] < 0) continue;
      for (const auto& t : s.tensors()) total += t.second.nbytes();
    }
  }
  return total;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

ShardedOptimizer& ShardedOptimizer::step() {
  auto started = std::chrono::steady_clock::now();
  profile_ = StepProfile{};
  const std::size_t count_params = params_.size();
  const auto n = static_cast<std::size_t>(comm_.size());
  const auto me = static_cast<std::size_t>(comm_.rank());
  // This rank's contributions: those it made, else its present gradients (not copied).
  std::vector<Contribution> implicit;
  const std::vector<Contribution>* contributions = &contributions_;
  std::string error;
  if (contributions_.empty()) {
    Contribution c;
    c.present.resize(count_params);
    c.grads.resize(count_params);
    for (std::size_t i = 0; i < count_params; ++i) {
      if (!params_[i].has_grad()) continue;
      c.present[i] = true;
      c.grads[i] = params_[i].grad();
    }
    implicit.push_back(std::move(c));
    contributions = &implicit;
  }
  // The header every rank sends: an error, the contribution count, whether weighted, and per
  // parameter 0 (no gradient), 1 (a gradient in every contribution) or 2 (in some).
  for (const Contribution& c : *contributions) {
    if (c.weight.has_value() != contributions->front().weight.has_value()) {
      error = "some of its contributions have a weight and some not";
    }
    for (std::size_t i = 0; i < count_params && error.empty(); ++i) {
      if (!c.present[i]) continue;
      const Tensor& g = c.grads[i];
      const Tensor& v = params_[i].value();
      if (g.shape() != v.shape() || g.dtype() != v.dtype()) {
        error = "parameter '" + params_[i].name() + "' (id " + std::to_string(i) + ") has a " + dtype_name(g.dtype()) +
                " " + to_string(g.shape()) + " gradient for its " + dtype_name(v.dtype()) + " " + to_string(v.shape()) +
                " value";
      }
    }
  }
  try {
    refresh_views();
  } catch (const std::exception& e) {
    if (error.empty()) error = e.what();
  }
  constexpr std::size_t kText = 512;
  const std::size_t header_size = 1 + kText + 8 + 1 + count_params;
  std::vector<unsigned char> header(header_size, 0);
  header[0] = error.empty() ? 0 : 1;
  std::memcpy(header.data() + 1, error.data(), std::min(error.size(), kText - 1));
  const std::uint64_t count = contributions->size();
  std::memcpy(header.data() + 1 + kText, &count, 8);
  header[1 + kText + 8] = contributions->front().weight.has_value() ? 1 : 0;
  for (std::size_t i = 0; i < count_params; ++i) {
    std::size_t with = 0;
    for (const Contribution& c : *contributions) with += c.present[i] ? 1 : 0;
    header[1 + kText + 9 + i] = with == 0 ? 0 : with == contributions->size() ? 1 : 2;
  }
  const std::string at_step = "sharded step " + std::to_string(steps_ + 1);
  const auto headers = comm_.allgather(header.data(), header.size(), at_step + ", comparing gradients");
  std::vector<std::uint64_t> counts(n);
  std::vector<bool> present(count_params);
  for (std::size_t r = 0; r < n; ++r) {
    const unsigned char* h = headers.data() + r * header_size;
    if (h[0] != 0) {
      const char* text = reinterpret_cast<const char*>(h + 1);
      throw RankError(at_step + ": rank " + std::to_string(r) + ": " + std::string(text, strnlen(text, kText - 1)),
                      static_cast<int>(r));
    }
    std::memcpy(&counts[r], h + 1 + kText, 8);
    if (h[1 + kText + 8] != headers[1 + kText + 8]) {
      throw RankError(at_step + ": rank " + std::to_string(r) + "'s contributions " +
                          (h[1 + kText + 8] != 0 ? "have" : "lack") + " weights, rank 0's " +
                          (headers[1 + kText + 8] != 0 ? "have" : "lack") + " them",
                      static_cast<int>(r));
    }
    for (std::size_t i = 0; i < count_params; ++i) {
      const unsigned char mark = h[1 + kText + 9 + i];
      if (mark == 2) {
        throw RankError(at_step + ": parameter '" + params_[i].name() + "' (id " + std::to_string(i) +
                            ") has a gradient in some of rank " + std::to_string(r) + "'s contributions but not in all",
                        static_cast<int>(r));
      }
      if (mark != headers[1 + kText + 9 + i]) {
        throw RankError(at_step + ": parameter '" + params_[i].name() + "' (id " + std::to_string(i) +
                            ") has a gradient on rank " + std::to_string(mark != 0 ? r : 0) + " but none on rank " +
                            std::to_string(mark != 0 ? 0 : r) + "; every rank must compute the same gradients",
                        static_cast<int>(r));
      }
      present[i] = mark == 1;
    }
  }
  const bool weighted = headers[1 + kText + 8] != 0;
  // Gradients to their owners: to rank d, for each contribution, its weight, then the bytes of
  // each of d's pieces whose parameter has a gradient, in plan order.
  std::vector<std::size_t> piece_bytes_to(n, 0);
  for (const ShardPiece& sp : pieces_) {
    if (present[sp.param]) piece_bytes_to[sp.rank] += sp.count * params_[sp.param].value().element_size();
  }
  // This rank's own part is not copied: its fold reads its contributions where they are.
  const std::size_t stride = 8 + piece_bytes_to[me];  // one contribution's block in a part received
  send_buffers_.resize(n);
  recv_buffers_.resize(n);
  for (std::size_t d = 0; d < n; ++d) {
    auto& buf = send_buffers_[d];
    buf.resize(d == me ? 0 : contributions->size() * (8 + piece_bytes_to[d]));
    if (d == me) continue;
    std::size_t at = 0;
    for (const Contribution& c : *contributions) {
      const double w = c.weight.value_or(1.0);
      std::memcpy(buf.data() + at, &w, 8);
      at += 8;
      for (const ShardPiece& sp : pieces_) {
        if (sp.rank != d || !present[sp.param]) continue;
        const Tensor& g = c.grads[sp.param];
        const std::size_t es = g.element_size();
        std::memcpy(buf.data() + at, static_cast<const unsigned char*>(g.raw()) + sp.offset * es, sp.count * es);
        at += sp.count * es;
      }
    }
  }
  std::vector<ConstBytes> send(n);
  std::vector<Bytes> recv(n);
  for (std::size_t s = 0; s < n; ++s) {
    recv_buffers_[s].resize(s == me ? 0 : static_cast<std::size_t>(counts[s]) * stride);
    send[s] = ConstBytes{send_buffers_[s].data(), send_buffers_[s].size()};
    recv[s] = Bytes{recv_buffers_[s].data(), recv_buffers_[s].size()};
  }
  comm_.exchange(send, recv, at_step + ", gradients to their owners");
  for (std::size_t r = 0; r < n; ++r) profile_.exchange_bytes += send[r].size + recv[r].size;
  profile_.exchange_seconds = seconds_since(started);
  started = std::chrono::steady_clock::now();
  // Each of this rank's pieces: every rank's contributions folded in rank order.
  std::vector<double> weights;
  for (std::size_t s = 0; s < n; ++s) {
    for (std::uint64_t k = 0; k < counts[s]; ++k) {
      double w;
      if (s == me) {
        w = (*contributions)[k].weight.value_or(1.0);
      } else {
        std::memcpy(&w, recv_buffers_[s].data() + k * stride, 8);
      }
      weights.push_back(w);
    }
  }
  if (!weighted) weights.clear();
  std::exception_ptr failure;
  try {
    FoldBuffers buffers;
    std::size_t offset_in_part = 8;
    std::vector<const unsigned char*> parts;
    for (auto& piece : mine_) {
      if (!present[piece->param]) {
        piece->local.clear_grad();
        continue;
      }
      const std::size_t es = piece->grad.element_size();
      parts.clear();
      for (std::size_t s = 0; s < n; ++s) {
        for (std::uint64_t k = 0; k < counts[s]; ++k) {
          if (s == me) {
            const Tensor& g = (*contributions)[k].grads[piece->param];
            parts.push_back(static_cast<const unsigned char*>(g.raw()) + piece->offset * es);
          } else {
            parts.push_back(recv_buffers_[s].data() + k * stride + offset_in_part);
          }
        }
      }
      fold(piece->grad.dtype(), parts, weights, piece->count, static_cast<unsigned char*>(piece->grad.raw()), buffers);
      offset_in_part += piece->count * es;
      piece->local.set_grad(piece->grad);
    }
    local_->step();
  } catch (const std::exception& e) {
    // Told to every rank with the gather, which they wait in: the step fails on all.
    error = e.what();
    failure = std::current_exception();
  }
  profile_.step_seconds = seconds_since(started);
  started = std::chrono::steady_clock::now();
  gather_values(present, at_step, error, failure);
  profile_.gather_seconds = seconds_since(started);
  contributions_.clear();
  ++steps_;
  return *this;
}

void ShardedOptimizer::gather_values(const std::vector<bool>& present, const std::string& what,
                                     const std::string& error, const std::exception_ptr& failure) {
  const auto n = static_cast<std::size_t>(comm_.size());
  const auto me = static_cast<std::uint32_t>(comm_.rank());
  profile_.gather_bytes = 0;
  if (n == 1) {  // this rank's pieces are views of its parameters: nothing to send
    if (failure) std::rethrow_exception(failure);
    return;
  }
  // Each part begins with a note: whether its rank failed before the gather, and why.
  constexpr std::size_t kNote = 512;
  std::vector<std::size_t> bytes_of(n, kNote);
  for (const ShardPiece& sp : pieces_) {
    if (present[sp.param]) bytes_of[sp.rank] += sp.count * params_[sp.param].value().element_size();
  }
  send_buffers_.resize(n);
  recv_buffers_.resize(n);
  std::vector<unsigned char>& mine = send_buffers_[me];
  mine.assign(bytes_of[me], 0);
  mine[0] = error.empty() ? 0 : 1;
  std::memcpy(mine.data() + 1, error.data(), std::min(error.size(), kNote - 2));
  std::size_t at = kNote;
  for (const ShardPiece& sp : pieces_) {
    if (sp.rank != me || !present[sp.param]) continue;
    const Tensor& v = params_[sp.param].value();
    const std::size_t es = v.element_size();
    std::memcpy(mine.data() + at, static_cast<const unsigned char*>(v.raw()) + sp.offset * es, sp.count * es);
    at += sp.count * es;
  }
  std::vector<ConstBytes> send(n, ConstBytes{mine.data(), mine.size()});
  std::vector<Bytes> recv(n);
  send[me] = ConstBytes{};
  for (std::size_t s = 0; s < n; ++s) {
    recv_buffers_[s].resize(s == me ? 0 : bytes_of[s]);
    recv[s] = Bytes{recv_buffers_[s].data(), recv_buffers_[s].size()};
  }
  comm_.exchange(send, recv, what + ", parameters from their owners");
  for (std::size_t r = 0; r < n; ++r) profile_.gather_bytes += send[r].size + recv[r].size;
  if (failure) std::rethrow_exception(failure);
  for (std::size_t s = 0; s < n; ++s) {
    if (s == me || recv_buffers_[s][0] == 0) continue;
    const char* text = reinterpret_cast<const char*>(recv_buffers_[s].data() + 1);
    throw RankError(what + ": rank " + std::to_string(s) + " failed: " + std::string(text, strnlen(text, kNote - 2)),
                    static_cast<int>(s));
  }
  std::vector<std::size_t> offset(n, kNote);
  for (const ShardPiece& sp : pieces_) {
    if (!present[sp.param] || sp.rank == me) continue;
    const std::size_t s = sp.rank;
    Tensor& v = params_[sp.param].value();
    const std::size_t es = v.element_size();
    std::memcpy(static_cast<unsigned char*>(v.raw()) + sp.offset * es, recv_buffers_[s].data() + offset[s],
                sp.count * es);
    offset[s] += sp.count * es;
  }
}

void ShardedOptimizer::set_file_timeout(double seconds) {
  if (!(seconds > 0) || seconds > 1e7) {
    throw UsageError("ShardSettings::file_timeout_seconds must be a positive number of seconds (at most 1e7), not " +
                     std::to_string(seconds));
  }
  file_timeout_ = seconds;
}

void ShardedOptimizer::write_eval_weights() {
  std::exception_ptr failure;
  std::string error;
  try {
    refresh_views();
    local_->write_eval_weights();
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  gather_values(std::vector<bool>(params_.size(), true), "writing the evaluation weights", error, failure);
}

void ShardedOptimizer::save(const std::string& path, const Options& metadata, const Scheduler* scheduler) {
  const std::string what = "saving sharded checkpoint '" + path + "'";
  const std::string token = comm_.rank() == 0 ? generation_token() : std::string(16, '0');
  const auto tokens = comm_.allgather(token.data(), token.size(), what + ", choosing its generation");
  const std::string generation(reinterpret_cast<const char*>(tokens.data()), 16);
  const auto world = static_cast<std::uint32_t>(comm_.size());
  const auto me = static_cast<std::uint32_t>(comm_.rank());
  const std::string my_file = shard_file_path(path, generation, me, world);
  std::exception_ptr failure;
  std::string error;
  // Every rank's outcome of a phase; a save that fails leaves its files behind on no rank.
  const auto agree_on = [&](const std::string& phase) {
    try {
      agree_or_rethrow(comm_, failure, error, what + ", " + phase, file_timeout_);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove(my_file, ec);
      throw;
    }
  };
  try {
    Checkpoint shard;
    shard.optimizer = local_->state_dict();
    // Quantized blocks (state_dtype: int8 set after the optimizer was made) do not split: a
    // checkpoint with them in a piece could never be assembled.
    for (std::size_t l = 0; l < piece_of_local_.size(); ++l) {
      if (piece_of_local_[l] < 0) continue;
      const Piece& p = *mine_[static_cast<std::size_t>(piece_of_local_[l])];
      if (p.offset == 0 && p.count == params_[p.param].value().numel()) continue;
      const auto st = shard.optimizer.state.find(l);
      if (st == shard.optimizer.state.end()) continue;
      for (const auto& [name, t] : st->second.tensors()) {
        if (is_quantized(t.dtype())) {
          throw CheckpointError(path, "parameter id " + std::to_string(p.param) + " ('" + params_[p.param].name() +
                                          "'): state entry '" + name +
                                          "' is quantized in a piece of the tensor, "
                                          "which no checkpoint can assemble; set state_dtype: int8 before the "
                                          "sharded optimizer is made (it then keeps tensors whole)");
        }
      }
    }
    CheckpointSection s;
    s.name = kShardSection;
    s.scalars["rank"] = Value(static_cast<std::int64_t>(me));
    s.scalars["world_size"] = Value(static_cast<std::int64_t>(world));
    s.scalars["generation"] = Value(generation);
    std::vector<std::vector<double>> rows;
    for (std::int64_t m : piece_of_local_) {
      if (m < 0) {
        rows.push_back({-1.0, 0.0, 0.0});
      } else {
        const Piece& p = *mine_[static_cast<std::size_t>(m)];
        rows.push_back({static_cast<double>(p.param), static_cast<double>(p.offset), static_cast<double>(p.count)});
      }
    }
    s.tensors.push_back(NamedTensor{"pieces", table(rows, 3)});
    shard.sections.push_back(std::move(s));
    std::error_code ec;
    std::filesystem::create_directories(shard_folder(path), ec);
    if (ec) throw CheckpointError(shard_folder(path), "cannot create the folder: " + ec.message());
    save_checkpoint(my_file, shard);
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  agree_on("writing the rank files");
  if (me == 0) {
    try {
      // Every rank's file where the manifest will name it (a folder every rank shares), before
      // the manifest commits the save.
      for (std::uint32_t r = 0; r < world; ++r) {
        const std::string file = shard_file_path(path, generation, r, world);
        std::error_code ec;
        if (!std::filesystem::is_regular_file(file, ec)) {
          throw CheckpointError(file, "rank " + std::to_string(r) +
                                          " wrote it, but rank 0 cannot see it: the checkpoint's folder must be one "
                                          "that every rank shares (docs/distributed.md)");
        }
      }
      Checkpoint manifest;
      manifest.optimizer.optimizer = local_->name();
      manifest.optimizer.plugin_version = local_->plugin_version();
      for (std::size_t g = 0; g < groups_.size(); ++g) {
        StateDict::Group group;
        group.options = local_->param_groups()[g].options();
        for (std::size_t id : groups_[g]) group.params.push_back(id);
        manifest.optimizer.param_groups.push_back(std::move(group));
      }
      // Shared, not copied: every rank waits here, its parameters unchanged.
      for (const Parameter& p : params_) manifest.parameters.push_back(NamedTensor{p.name(), p.value()});
      manifest.metadata = metadata;
      if (scheduler != nullptr) {
        manifest.scheduler = SchedulerState{scheduler->name(), scheduler->plugin_version(), scheduler->state()};
      }
      CheckpointSection s;
      s.name = kShardsSection;
      s.scalars["world_size"] = Value(static_cast<std::int64_t>(world));
      s.scalars["generation"] = Value(generation);
      std::vector<std::vector<double>> rows;
      for (const ShardPiece& p : pieces_) {
        rows.push_back({static_cast<double>(p.param), static_cast<double>(p.offset), static_cast<double>(p.count),
                        static_cast<double>(p.rank)});
      }
      s.tensors.push_back(NamedTensor{"pieces", table(rows, 4)});
      manifest.sections.push_back(std::move(s));
      save_checkpoint(path, manifest);  // the commit: atomic
    } catch (const std::exception& e) {
      error = e.what();
      failure = std::current_exception();
    }
  }
  agree_on("writing the manifest");
  if (me == 0) {  // the rank files of other saves are no longer named by any manifest
    std::error_code ec;
    std::filesystem::directory_iterator it(shard_folder(path), ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      const std::string file = it->path().filename().string();
      if (rank_file_name(file) && file.rfind(generation + "-", 0) != 0) {
        std::error_code ignored;
        std::filesystem::remove(it->path(), ignored);
      }
    }
  }
}

Options ShardedOptimizer::load(const std::string& path, Scheduler* scheduler, bool restore_values) {
  const std::string what = "loading checkpoint '" + path + "' into the sharded optimizer";
  std::exception_ptr failure;
  std::string error;
  Checkpoint local;
  Options metadata;
  try {
    refresh_views();
    Checkpoint c = read_any_checkpoint(path);
    if (c.optimizer.optimizer != local_->name()) {
      throw CheckpointError(
          path, "it holds the state of optimizer '" + c.optimizer.optimizer + "', not '" + local_->name() + "'");
    }
    if (c.optimizer.param_groups.size() != groups_.size()) {
      throw CheckpointError(path, "it has " + std::to_string(c.optimizer.param_groups.size()) +
                                      " param groups, the optimizer " + std::to_string(groups_.size()));
    }
    std::vector<const Options*> options;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const auto& ids = c.optimizer.param_groups[g].params;
      if (ids.size() != groups_[g].size() || !std::equal(ids.begin(), ids.end(), groups_[g].begin())) {
        throw CheckpointError(path, "param group " + std::to_string(g) +
                                        " holds other parameters (ids) in it than in "
                                        "the optimizer");
      }
      options.push_back(&c.optimizer.param_groups[g].options);
    }
    // Options the plan was not made for (state_dtype: int8 over split tensors, stochastic
    // rounding) are refused as they are when the optimizer is made.
    try {
      if (needs_whole(flags_, options, who_) && !whole_) {
        throw UsageError(
            "its options need whole tensors (state_dtype: int8, say), but this sharded optimizer "
            "splits them: make it with those options, and load then");
      }
    } catch (const UsageError& e) {
      throw CheckpointError(path, e.what());
    }
    if (c.parameters.size() != params_.size()) {
      throw CheckpointError(path, "it holds " + std::to_string(c.parameters.size()) +
                                      " parameter values, the optimizer " + std::to_string(params_.size()) +
                                      " parameters");
    }
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const NamedTensor& saved = c.parameters[i];
      const Tensor& v = params_[i].value();
      if (saved.name != params_[i].name() || saved.value.shape() != v.shape() || saved.value.dtype() != v.dtype()) {
        throw CheckpointError(path, "parameter id " + std::to_string(i) + " is '" + saved.name + "', " +
                                        dtype_name(saved.value.dtype()) + " " + to_string(saved.value.shape()) +
                                        " in the file, but '" + params_[i].name() + "', " + dtype_name(v.dtype()) +
                                        " " + to_string(v.shape()) + " in the optimizer");
      }
    }
    // The same checkpoint for this rank's optimizer: its groups, its pieces' state and values.
    const StateDict current = local_->state_dict(TensorCopy::Shared);
    local.optimizer.optimizer = c.optimizer.optimizer;
    local.optimizer.plugin_version = c.optimizer.plugin_version;
    local.optimizer.param_groups = current.param_groups;
    for (std::size_t g = 0; g < groups_.size(); ++g)
      local.optimizer.param_groups[g].options = c.optimizer.param_groups[g].options;
    for (std::size_t l = 0; l < piece_of_local_.size(); ++l) {
      const std::int64_t m = piece_of_local_[l];
      if (m < 0) {
        local.optimizer.state[l] = current.state.at(l);
        local.parameters.push_back(NamedTensor{local_params_[l].name(), local_params_[l].value().clone()});
        continue;
      }
      const Piece& p = *mine_[static_cast<std::size_t>(m)];
      const auto st = c.optimizer.state.find(p.param);
      if (st == c.optimizer.state.end()) {
        throw CheckpointError(path, "it holds no state for parameter id " + std::to_string(p.param));
      }
      local.optimizer.state[l] =
          cut_state(st->second, params_[p.param].value().shape(), p.offset, p.count,
                    "parameter id " + std::to_string(p.param) + " ('" + params_[p.param].name() + "')");
      const Tensor& value = restore_values ? c.parameters[p.param].value : params_[p.param].value();
      local.parameters.push_back(NamedTensor{p.local.name(), cut_value(value, p.offset, p.count, p.shape).clone()});
    }
    local.scheduler = c.scheduler;
    local.metadata = c.metadata;
    metadata = c.metadata;
    local_->check_state_dict(local.optimizer);
    if (scheduler != nullptr) {
      if (!c.scheduler) throw CheckpointError(path, "it holds no scheduler state, but a scheduler is to be resumed");
      if (c.scheduler->scheduler != scheduler->name()) {
        throw CheckpointError(
            path, "its scheduler state is of '" + c.scheduler->scheduler + "', not of '" + scheduler->name() + "'");
      }
      scheduler->check_state(c.scheduler->state);
    }
  } catch (const StateDictError& e) {
    error = CheckpointError(path, e.what()).what();
    failure = std::make_exception_ptr(CheckpointError(path, e.what()));
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  // Every rank read and checked everything.
  agree_or_rethrow(comm_, failure, error, what, file_timeout_);
  // Now each changes its own, keeping what it had until every rank has changed.
  Checkpoint before;
  try {
    before.optimizer = local_->state_dict();
    for (const Parameter& p : local_params_) before.parameters.push_back(NamedTensor{p.name(), p.value().clone()});
    if (scheduler != nullptr) {
      before.scheduler = SchedulerState{scheduler->name(), scheduler->plugin_version(), scheduler->state()};
    }
    load_optimizer(std::move(local), path, *local_, scheduler);
  } catch (const std::exception& e) {
    error = e.what();
    failure = std::current_exception();
  }
  try {
    agree_or_rethrow(comm_, failure, error, what + ", applying it");
  } catch (...) {
    if (!failure) load_optimizer(std::move(before), "the state before the load", *local_, scheduler);
    throw;
  }
  if (restore_values) gather_values(std::vector<bool>(params_.size(), true), what);
  return metadata;
}

}  // namespace optreg::mpi
