#pragma once
// The job the conformance kit hands to optreg-conformance-resume, the program that resumes a
// checkpoint in a fresh process: which plugin and optimizer, the parameters (names, shapes,
// dtype) and how they are grouped, the options, the checkpoint to load, the gradients of each
// step to replay, and where to save the result. Internal to the kit; not installed.
//
// The job is a text file of one item per line, `KEY ARGUMENTS`:
//   plugin PATH | optimizer NAME | dtype NAME | checkpoint PATH | gradients PATH | out PATH
//   steps K
//   param GROUP NAME DIM...        (a scalar has no DIM)
//   option NAME TYPE TEXT          (TYPE: b, i, f or s; f is written with %.17g)
// The gradients file holds, for each of the K steps and each parameter in order, its gradient's
// elements as the parameter's dtype stores them.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <optreg/dtype.hpp>
#include <optreg/tensor.hpp>
#include <optreg/value.hpp>

namespace optreg::kit {

struct ResumeJob {
  struct Param {
    std::size_t group = 0;
    std::string name;
    Shape shape;
  };
  std::string plugin, optimizer, checkpoint, gradients, out;
  DType dtype = DType::Float32;
  int steps = 0;
  std::vector<Param> params;
  Options options;
};

inline std::string job_value(const Value& v) {
  switch (v.type()) {
    case ValueType::Bool: return std::string("b ") + (v.as_bool() ? "1" : "0");
    case ValueType::Int: return "i " + std::to_string(v.as_int());
    case ValueType::Float: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v.as_float());
      return std::string("f ") + buf;
    }
    case ValueType::String: return "s " + v.as_string();
    default: throw std::invalid_argument("the resume job carries bool, int, float and string options only");
  }
}

inline void write_job(const ResumeJob& job, const std::string& path) {
  std::ofstream f(path);
  f << "plugin " << job.plugin << "\noptimizer " << job.optimizer << "\ndtype " << dtype_name(job.dtype)
    << "\ncheckpoint " << job.checkpoint << "\ngradients " << job.gradients << "\nout " << job.out << "\nsteps "
    << job.steps << "\n";
  for (const ResumeJob::Param& p : job.params) {
    f << "param " << p.group << " " << p.name;
    for (std::int64_t d : p.shape) f << " " << d;
    f << "\n";
  }
  for (const auto& [name, v] : job.options) f << "option " << name << " " << job_value(v) << "\n";
  if (!f.flush()) throw std::runtime_error("cannot write the resume job " + path);
}

inline ResumeJob read_job(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read the resume job " + path);
  ResumeJob job;
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    std::string rest;
    std::getline(in >> std::ws, rest);
    std::istringstream args(rest);
    if (key == "plugin") {
      job.plugin = rest;
    } else if (key == "optimizer") {
      job.optimizer = rest;
    } else if (key == "checkpoint") {
      job.checkpoint = rest;
    } else if (key == "gradients") {
      job.gradients = rest;
    } else if (key == "out") {
      job.out = rest;
    } else if (key == "steps") {
      args >> job.steps;
    } else if (key == "dtype") {
      job.dtype = dtype_from_name(rest);
    } else if (key == "param") {
      ResumeJob::Param p;
      args >> p.group >> p.name;
      for (std::int64_t d; args >> d;) p.shape.push_back(d);
      job.params.push_back(std::move(p));
    } else if (key == "option") {
      std::string name, type, text;
      args >> name >> type;
      std::getline(args >> std::ws, text);
      if (type == "b") {
        job.options[name] = Value(text == "1");
      } else if (type == "i") {
        job.options[name] = Value(static_cast<std::int64_t>(std::stoll(text)));
      } else if (type == "f") {
        job.options[name] = Value(std::stod(text));
      } else {
        job.options[name] = Value(text);
      }
    } else if (!key.empty()) {
      throw std::runtime_error(path + ":" + std::to_string(n) + ": unknown item '" + key + "'");
    }
  }
  return job;
}

}  // namespace optreg::kit
