// optreg-conformance-resume JOB: resumes a checkpoint in a fresh process for the conformance
// kit (see resume_job.hpp). It loads the job's plugin into a registry of its own, makes the
// optimizer over parameters of the job's names, shapes and dtype in the job's groups, loads the
// checkpoint with load_optimizer(), replays the recorded gradients step by step and saves the
// optimizer with save_optimizer(). Exits 0 when it saved, 1 with the reason on stderr when not.
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <optreg/checkpoint.hpp>
#include <optreg/registry.hpp>

#include "objective.hpp"
#include "kit_inner.hpp"
#include "resume_job.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: optreg-conformance-resume JOB (run by the conformance kit)\n";
    return 2;
  }
  try {
    const optreg::kit::ResumeJob job = optreg::kit::read_job(argv[1]);
    optreg::Registry registry;
    registry.load_file(job.plugin);
    std::vector<optreg::Parameter> params;
    std::vector<optreg::ParamGroupSpec> groups;
    for (const auto& p : job.params) {
      params.emplace_back(p.name, optreg::Tensor(p.shape, job.dtype));
      if (groups.size() <= p.group) groups.resize(p.group + 1);
      groups[p.group].params.push_back(params.back());
    }
    const optreg::OptimizerPtr opt = optreg::kit::make_subject(registry, job.optimizer, std::move(groups), job.options);
    optreg::load_optimizer(job.checkpoint, *opt);
    if (opt->needs_closure()) {
      // The recorded gradients are those of the kit's smooth objective, which a closure
      // re-evaluates at every point it visits.
      for (int step = 0; step < job.steps; ++step) {
        for (std::size_t k = 0; k < params.size(); ++k) {
          params[k].set_grad(optreg::kit::gradient(optreg::kit::Gradient::Smooth, k, params[k].value()));
        }
        optreg::kit::take_step(*opt, params, optreg::kit::Gradient::Smooth);
      }
      optreg::save_optimizer(job.out, *opt);
      return 0;
    }
    std::ifstream gradients(job.gradients, std::ios::binary);
    for (int step = 0; step < job.steps; ++step) {
      for (optreg::Parameter& p : params) {
        optreg::Tensor g(p.value().shape(), job.dtype);
        if (!gradients.read(static_cast<char*>(g.raw()), static_cast<std::streamsize>(g.nbytes()))) {
          throw std::runtime_error("the gradients file " + job.gradients + " ends before step " + std::to_string(step + 1));
        }
        p.set_grad(g);
      }
      opt->step();
    }
    optreg::save_optimizer(job.out, *opt);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
