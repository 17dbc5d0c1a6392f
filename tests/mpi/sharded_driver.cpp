// The sharded optimizer's tests, run under mpirun (tests/mpi/CMakeLists.txt registers each with
// its world size). Every rank computes the gradients of its slices of a global batch of
// kSlices slices from the same model, and keeps a plain optimizer of its own that steps the
// same model with reduce_in_order() of every slice's gradient, the single-process run the
// sharded one must equal bit for bit.
//
//   sharded_driver identity             every plugin, configs, dtypes: same bits as the plain run
//   sharded_driver reshard DIR          save on 4 ranks, load on 2, 3, 1 and in a plain optimizer
//   sharded_driver saveloop PATH        steps and saves until killed (crash_mid_save.sh)
//   sharded_driver verify PATH          the checkpoint at PATH is one the save loop completed
//   sharded_driver fault KIND           hang, exit, mismatch, params, gradient, settings, step: the
//                                       others' errors
//
// Rank 0 prints what was checked; a failure prints "FAIL" and exits non-zero on every rank.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/mpi.hpp>
#include <optreg/registry.hpp>
#include <optreg/sharded_checkpoint.hpp>
#include <optreg/state_dict.hpp>

using optreg::DType;
using optreg::Options;
using optreg::Parameter;
using optreg::Tensor;
using optreg::mpi::Communicator;
using optreg::mpi::RankError;
using optreg::mpi::ShardedOptimizer;
using optreg::mpi::ShardSettings;

namespace {

constexpr int kSlices = 12;  // divisible by every world size tested (1 to 4)

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const optreg::Registry& registry() {
  static optreg::Registry* r = [] {
    auto* reg = new optreg::Registry;
    reg->load_directory(OPTREG_TEST_PLUGIN_DIR);
    return reg;
  }();
  return *r;
}

std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/// A number in [-1, 1) from the key.
double noise(std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
  const std::uint64_t h = mix(a * 1000003u ^ mix(b * 7919u ^ mix(c)));
  return static_cast<double>(h >> 11) / 4503599627370496.0 - 1.0;
}

/// The model: named parameters of `dtype` with values from `seed`.
std::vector<Parameter> model(DType dtype, bool matrices_only, std::uint64_t seed) {
  const std::vector<optreg::Shape> shapes =
      matrices_only ? std::vector<optreg::Shape>{{37, 5}, {16, 16}, {8, 3}}
                    : std::vector<optreg::Shape>{{37, 5}, {300}, {3}, {16, 16}, {9}, {2, 2, 2}};
  std::vector<Parameter> out;
  for (std::size_t p = 0; p < shapes.size(); ++p) {
    Tensor v(shapes[p], DType::Float64);
    for (std::size_t i = 0; i < v.numel(); ++i) v.data_as<double>()[i] = 0.5 * noise(seed, p, i);
    out.emplace_back("layer" + std::to_string(p) + ".weight", v.to(dtype));
  }
  return out;
}

/// The gradient of slice `slice` at step `step` for value `v`: the slice pulls the value to a
/// target of its own, plus noise, in v's dtype (so that a wrong value changes every later step).
Tensor gradient(const Tensor& v, std::size_t param, int step, int slice) {
  Tensor g(v.shape(), DType::Float64);
  const double pull = 0.5 + 0.1 * slice;
  for (std::size_t i = 0; i < v.numel(); ++i) {
    const double target = 0.3 * noise(100 + static_cast<std::uint64_t>(slice), param, i);
    g.data_as<double>()[i] = pull * (v.element(i) - target) + 0.05 * noise(static_cast<std::uint64_t>(step), param, i);
  }
  return g.to(v.dtype());
}

/// How much of the global batch slice `s` is, for weighted cases (uneven slices).
double slice_weight(int s) {
  double total = 0;
  for (int k = 0; k < kSlices; ++k) total += 1 + k % 5;
  return (1 + s % 5) / total;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void check_values(const std::vector<Parameter>& got, const std::vector<Parameter>& want, const std::string& where) {
  for (std::size_t p = 0; p < want.size(); ++p) {
    const Tensor& a = got[p].value();
    const Tensor& b = want[p].value();
    if (same_bits(a, b)) continue;
    std::size_t i = 0;
    while (i < a.numel() && a.element(i) == b.element(i)) ++i;
    std::ostringstream m;
    m.precision(17);
    m << where << ": parameter " << p << " ('" << want[p].name() << "') differs from the plain run at element " << i;
    if (i < a.numel()) m << ": " << a.element(i) << " vs " << b.element(i);
    throw Failure(m.str());
  }
}

void check_state(const optreg::StateDict& got, const optreg::StateDict& want, const std::string& where) {
  if (got.state.size() != want.state.size()) {
    throw Failure(where + ": state of " + std::to_string(got.state.size()) + " parameters, the plain run's of " +
                  std::to_string(want.state.size()));
  }
  for (const auto& [id, w] : want.state) {
    const auto it = got.state.find(id);
    if (it == got.state.end()) throw Failure(where + ": no state for parameter " + std::to_string(id));
    const optreg::ParamState& g = it->second;
    if (g.scalars() != w.scalars()) throw Failure(where + ": parameter " + std::to_string(id) + ": scalars differ");
    if (g.num_tensors() != w.num_tensors()) {
      throw Failure(where + ": parameter " + std::to_string(id) + ": another number of state tensors");
    }
    for (std::size_t e = 0; e < w.num_tensors(); ++e) {
      if (g.tensors()[e].first != w.tensors()[e].first || !same_bits(g.tensor(e), w.tensor(e))) {
        throw Failure(where + ": parameter " + std::to_string(id) + ": state entry '" + w.tensors()[e].first +
                      "' differs from the plain run's");
      }
    }
  }
}

/// What one test case makes: by name with groups and options, or from a config.
struct Case {
  std::string label;
  std::string name;  // a registry name, or empty with `config`
  Options options;
  Options group1;  // the second group's options (the first has none of its own)
  std::string config;
  DType dtype = DType::Float32;
  bool matrices_only = false;
  bool weighted = false;
  std::size_t split = 4096;
};

/// A sharded optimizer, its model, and the plain run beside it.
struct Run {
  Case c;
  std::vector<Parameter> params;
  std::unique_ptr<ShardedOptimizer> sharded;
  std::vector<Parameter> plain_params;
  optreg::OptimizerPtr plain;
  int step = 0;
};

optreg::OptimizerPtr make_plain(const Case& c, const std::vector<Parameter>& params) {
  if (!c.config.empty()) return optreg::build_optimizer(optreg::parse_config(c.config, c.label), params, registry());
  const std::size_t half = params.size() / 2;
  std::vector<optreg::ParamGroupSpec> groups{{{params.begin(), params.begin() + static_cast<long>(half)}, {}},
                                             {{params.begin() + static_cast<long>(half), params.end()}, c.group1}};
  return registry().create(c.name, std::move(groups), c.options);
}

std::unique_ptr<ShardedOptimizer> make_sharded(Communicator& comm, const Case& c,
                                               const std::vector<Parameter>& params) {
  ShardSettings settings;
  settings.split_elements = c.split;
  if (!c.config.empty()) {
    return ShardedOptimizer::build(comm, registry(), optreg::parse_config(c.config, c.label), params, settings);
  }
  const std::size_t half = params.size() / 2;
  std::vector<optreg::ParamGroupSpec> groups{{{params.begin(), params.begin() + static_cast<long>(half)}, {}},
                                             {{params.begin() + static_cast<long>(half), params.end()}, c.group1}};
  return ShardedOptimizer::create(comm, registry(), c.name, std::move(groups), c.options, settings);
}

std::vector<Parameter> copies(const std::vector<Parameter>& params) {
  std::vector<Parameter> out;
  for (const Parameter& p : params) out.emplace_back(p.name(), p.value().clone());
  return out;
}

Run start(Communicator& comm, const Case& c) {
  Run r;
  r.c = c;
  r.params = model(c.dtype, c.matrices_only, 1);
  r.plain_params = copies(r.params);
  r.sharded = make_sharded(comm, c, r.params);
  r.plain = make_plain(c, r.plain_params);
  return r;
}

/// Step `step` of a sharded optimizer: this rank's slices of the batch contributed.
void sharded_step(std::vector<Parameter>& params, ShardedOptimizer& opt, int step, bool weighted, int rank, int size) {
  for (int s = rank * kSlices / size; s < (rank + 1) * kSlices / size; ++s) {
    for (std::size_t p = 0; p < params.size(); ++p) params[p].set_grad(gradient(params[p].value(), p, step, s));
    opt.contribute(weighted ? std::optional<double>(slice_weight(s)) : std::nullopt);
  }
  opt.step();
}

/// Step `step` of the plain run: every slice's gradient, reduced in order.
void plain_step(std::vector<Parameter>& params, optreg::Optimizer& opt, int step, bool weighted) {
  for (std::size_t p = 0; p < params.size(); ++p) {
    std::vector<Tensor> parts;
    std::vector<double> weights;
    for (int s = 0; s < kSlices; ++s) {
      parts.push_back(gradient(params[p].value(), p, step, s));
      weights.push_back(slice_weight(s));
    }
    params[p].set_grad(optreg::mpi::reduce_in_order(parts, weighted ? weights : std::vector<double>{}));
  }
  opt.step();
}

/// One step of both.
void step(Run& r, Communicator& comm) {
  ++r.step;
  sharded_step(r.params, *r.sharded, r.step, r.c.weighted, comm.rank(), comm.size());
  plain_step(r.plain_params, *r.plain, r.step, r.c.weighted);
}

/// Runs `body` on every rank; a failure on any rank is a failure on all (agree()).
template <typename F>
void collectively(Communicator& comm, const std::string& what, F&& body) {
  std::string error;
  try {
    body();
  } catch (const RankError&) {
    throw;
  } catch (const std::exception& e) {
    error = e.what();
  }
  comm.agree(error, what);
}

Case by_name(std::string label, std::string name, Options options, std::size_t split = 4096,
             DType dtype = DType::Float32) {
  Case c;
  c.label = std::move(label);
  c.name = std::move(name);
  c.options = std::move(options);
  c.split = split;
  c.dtype = dtype;
  return c;
}

Case from_config(std::string label, std::string yaml, std::size_t split = 4096) {
  Case c;
  c.label = std::move(label);
  c.config = std::move(yaml);
  c.split = split;
  return c;
}

std::vector<Case> identity_cases() {
  std::vector<Case> cases;
  for (const auto& d : registry().list()) {
    if ((d.flags & (optreg::abi::kOptimizerNeedsClosure | optreg::abi::kOptimizerWrapper)) != 0) continue;
    Options options{{"lr", 0.01}};
    if (d.name == "sgd" || d.name == "rmsprop") options["momentum"] = 0.9;
    // Ragged pieces: a tensor split between ranks mid-row.
    Case c = by_name(d.name, d.name, options, 7);
    c.group1 = {{"lr", 0.004}};
    c.matrices_only = (d.flags & optreg::abi::kOptimizerMatricesOnly) != 0;
    cases.push_back(c);
  }
  Case weighted = by_name("adamw, weighted slices, default split", "adamw", {{"lr", 0.01}, {"weight_decay", 0.1}});
  weighted.weighted = true;
  cases.push_back(weighted);
  const std::vector<Case> more{
      by_name("adam on bfloat16 with float32 master weights", "adam", {{"lr", 0.01}, {"master_weights", true}}, 5,
              DType::BFloat16),
      by_name("sgd on float16, nearest rounding", "sgd", {{"lr", 0.05}, {"momentum", 0.9}}, 3, DType::Float16),
      by_name("adam on float64", "adam", {{"lr", 0.01}}, 11, DType::Float64),
      by_name("adam with int8 state (whole tensors)", "adam", {{"lr", 0.01}, {"state_dtype", std::string("int8")}}),
      by_name("lion with bfloat16 state", "lion", {{"lr", 0.001}, {"state_dtype", std::string("bfloat16")}}, 9),
      from_config("config: lookahead around adamw, two groups",
                  "optimizer: {name: lookahead, k: 2, alpha: 0.5, inner: {name: adamw, lr: 0.01, weight_decay: 0.01}}\n"
                  "param_groups:\n  - params: ['layer1.*', 'layer3.*']\n    lr: 0.003\n",
                  13),
      from_config("config: muon for the matrices, adamw for the rest",
                  "optimizer: {name: adamw, lr: 0.01}\nparam_groups:\n  - params: ['layer0.*', 'layer3.*']\n"
                  "    optimizer: muon\n    lr: 0.02\n"),
      from_config("config: schedule-free adamw", "optimizer: {name: schedulefree_adamw, lr: 0.01}\n", 6),
  };
  cases.insert(cases.end(), more.begin(), more.end());
  return cases;
}

int identity(Communicator& comm) {
  int checked = 0;
  for (const Case& c : identity_cases()) {
    std::optional<Run> run;
    collectively(comm, c.label + ": making it", [&] { run.emplace(start(comm, c)); });
    for (int k = 0; k < 4; ++k) {
      collectively(comm, c.label + ": step " + std::to_string(k + 1), [&] {
        step(*run, comm);
        check_values(run->params, run->plain_params,
                     c.label + ", step " + std::to_string(run->step) + ", rank " + std::to_string(comm.rank()));
      });
    }
    if (comm.rank() == 0) {
      std::cout << "  " << c.label << ": 4 steps, " << run->sharded->pieces().size() << " pieces"
                << (run->sharded->whole_tensors() ? " (whole tensors)" : "") << ", same bits\n";
    }
    ++checked;
  }
  if (comm.rank() == 0) std::cout << "identity: " << checked << " cases on " << comm.size() << " ranks\n";
  return 0;
}

/// The reshard cases: saved on 4 ranks, loaded on 2, 3 and 1 and by a plain optimizer.
std::vector<Case> reshard_cases() {
  return {
      by_name("adam", "adam", {{"lr", 0.01}, {"amsgrad", true}}, 10),
      by_name("lamb (whole tensors)", "lamb", {{"lr", 0.01}}),
      by_name("adafactor (factored state)", "adafactor", {{"lr", 0.01}}),
      by_name("adam, bfloat16 with master weights", "adam", {{"lr", 0.01}, {"master_weights", true}}, 8,
              DType::BFloat16),
      by_name("sgd with int8 momentum", "sgd", {{"lr", 0.05}, {"momentum", 0.9}, {"state_dtype", std::string("int8")}}),
      from_config("config: lookahead around adamw",
                  "optimizer: {name: lookahead, k: 3, inner: {name: adamw, lr: 0.01}}\n", 12),
  };
}

/// A communicator of the world's first `size` ranks (no communicator on the others).
std::optional<Communicator> first_ranks(int size) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm sub = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < size ? 0 : MPI_UNDEFINED, rank, &sub);
  if (sub == MPI_COMM_NULL) return std::nullopt;
  return Communicator(sub, 60.0);
}

int reshard(Communicator& world, const std::string& dir) {
  if (world.size() != 4) throw Failure("reshard runs on 4 ranks");
  if (world.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  int checked = 0;
  for (const Case& c : reshard_cases()) {
    const std::string path = dir + "/" + std::to_string(checked) + ".ckpt";
    // The plain run, on every rank, steps through every stage.
    std::vector<Parameter> plain_params = copies(model(c.dtype, false, 1));
    optreg::OptimizerPtr plain = make_plain(c, plain_params);
    int steps = 0;
    std::string stages;
    for (const int size : {4, 2, 3, 1}) {
      std::optional<Communicator> comm = first_ranks(size);
      for (int k = 0; k < 2; ++k) plain_step(plain_params, *plain, ++steps, false);
      if (comm) {
        const std::string where = c.label + " on " + std::to_string(size) + " ranks";
        Run run;
        run.c = c;
        collectively(*comm, where + ": loading", [&] {
          // A model of other values: the load restores the saved ones.
          run.params = model(c.dtype, false, size == 4 ? 1 : 99);
          run.sharded = make_sharded(*comm, c, run.params);
          if (size != 4) {
            const Options meta = run.sharded->load(path);
            run.step = static_cast<int>(meta.at("step").as_int());
          }
        });
        for (int k = 0; k < 2; ++k) {
          collectively(*comm, where + ": step",
                       [&] { sharded_step(run.params, *run.sharded, ++run.step, false, comm->rank(), comm->size()); });
        }
        collectively(*comm, where + ": checking", [&] {
          if (run.step != steps) throw Failure(where + ": at step " + std::to_string(run.step));
          check_values(run.params, plain_params, where);
        });
        run.sharded->save(path, Options{{"step", static_cast<std::int64_t>(run.step)}});
        collectively(*comm, where + ": reading the checkpoint back", [&] {
          optreg::ShardManifest m;
          const optreg::Checkpoint back = optreg::read_any_checkpoint(path, &m);
          if (m.world_size != static_cast<std::uint32_t>(size)) throw Failure(where + ": the manifest's world size");
          check_state(back.optimizer, plain->state_dict(), where + ", the assembled checkpoint");
        });
      }
      MPI_Barrier(MPI_COMM_WORLD);
      stages += std::to_string(size) + " -> ";
    }
    // Into the plain optimizer, on every rank.
    collectively(world, c.label + ": loading into a plain optimizer", [&] {
      std::vector<Parameter> params = copies(model(c.dtype, false, 7));
      optreg::OptimizerPtr single = make_plain(c, params);
      optreg::Checkpoint ckpt = optreg::read_any_checkpoint(path);
      for (std::size_t p = 0; p < params.size(); ++p) params[p].value().copy_from(ckpt.parameters[p].value);
      int at = static_cast<int>(optreg::load_optimizer(std::move(ckpt), path, *single).at("step").as_int());
      for (int k = 0; k < 2; ++k) {
        plain_step(plain_params, *plain, ++steps, false);
        plain_step(params, *single, ++at, false);
      }
      check_values(params, plain_params, c.label + ", loaded into a plain optimizer");
    });
    if (world.rank() == 0) std::cout << "  " << c.label << ": " << stages << "plain, same bits at every stage\n";
    ++checked;
  }
  if (world.rank() == 0) std::cout << "reshard: " << checked << " cases\n";
  return 0;
}

Case loop_case() { return by_name("adam", "adam", {{"lr", 0.01}}, 10); }

/// Steps and saves, forever: killed part way through a save by crash_mid_save.sh.
int saveloop(Communicator& comm, const std::string& path) {
  Run run = start(comm, loop_case());
  for (;;) {
    step(run, comm);
    run.sharded->save(path, Options{{"step", static_cast<std::int64_t>(run.step)}});
    if (comm.rank() == 0 && run.step == 1) std::cout << "saveloop: first save done" << std::endl;
  }
}

/// The checkpoint at `path` holds exactly what the save loop had after its saved step.
int verify(Communicator& comm, const std::string& path) {
  if (comm.size() != 1) throw Failure("verify runs on 1 rank");
  optreg::ShardManifest m;
  optreg::Checkpoint ckpt = optreg::read_any_checkpoint(path, &m);
  const int saved = static_cast<int>(ckpt.metadata.at("step").as_int());
  Run run = start(comm, loop_case());
  while (run.step < saved) step(run, comm);
  for (std::size_t p = 0; p < run.params.size(); ++p) {
    if (!same_bits(ckpt.parameters[p].value, run.plain_params[p].value())) {
      throw Failure("the checkpoint's value of parameter " + std::to_string(p) + " is not step " +
                    std::to_string(saved) + "'s");
    }
  }
  check_state(ckpt.optimizer, run.plain->state_dict(), "the checkpoint of step " + std::to_string(saved));
  // The manifest alone is no checkpoint of a plain optimizer: refused, saying how to read it.
  try {
    optreg::load_optimizer(path, *run.plain);
    throw Failure("a plain load of the manifest was not refused");
  } catch (const optreg::CheckpointError& e) {
    if (std::string(e.what()).find("is the manifest of a sharded checkpoint") == std::string::npos) {
      throw Failure(std::string("the plain load of the manifest was refused with: ") + e.what());
    }
  }
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(optreg::shard_folder(path))) ++files;
  std::cout << "verify: step " << saved << " of " << m.world_size << " ranks, generation " << m.generation
            << ", loadable and exact (" << files << " files in the shard folder)\n";
  return 0;
}

/// The others' view of a rank that fails: each expects a RankError naming `culprit` within the
/// timeout, prints it and ends the job.
int fault(Communicator& comm, const std::string& kind) {
  const double timeout = 3.0;
  comm.set_timeout(timeout);
  const int culprit = comm.size() - 1;
  const bool me = comm.rank() == culprit;
  Case c = loop_case();
  if (kind == "mismatch" && me) c.options["lr"] = 0.02;
  if (kind == "params" && me) c.matrices_only = true;
  if (kind == "settings" && me) c.split = 64;  // another plan than the others'
  const auto started = std::chrono::steady_clock::now();
  try {
    Run run;
    run.c = c;
    run.params = model(c.dtype, c.matrices_only, 1);
    run.sharded = make_sharded(comm, c, run.params);
    optreg::HookHandle hook;
    if (kind == "step" && me) {  // its own optimizer fails at the second step, after the exchange
      int calls = 0;
      hook = run.sharded->local().add_hook(optreg::HookPoint::PreStep, [calls](optreg::Optimizer&) mutable {
        if (++calls == 2) throw std::runtime_error("the culprit's optimizer failed");
      });
    }
    for (int k = 0; k < 3; ++k) {
      if (k == 1 && me && kind == "hang") std::this_thread::sleep_for(std::chrono::seconds(600));
      if (k == 1 && me && kind == "exit") std::_Exit(3);
      for (std::size_t p = 0; p < run.params.size(); ++p) {
        if (!(kind == "gradient" && me && p == 2)) run.params[p].set_grad(gradient(run.params[p].value(), p, k + 1, 0));
      }
      run.sharded->step();
    }
  } catch (const RankError& e) {
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const bool named = e.rank() == culprit;
    const bool in_time = took < 3 * timeout + 5;
    std::cout << (named && in_time ? "fault detected" : "FAIL") << " on rank " << comm.rank() << " after " << took
              << " s: RankError naming rank " << e.rank() << ": " << e.what() << std::endl;
    if (!named || !in_time) comm.abort(1);
    // Ends every rank, the hanging one included; mpirun reports the abort.
    if (kind == "hang" || kind == "exit") comm.abort(0);
    return 0;
  } catch (const std::runtime_error& e) {
    if (kind != "step" || !me || std::string(e.what()) != "the culprit's optimizer failed") throw;
    std::cout << "fault raised on rank " << comm.rank() << ": " << e.what() << std::endl;  // its own error
    return 0;
  }
  std::cout << "FAIL on rank " << comm.rank() << ": no RankError for '" << kind << "'" << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  optreg::mpi::Environment environment(&argc, &argv);
  std::optional<Communicator> world;
  world.emplace(MPI_COMM_WORLD, 60.0);
  const std::string command = argc > 1 ? argv[1] : "";
  const std::string arg = argc > 2 ? argv[2] : "";
  try {
    if (command == "identity") return identity(*world);
    if (command == "reshard") return reshard(*world, arg);
    if (command == "saveloop") return saveloop(*world, arg);
    if (command == "verify") return verify(*world, arg);
    if (command == "fault") return fault(*world, arg);
    std::cerr << "usage: sharded_driver identity|reshard DIR|saveloop PATH|verify PATH|fault KIND\n";
    return 2;
  } catch (const std::exception& e) {
    std::cout << "FAIL on rank " << world->rank() << ": " << e.what() << std::endl;
    world->abort(1);
  }
}
