#pragma once
/// \file
/// optreg in a libtorch (C++) training loop: views of `torch::Tensor` parameters and gradients,
/// and an optimizer made by name or from a config over a module's parameters.
///
///     optreg::Registry registry;
///     registry.load_default();
///     optreg::torch::Optimizer opt(registry, "adam", model->named_parameters(), {{"lr", 1e-3}});
///     for (...) {
///       opt.zero_grad();
///       loss_fn(model->forward(x), y).backward();
///       opt.step();   // hands libtorch's gradients to optreg, then steps the parameters in place
///     }
///
/// Target `optreg::torch` (built when CMake finds libtorch). Tensors must be dense, contiguous,
/// on the CPU, of float32, float64, bfloat16 or float16; any other is a UsageError naming it.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <optreg/checkpoint.hpp>
#include <optreg/config.hpp>
#include <optreg/registry.hpp>

namespace optreg::torch {

/// The optreg dtype of `t`; throws UsageError naming `what` for a dtype optreg does not step.
inline DType dtype_of(const at::Tensor& t, const std::string& what) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::Float32;
    case at::kDouble:
      return DType::Float64;
    case at::kBFloat16:
      return DType::BFloat16;
    case at::kHalf:
      return DType::Float16;
    default:
      throw UsageError(what + " is a torch tensor of " + std::string(c10::toString(t.scalar_type())) +
                       "; optreg steps Float, Double, BFloat16 and Half tensors");
  }
}

/// A view of `t`'s memory (no copy) that keeps its storage alive, so that the memory outlives a
/// parameter given other memory (`set_data`) or a model that is gone. Throws UsageError naming
/// `what` for a sparse, non-CPU or non-contiguous tensor, or one of another dtype.
inline Tensor view(const at::Tensor& t, const std::string& what) {
  if (!t.defined()) throw UsageError(what + " is an undefined torch tensor");
  if (t.layout() != at::kStrided) throw UsageError(what + " is a sparse torch tensor; optreg steps dense tensors");
  if (!t.device().is_cpu()) {
    throw UsageError(what + " is on device '" + t.device().str() + "'; optreg steps CPU memory: move it with .cpu()");
  }
  if (!t.is_contiguous()) throw UsageError(what + " is not contiguous; a copy would not be updated in place");
  const DType dtype = dtype_of(t, what);
  Shape shape(t.sizes().begin(), t.sizes().end());
  if (t.numel() == 0) return Tensor(shape, dtype);
  auto storage = std::make_shared<c10::Storage>(t.storage());
  return Tensor::view(t.data_ptr(), dtype, shape, std::shared_ptr<const void>(storage, storage.get()));
}

/// An optreg optimizer over libtorch parameters. step() first hands optreg each parameter's
/// current gradient (a parameter whose grad() is undefined is skipped, as torch::optim does) and
/// its memory, should the parameter have been given other memory; then it steps in place.
class Optimizer {
 public:
  /// Optimizer `name` of `registry` over `params` in one group (named p0, p1, ...). A wrapper
  /// (lookahead) or an optimizer per group is built from a config: from_config().
  Optimizer(const Registry& registry, const std::string& name, const std::vector<at::Tensor>& params,
            const Options& options = {})
      : tensors_(params) {
    std::vector<Parameter> ps;
    for (std::size_t i = 0; i < params.size(); ++i) ps.push_back(parameter("p" + std::to_string(i), params[i], i));
    opt_ = registry.create(name, std::move(ps), options);
    adopt();
  }

  /// Optimizer `name` over a module's named parameters (model->named_parameters()), one group.
  Optimizer(const Registry& registry, const std::string& name,
            const ::torch::OrderedDict<std::string, at::Tensor>& named, const Options& options = {}) {
    std::vector<Parameter> ps;
    for (const auto& item : named) {
      ps.push_back(parameter(item.key(), item.value(), tensors_.size()));
      tensors_.push_back(item.value());
    }
    opt_ = registry.create(name, std::move(ps), options);
    adopt();
  }

  /// The optimizer a YAML config describes over a module's named parameters, grouped by the
  /// config's name patterns (build_optimizer()).
  static Optimizer from_config(const OptimizerConfig& config, const ::torch::OrderedDict<std::string, at::Tensor>& named,
                               const Registry& registry) {
    Optimizer out;
    std::vector<Parameter> ps;
    std::vector<at::Tensor> tensors;
    for (const auto& item : named) {
      ps.push_back(parameter(item.key(), item.value(), tensors.size()));
      tensors.push_back(item.value());
    }
    out.opt_ = build_optimizer(config, ps, registry);
    // The optimizer's parameters are in group order: find each one's tensor by name.
    for (const Parameter& p : out.opt_->parameters()) {
      for (std::size_t i = 0; i < ps.size(); ++i) {
        if (ps[i].same_as(p)) out.tensors_.push_back(tensors[i]);
      }
    }
    out.adopt();
    return out;
  }

  /// Hands over the gradients (and any new memory), then steps.
  Optimizer& step() {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const at::Tensor& t = tensors_[i];
      Parameter& p = params_[i];
      if (t.data_ptr() != data_[i]) {
        Tensor v = view(t, "parameter " + std::to_string(i) + " ('" + p.name() + "')");
        if (v.shape() != p.value().shape() || v.dtype() != p.value().dtype()) {
          throw UsageError("parameter " + std::to_string(i) + " ('" + p.name() + "') was given memory of another shape or dtype");
        }
        p.value() = std::move(v);
        data_[i] = t.data_ptr();
      }
      const at::Tensor& g = t.grad();
      if (!g.defined()) {
        p.clear_grad();
        grads_[i] = nullptr;
      } else if (g.data_ptr() != grads_[i] || !p.has_grad()) {
        p.set_grad(view(g, "the gradient of parameter " + std::to_string(i) + " ('" + p.name() + "')"));
        grads_[i] = g.data_ptr();
      }
    }
    opt_->step();
    return *this;
  }

  /// Zeroes the gradients, or (set_to_none, the default) makes them undefined as
  /// torch::optim::Optimizer::zero_grad() does.
  void zero_grad(bool set_to_none = true) {
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      at::Tensor& g = tensors_[i].mutable_grad();
      if (!g.defined()) continue;
      if (set_to_none) {
        g = at::Tensor();
        params_[i].clear_grad();
        grads_[i] = nullptr;
      } else {
        g.detach_();
        g.zero_();
      }
    }
  }

  /// The optreg optimizer (options, state dicts, schedulers, checkpoints).
  optreg::Optimizer& get() noexcept { return *opt_; }
  const optreg::Optimizer& get() const noexcept { return *opt_; }
  optreg::Optimizer* operator->() noexcept { return opt_.get(); }

 private:
  Optimizer() = default;

  static Parameter parameter(const std::string& name, const at::Tensor& t, std::size_t index) {
    return Parameter(name, view(t, "parameter " + std::to_string(index) + " ('" + name + "')"));
  }

  void adopt() {
    params_ = opt_->parameters();
    data_.clear();
    for (const at::Tensor& t : tensors_) data_.push_back(t.data_ptr());
    grads_.assign(tensors_.size(), nullptr);
  }

  OptimizerPtr opt_;
  std::vector<at::Tensor> tensors_;  // in the optimizer's parameter order
  std::vector<Parameter> params_;
  std::vector<void*> data_;           // each parameter's memory when last seen
  std::vector<const void*> grads_;    // each gradient's memory when last handed over
};

}  // namespace optreg::torch
