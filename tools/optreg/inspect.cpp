// optreg inspect: a checkpoint file in a form a person reads.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <ostream>

#include <optreg/checkpoint.hpp>

#include "cli.hpp"

namespace optreg::cli {

namespace {

const char* kInspectHelp =
    "usage: optreg inspect FILE [--json]\n"
    "\n"
    "Verifies a checkpoint file (size, magic, version, length, checksum) and prints what it holds:\n"
    "the optimizer, each group's options and parameter ids, and for every state tensor and\n"
    "parameter its shape, min, max, mean and the count of non-finite values, the metadata, and\n"
    "the learning-rate scheduler's state when the file holds one.\n"
    "\n"
    "Exit status: 0 when the file is valid, 1 when it is not, 2 on a usage error.\n";

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
    const double v = t[i];
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
  std::string out = "tensor " + to_string(t.shape());
  if (s.finite > 0) out += "  min " + number(s.min) + "  max " + number(s.max) + "  mean " + number(s.mean);
  return out + "  non-finite " + std::to_string(s.non_finite);
}

std::string tensor_json(const Tensor& t) {
  const Stats s = stats_of(t);
  std::string shape = "[";
  for (std::size_t i = 0; i < t.shape().size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape()[i]);
  shape += "]";
  const auto num = [&](double d) { return s.finite > 0 ? json_number(d, 6) : std::string("null"); };
  return "{\"shape\": " + shape + ", \"min\": " + num(s.min) + ", \"max\": " + num(s.max) + ", \"mean\": " + num(s.mean) +
         ", \"non_finite\": " + std::to_string(s.non_finite) + "}";
}

std::string scalar_text(const StateScalar& v) {
  return v.index() == 0 ? std::to_string(std::get<std::int64_t>(v)) + " (int)"
                        : Value(std::get<double>(v)).to_string() + " (float)";
}

std::string scalar_json(const StateScalar& v) {
  return v.index() == 0 ? std::to_string(std::get<std::int64_t>(v)) : json_value(Value(std::get<double>(v)));
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

void print_text(const std::string& path, const CheckpointInfo& info, const Checkpoint& c, std::ostream& out) {
  out << "checkpoint " << escape_text(path) << '\n';
  out << "  " << info.file_size << " bytes, envelope version " << info.envelope_version << ", binary archive, payload "
      << info.payload_length << " bytes, checksum xxh3-64 " << hex(info.checksum) << " verified\n";
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
}

void print_json(const std::string& path, const CheckpointInfo& info, const Checkpoint& c, std::ostream& out) {
  out << "{\n  \"file\": " << json_string(path) << ",\n  \"file_size\": " << info.file_size
      << ",\n  \"envelope_version\": " << info.envelope_version << ",\n  \"format\": \"binary\""
      << ",\n  \"payload_length\": " << info.payload_length << ",\n  \"checksum\": \"" << hex(info.checksum)
      << "\",\n  \"checksum_verified\": true,\n  \"valid\": true"
      << ",\n  \"optimizer\": " << json_string(c.optimizer.optimizer)
      << ",\n  \"plugin_version\": " << json_string(c.optimizer.plugin_version) << ",\n  \"param_groups\": [";
  for (std::size_t g = 0; g < c.optimizer.param_groups.size(); ++g) {
    const auto& group = c.optimizer.param_groups[g];
    out << (g ? ",\n" : "\n") << "    {\"options\": " << options_json(group.options) << ", \"params\": [";
    for (std::size_t i = 0; i < group.params.size(); ++i) out << (i ? ", " : "") << group.params[i];
    out << "]}";
  }
  out << "\n  ],\n  \"state\": {";
  bool first = true;
  for (const auto& [id, s] : c.optimizer.state) {
    out << (first ? "\n" : ",\n") << "    \"" << id << "\": {";
    first = false;
    bool first_entry = true;
    for (const auto& [name, v] : s.scalars()) {
      out << (first_entry ? "" : ", ") << json_string(name) << ": " << scalar_json(v);
      first_entry = false;
    }
    for (const auto& [name, t] : s.tensors()) {
      out << (first_entry ? "" : ", ") << json_string(name) << ": " << tensor_json(t);
      first_entry = false;
    }
    out << "}";
  }
  out << "\n  },\n  \"parameters\": [";
  for (std::size_t i = 0; i < c.parameters.size(); ++i) {
    out << (i ? ",\n" : "\n") << "    {\"name\": " << json_string(c.parameters[i].name)
        << ", \"value\": " << tensor_json(c.parameters[i].value) << "}";
  }
  out << "\n  ],\n  \"metadata\": " << options_json(c.metadata) << ",\n  \"scheduler\": ";
  if (c.scheduler) {
    out << "{\"name\": " << json_string(c.scheduler->scheduler) << ", \"plugin_version\": "
        << json_string(c.scheduler->plugin_version) << ", \"state\": " << options_json(c.scheduler->state) << "}";
  } else {
    out << "null";
  }
  out << "\n}\n";
}

}  // namespace

int run_inspect(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  bool json = false;
  std::string path;
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      out << kInspectHelp;
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (path.empty() && a.rfind("-", 0) != 0) {
      path = a;
    } else {
      throw UsageError{"optreg inspect: unexpected argument '" + a + "'"};
    }
  }
  if (path.empty()) throw UsageError{"optreg inspect: name the checkpoint file"};
  CheckpointInfo info;
  Checkpoint c;
  try {
    c = read_checkpoint(path, &info);
  } catch (const CheckpointError& e) {
    if (json) {
      out << "{\"file\": " << json_string(path) << ", \"valid\": false, \"error\": " << json_message(e.what()) << "}\n";
    }
    err << "optreg inspect: " << e.what() << '\n';
    return kFailure;
  }
  if (json) {
    print_json(path, info, c, out);
  } else {
    print_text(path, info, c, out);
  }
  return kOk;
}

}  // namespace optreg::cli
