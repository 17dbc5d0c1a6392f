// optreg inspect: a checkpoint file in a form a person reads.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <iostream>
#include <memory>

#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/sharded_checkpoint.hpp>

#include "cli.hpp"

namespace optreg::cli {

namespace {

const CommandHelp kInspectHelp = {
    "optreg inspect FILE [--json] [--against CONFIG --params P [--fresh-missing] [--drop-unexpected] "
    "[--rename FROM=TO]...]",
    "verify a checkpoint file and show what it holds",
    "Verifies a checkpoint file (size, magic, version, length, checksum) and prints what it holds:\n"
    "the optimizer, each group's options and parameter ids, and for every state tensor and\n"
    "parameter its shape, min, max, mean and the count of non-finite values, the metadata, and\n"
    "the learning-rate scheduler's state when the file holds one, and each section (a weight\n"
    "average, the gradient sums of an unfinished accumulation) with its scalars and tensors.\n"
    "With --against, previews a load by name instead: the optimizer CONFIG builds over the\n"
    "parameters of P (a YAML map from name to shape) and which of them would take the state of\n"
    "which saved parameter, keep their own (--fresh-missing), and which saved ones would be left\n"
    "out (--drop-unexpected), after the renames (a glob FROM, TO with its '*'s).",
    "Exit status: 0 when the file is valid, 1 when it is not, 2 on a usage error.",
};

/// The arguments of `optreg inspect`.
struct InspectArgs {
  bool json = false;
  std::string path;
  std::string against;  // a config: preview a load by name
  std::string params_path;
  bool fresh_missing = false;
  bool drop_unexpected = false;
  std::vector<std::string> renames;  // FROM=TO
  PluginOptions plugins;
};

/// Summary statistics of a tensor; min, max and mean are over the finite elements.
struct Stats {
  double min = 0, max = 0, mean = 0;
  std::size_t finite = 0, non_finite = 0;
};

Stats stats_of(const Tensor& t) {
  Stats s;
  double sum = 0;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (std::size_t i = 0; i < t.numel(); ++i) {
    const double v = t.element(i);
    if (!std::isfinite(v)) {
      ++s.non_finite;
      continue;
    }
    ++s.finite;
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (s.finite > 0) {
    s.min = lo;
    s.max = hi;
    s.mean = sum / static_cast<double>(s.finite);
  }
  return s;
}

std::string number(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}

std::string tensor_text(const Tensor& t) {
  const Stats s = stats_of(t);
  std::string out = "tensor " + to_string(t.shape()) + " " + dtype_name(t.dtype()) + " (" + std::to_string(t.nbytes()) +
                    " bytes)";
  if (s.finite > 0) out += "  min " + number(s.min) + "  max " + number(s.max) + "  mean " + number(s.mean);
  return out + "  non-finite " + std::to_string(s.non_finite);
}

Json tensor_json(const Tensor& t) {
  const Stats s = stats_of(t);
  const auto num = [&](double d) { return s.finite > 0 ? json_number(d, 6) : Json(nullptr); };
  return Json{{"shape", t.shape()}, {"dtype", dtype_name(t.dtype())}, {"bytes", t.nbytes()}, {"min", num(s.min)}, {"max", num(s.max)}, {"mean", num(s.mean)},
              {"non_finite", s.non_finite}};
}

std::string scalar_text(const StateScalar& v) {
  return v.index() == 0 ? std::to_string(std::get<std::int64_t>(v)) + " (int)"
                        : Value(std::get<double>(v)).to_string() + " (float)";
}

Json scalar_json(const StateScalar& v) {
  return v.index() == 0 ? Json(std::get<std::int64_t>(v)) : json_value(Value(std::get<double>(v)));
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

/// The name of parameter `id` when the checkpoint holds parameter values.
std::string param_label(const Checkpoint& c, std::uint64_t id) {
  return id < c.parameters.size() ? " ('" + escape_text(c.parameters[id].name) + "')" : "";
}

/// Per rank of a sharded checkpoint: its pieces, elements and bytes of parameters.
struct RankShare {
  std::size_t pieces = 0;
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
};

std::vector<RankShare> rank_shares(const ShardManifest& m, const Checkpoint& c) {
  std::vector<RankShare> out(m.world_size);
  for (const ShardPiece& p : m.pieces) {
    RankShare& r = out[p.rank];
    ++r.pieces;
    r.elements += p.count;
    r.bytes += p.count * c.parameters[p.param].value.element_size();
  }
  return out;
}

void print_text(const std::string& path, const CheckpointInfo& info, const ShardManifest& shards, const Checkpoint& c,
                std::ostream& out) {
  out << "checkpoint " << escape_text(path) << '\n';
  out << "  " << info.file_size << " bytes, envelope version " << info.envelope_version << ", binary archive, payload "
      << info.payload_length << " bytes, checksum xxh3-64 " << hex(info.checksum) << " verified\n";
  if (shards.world_size > 0) {
    out << "sharded: " << shards.world_size << " ranks, generation " << shards.generation << ", "
        << shards.pieces.size() << " pieces; rank files in " << escape_text(shard_folder(path))
        << ", verified and assembled below\n";
    const auto shares = rank_shares(shards, c);
    for (std::size_t r = 0; r < shares.size(); ++r) {
      out << "  rank " << r << ": " << shares[r].pieces << " pieces, " << shares[r].elements << " elements, "
          << shares[r].bytes << " bytes of parameters\n";
    }
  }
  out << "optimizer: " << escape_text(c.optimizer.optimizer) << " (plugin version "
      << escape_text(c.optimizer.plugin_version) << ")\n";
  out << "param_groups:\n";
  for (const auto& g : c.optimizer.param_groups) {
    out << "  - options: " << options_text(g.options) << "\n    params: [";
    for (std::size_t i = 0; i < g.params.size(); ++i) out << (i ? ", " : "") << g.params[i];
    out << "]\n";
  }
  out << "state:\n";
  for (const auto& [id, s] : c.optimizer.state) {
    out << "  " << id << param_label(c, id) << ":\n";
    for (const auto& [name, v] : s.scalars()) out << "    " << escape_text(name) << ": " << scalar_text(v) << '\n';
    for (const auto& [name, t] : s.tensors()) out << "    " << escape_text(name) << ": " << tensor_text(t) << '\n';
  }
  if (!c.parameters.empty()) {
    out << "parameters:\n";
    for (std::size_t i = 0; i < c.parameters.size(); ++i) {
      out << "  " << i << " '" << escape_text(c.parameters[i].name) << "': " << tensor_text(c.parameters[i].value) << '\n';
    }
  }
  if (!c.metadata.empty()) {
    out << "metadata:\n";
    for (const auto& [k, v] : c.metadata) out << "  " << escape_text(k) << ": " << v.to_string() << '\n';
  }
  if (c.scheduler) {
    out << "scheduler: " << escape_text(c.scheduler->scheduler) << " (plugin version "
        << escape_text(c.scheduler->plugin_version) << ")\n";
    for (const auto& [k, v] : c.scheduler->state) out << "  " << escape_text(k) << ": " << v.to_string() << '\n';
  }
  for (const CheckpointSection& section : c.sections) {
    out << "section '" << escape_text(section.name) << "':\n";
    for (const auto& [k, v] : section.scalars) out << "  " << escape_text(k) << ": " << v.to_string() << '\n';
    for (std::size_t i = 0; i < section.tensors.size(); ++i) {
      out << "  " << i << " '" << escape_text(section.tensors[i].name) << "': " << tensor_text(section.tensors[i].value)
          << '\n';
    }
  }
}

Json state_json(const Checkpoint& c) {
  Json state = Json::object();
  for (const auto& [id, s] : c.optimizer.state) {
    Json& entries = state[std::to_string(id)] = Json::object();
    for (const auto& [name, v] : s.scalars()) entries[escape_text(name)] = scalar_json(v);
    for (const auto& [name, t] : s.tensors()) entries[escape_text(name)] = tensor_json(t);
  }
  return state;
}

void print_json(const std::string& path, const CheckpointInfo& info, const ShardManifest& shards, const Checkpoint& c,
                std::ostream& out) {
  Json groups = Json::array();
  for (const auto& g : c.optimizer.param_groups) groups.push_back(Json{{"options", options_json(g.options)}, {"params", g.params}});
  Json parameters = Json::array();
  for (const auto& p : c.parameters) parameters.push_back(Json{{"name", json_text(p.name)}, {"value", tensor_json(p.value)}});
  Json scheduler = nullptr;
  if (c.scheduler) {
    scheduler = Json{{"name", json_text(c.scheduler->scheduler)}, {"plugin_version", json_text(c.scheduler->plugin_version)},
                     {"state", options_json(c.scheduler->state)}};
  }
  Json sections = Json::array();
  for (const CheckpointSection& section : c.sections) {
    Json tensors = Json::array();
    for (const auto& t : section.tensors) tensors.push_back(Json{{"name", json_text(t.name)}, {"value", tensor_json(t.value)}});
    sections.push_back(Json{{"name", json_text(section.name)}, {"scalars", options_json(section.scalars)}, {"tensors", tensors}});
  }
  Json j = {{"file", json_text(path)}, {"file_size", info.file_size}, {"envelope_version", info.envelope_version},
                  {"format", "binary"}, {"payload_length", info.payload_length}, {"checksum", hex(info.checksum)},
                  {"checksum_verified", true}, {"valid", true}, {"optimizer", json_text(c.optimizer.optimizer)},
                  {"plugin_version", json_text(c.optimizer.plugin_version)}, {"param_groups", groups},
                  {"state", state_json(c)}, {"parameters", parameters}, {"metadata", options_json(c.metadata)},
                  {"scheduler", scheduler}, {"sections", sections}, {"sharded", nullptr}};
  if (shards.world_size > 0) {
    Json pieces = Json::array();
    for (const ShardPiece& p : shards.pieces) {
      pieces.push_back(Json{{"param", p.param}, {"offset", p.offset}, {"count", p.count}, {"rank", p.rank}});
    }
    Json ranks = Json::array();
    for (const RankShare& r : rank_shares(shards, c)) {
      ranks.push_back(Json{{"pieces", r.pieces}, {"elements", r.elements}, {"bytes", r.bytes}});
    }
    j["sharded"] = Json{{"world_size", shards.world_size}, {"generation", json_text(shards.generation)},
                                  {"folder", json_text(shard_folder(path))}, {"ranks", ranks}, {"pieces", pieces}};
  }
  out << json_block(j) << '\n';
}

/// `--against CONFIG --params P`: how the checkpoint would load by name into the optimizer the
/// config builds over P's parameters.
int preview_name_match(const InspectArgs& args, const Checkpoint& c, std::ostream& out) {
  if (args.params_path.empty()) throw CommandLineError{"optreg inspect: --against needs --params FILE"};
  NameMatchPolicy policy;
  policy.fresh_for_missing = args.fresh_missing;
  policy.drop_unexpected = args.drop_unexpected;
  for (const auto& r : args.renames) {
    const std::size_t eq = r.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw CommandLineError{"optreg inspect: --rename takes FROM=TO (a glob and its new name), not '" + r + "'"};
    }
    policy.renames.emplace_back(r.substr(0, eq), r.substr(eq + 1));
  }
  const OptimizerConfig config = load_config(args.against);
  Registry registry;
  load_plugins(registry, args.plugins);
  load_config_plugins(config, registry);
  std::vector<Parameter> params;
  for (const ParamInfo& p : load_param_list(args.params_path)) params.emplace_back(p.name, Tensor(p.shape));
  const OptimizerPtr opt = build_optimizer(config, params, registry);
  const NameMatchReport report = plan_name_match(c, args.path, *opt, policy);
  if (args.json) {
    Json matched = Json::array();
    for (const auto& m : report.matched) matched.push_back(Json{{"param", json_text(m.param)}, {"saved", json_text(m.saved)}});
    Json created = Json::array();
    for (const auto& n : report.created) created.push_back(json_text(n));
    Json dropped = Json::array();
    for (const auto& n : report.dropped) dropped.push_back(json_text(n));
    out << json_block(Json{{"file", json_text(args.path)}, {"valid", true}, {"against", json_text(args.against)},
                           {"matched", matched}, {"created", created}, {"dropped", dropped}})
        << '\n';
    return kOk;
  }
  out << "checkpoint " << escape_text(args.path) << " by name into " << escape_text(args.against) << " over "
      << escape_text(args.params_path) << ":\n";
  out << "matched: " << report.matched.size() << '\n';
  for (const auto& m : report.matched) {
    out << "  " << escape_text(m.param);
    if (m.saved != m.param) out << " <- " << escape_text(m.saved);
    out << '\n';
  }
  out << "kept their own state (no saved state): " << report.created.size() << '\n';
  for (const auto& n : report.created) out << "  " << escape_text(n) << '\n';
  out << "left out (no parameter): " << report.dropped.size() << '\n';
  for (const auto& n : report.dropped) out << "  " << escape_text(n) << '\n';
  return kOk;
}

int run_inspect(const InspectArgs& args, std::ostream& out, std::ostream& err) {
  if (args.path.empty()) throw CommandLineError{"optreg inspect: name the checkpoint file"};
  CheckpointInfo info;
  Checkpoint c;
  ShardManifest shards;
  try {
    c = read_checkpoint(args.path, &info);
    // A sharded checkpoint's manifest: its rank files are read, checked and assembled.
    if (is_shard_manifest(c)) c = read_any_checkpoint(args.path, &shards);
  } catch (const CheckpointError& e) {
    if (args.json) {
      out << json_line(Json{{"file", json_text(args.path)}, {"valid", false}, {"error", json_message(e.what())}}) << '\n';
    }
    err << "optreg inspect: " << e.what() << '\n';
    return kFailure;
  }
  if (!args.against.empty()) {
    try {
      return preview_name_match(args, c, out);
    } catch (const CommandLineError&) {
      throw;
    } catch (const std::exception& e) {
      if (args.json) {
        out << json_line(Json{{"file", json_text(args.path)}, {"valid", false}, {"error", json_message(e.what())}}) << '\n';
      }
      err << "optreg inspect: " << e.what() << '\n';
      return kFailure;
    }
  }
  if (args.json) {
    print_json(args.path, info, shards, c, out);
  } else {
    print_text(args.path, info, shards, c, out);
  }
  return kOk;
}

}  // namespace

void add_inspect_command(CLI::App& root, int& status) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App& command = add_command(root, "inspect", kInspectHelp);
  add_positional(command, "FILE", args->path, "the checkpoint file");
  add_json_flag(command, args->json);
  CLI::Option* against =
      command.add_option("--against", args->against, "preview a load by name into the optimizer of this config")
          ->type_name("CONFIG");
  command.add_option("--params", args->params_path, "with --against: a YAML map from parameter name to shape")
      ->type_name("FILE")
      ->needs(against);
  command.add_flag("--fresh-missing", args->fresh_missing, "with --against: a parameter without saved state keeps its own")
      ->needs(against);
  command.add_flag("--drop-unexpected", args->drop_unexpected, "with --against: saved state of no parameter is left out")
      ->needs(against);
  command.add_option("--rename", args->renames, "with --against: rename saved names, FROM=TO (a glob; '*' in TO)")
      ->type_name("FROM=TO")
      ->needs(against);
  add_plugin_options(command, args->plugins);
  run_when_parsed(command, "optreg inspect: unexpected argument", status,
                  [args] { return run_inspect(*args, std::cout, std::cerr); });
}

}  // namespace optreg::cli
