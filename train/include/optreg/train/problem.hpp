#pragma once
/// \file
/// The built-in problems that `optreg train` and `optreg compare` run optimizers on.
///
/// A problem owns named parameters (optreg::Parameter, float32) and computes the mean loss of
/// a minibatch and its gradient, which it attaches to the parameters, by hand-written code
/// (matrix work through BLAS). Everything is deterministic: initialisation comes from a seed,
/// and the same parameters and batch give the same bits.
///
/// Problems (see docs/train.md):
/// - `quadratic`: a noisy, ill-conditioned quadratic (after DeepOBS's quadratic_deep).
/// - `rosenbrock`: the chained Rosenbrock function, full batch.
/// - `logreg`: multinomial logistic regression on Fashion-MNIST.
/// - `mlp`: a ReLU multi-layer perceptron on Fashion-MNIST (after DeepOBS's fmnist_mlp).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <optreg/parameter.hpp>
#include <optreg/value.hpp>

#include <optreg/train/data.hpp>

namespace optreg::train {

/// What an evaluation measures; `accuracy` is NaN for problems without classes.
struct Evaluation {
  double loss = 0;
  double accuracy = 0;
};

class Problem {
 public:
  virtual ~Problem() = default;

  const std::string& name() const noexcept { return name_; }
  /// The parameters, in a fixed order, with unique names.
  const std::vector<Parameter>& params() const noexcept { return params_; }
  std::vector<std::string> param_names() const;
  std::size_t parameter_count() const;

  /// The number of training examples an epoch visits; 0 for a full-batch problem (then a step
  /// is an epoch and the batch is empty).
  virtual std::size_t train_size() const = 0;
  /// Whether evaluations report an accuracy.
  virtual bool has_accuracy() const { return false; }

  /// The mean loss over the training examples `batch` (indices into the training set; ignored
  /// by full-batch problems); sets the gradient of every parameter.
  virtual double loss_and_grad(const std::vector<std::uint32_t>& batch) = 0;
  /// The mean loss (and accuracy) over the whole training set, without gradients.
  virtual Evaluation evaluate_train() = 0;
  /// The same over the held-out test set (the training set again where there is none).
  virtual Evaluation evaluate_test() = 0;

 protected:
  explicit Problem(std::string name) : name_(std::move(name)) {}
  /// Adds a parameter with its gradient buffer; returns its index.
  std::size_t add_param(const std::string& name, const Shape& shape);
  float* value(std::size_t i) { return params_[i].value().data(); }
  float* grad(std::size_t i) { return grads_[i].data(); }
  /// Attaches every gradient buffer to its parameter (after loss_and_grad filled them).
  void attach_grads();

 private:
  std::string name_;
  std::vector<Parameter> params_;
  std::vector<Tensor> grads_;
};

using ProblemPtr = std::unique_ptr<Problem>;

/// Shared, read-only data a problem may use; loaded once per process for several runs.
class DataCache {
 public:
  /// The dataset in `dir` (loaded on first use).
  std::shared_ptr<const ImageData> images(const std::string& dir);

 private:
  std::vector<std::pair<std::string, std::shared_ptr<const ImageData>>> loaded_;
};

/// A built-in problem: its name, one line of meaning, its options, and its factory.
struct ProblemKind {
  std::string name;
  std::string description;
  Schema schema;
  /// Creates the problem with resolved options, initialised from `seed`.
  std::function<ProblemPtr(const Options& options, std::uint64_t seed, DataCache& data)> create;
  /// Checks resolved options beyond their ranges (sizes that go together); throws OptionError.
  std::function<void(const Options& options)> check;
};

/// Every built-in problem, in a fixed order.
const std::vector<ProblemKind>& problem_kinds();
/// The named kind, or nullptr.
const ProblemKind* find_problem(const std::string& name);

/// Creates an MLP (hidden sizes may be empty: logistic regression) over in-memory data; for
/// tests and for hosts with their own data.
ProblemPtr make_classifier(const std::string& name, std::shared_ptr<const ImageData> data,
                           const std::vector<std::size_t>& hidden, std::uint64_t seed);

}  // namespace optreg::train
