// The built-in problems: hand-written losses and gradients, matrix work through BLAS.
#include <optreg/train/problem.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include <optreg/error.hpp>
#include <optreg/train/random.hpp>

#include "blas.hpp"
#include "memory.hpp"

namespace optreg::train {

// ---------------------------------------------------------------------------------------------
// Problem, DataCache

std::vector<std::string> Problem::param_names() const {
  std::vector<std::string> out;
  for (const auto& p : params_) out.push_back(p.name());
  return out;
}

std::size_t Problem::parameter_count() const {
  std::size_t n = 0;
  for (const auto& p : params_) n += p.value().numel();
  return n;
}

std::size_t Problem::add_param(const std::string& name, const Shape& shape) {
  params_.emplace_back(name, Tensor(shape));
  grads_.emplace_back(shape);
  return params_.size() - 1;
}

void Problem::attach_grads() {
  for (std::size_t i = 0; i < params_.size(); ++i) params_[i].set_grad(grads_[i]);
}

std::shared_ptr<const ImageData> DataCache::images(const std::string& dir) {
  for (const auto& [d, data] : loaded_) {
    if (d == dir) return data;
  }
  auto data = std::make_shared<const ImageData>(load_mnist_format(dir));
  loaded_.emplace_back(dir, data);
  return data;
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// quadratic: L(theta) = mean_i 0.5 (theta - z_i)' H (theta - z_i), z_i ~ N(0, noise^2 I), with H
// = Q diag(lambda) Q', Q a random rotation and lambda log-spaced over [1/condition, 1].

class Quadratic final : public Problem {
 public:
  Quadratic(std::size_t dim, double condition, double noise, std::size_t train, std::size_t test, std::uint64_t seed) try
      : Problem("quadratic"), blas_(blas("problem 'quadratic'")), dim_(dim), h_(dim * dim, 0.0) {
    Random rng(seed, 1);
    // A random rotation: Gram-Schmidt on a Gaussian matrix (rows of q).
    std::vector<double> q(dim * dim);
    for (auto& v : q) v = rng.normal();
    for (std::size_t i = 0; i < dim; ++i) {
      double* qi = &q[i * dim];
      for (std::size_t j = 0; j < i; ++j) {
        const double d = blas_.ddot(static_cast<int>(dim), qi, 1, &q[j * dim], 1);
        blas_.daxpy(static_cast<int>(dim), -d, &q[j * dim], 1, qi, 1);
      }
      blas_.dscal(static_cast<int>(dim), 1.0 / blas_.dnrm2(static_cast<int>(dim), qi, 1), qi, 1);
    }
    // H = Q' diag(lambda) Q.
    std::vector<double> scaled(q);
    for (std::size_t i = 0; i < dim; ++i) {
      const double t = dim == 1 ? 1.0 : static_cast<double>(i) / static_cast<double>(dim - 1);
      blas_.dscal(static_cast<int>(dim), std::pow(condition, t - 1.0), &scaled[i * dim], 1);
    }
    const int n = static_cast<int>(dim);
    blas_.dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, q.data(), n, scaled.data(), n, 0.0, h_.data(), n);
    Random data_rng(seed, 2);
    train_.resize(train * dim);
    for (auto& v : train_) v = noise * data_rng.normal();
    test_.resize(test * dim);
    for (auto& v : test_) v = noise * data_rng.normal();
    const std::size_t theta = add_param("theta", {static_cast<std::int64_t>(dim)});
    Random init(seed, 3);
    for (std::size_t i = 0; i < dim; ++i) value(theta)[i] = static_cast<float>(init.normal());
  } catch (const std::bad_alloc&) {
    // H, the rotation and a scaled copy of it, the samples, theta and its gradient.
    const double bytes = 8.0 * static_cast<double>(dim) * static_cast<double>(3 * dim + train + test + 1);
    throw Error("problem 'quadratic': " + out_of_memory("dim = " + std::to_string(dim) + " with train_size = " +
                                                        std::to_string(train) + " and test_size = " + std::to_string(test),
                                                    bytes));
  }

  std::size_t train_size() const override { return train_.size() / dim_; }

  double loss_and_grad(const std::vector<std::uint32_t>& batch) override {
    const std::size_t b = batch.size();
    reserve_rows(b, "batch_size");
    const float* theta = value(0);
    for (std::size_t r = 0; r < b; ++r) {
      const double* z = &train_[std::size_t{batch[r]} * dim_];
      for (std::size_t i = 0; i < dim_; ++i) diff_[r * dim_ + i] = static_cast<double>(theta[i]) - z[i];
    }
    const double loss = quadratic_form(b);
    // gradient: H times the mean difference.
    mean_.assign(dim_, 0.0);
    for (std::size_t r = 0; r < b; ++r) blas_.daxpy(static_cast<int>(dim_), 1.0 / static_cast<double>(b), &hd_[r * dim_], 1, mean_.data(), 1);
    float* g = grad(0);
    for (std::size_t i = 0; i < dim_; ++i) g[i] = static_cast<float>(mean_[i]);
    attach_grads();
    return loss;
  }

  Evaluation evaluate_train() override { return evaluate(train_, "train_size"); }
  Evaluation evaluate_test() override { return evaluate(test_, "test_size"); }

 private:
  /// Room for `rows` rows of differences and of H times them; `setting` says what asked for them.
  void reserve_rows(std::size_t rows, const char* setting) {
    try {
      diff_.resize(rows * dim_);
      hd_.resize(rows * dim_);
    } catch (const std::bad_alloc&) {
      throw Error("problem 'quadratic': " + out_of_memory(std::string(setting) + " = " + std::to_string(rows) +
                                                              " (rows of dim = " + std::to_string(dim_) + ")",
                                                          16.0 * static_cast<double>(rows) * static_cast<double>(dim_)));
    }
  }

  /// The mean of 0.5 d' H d over the first `rows` rows of diff_; leaves H d in hd_.
  double quadratic_form(std::size_t rows) {
    const int n = static_cast<int>(dim_);
    blas_.dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), n, n, 1.0, diff_.data(), n,
                h_.data(), n, 0.0, hd_.data(), n);
    double sum = 0;
    for (std::size_t r = 0; r < rows; ++r) sum += 0.5 * blas_.ddot(n, &diff_[r * dim_], 1, &hd_[r * dim_], 1);
    return sum / static_cast<double>(rows);
  }

  Evaluation evaluate(const std::vector<double>& z, const char* setting) {
    const std::size_t rows = z.size() / dim_;
    reserve_rows(rows, setting);
    const float* theta = value(0);
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t i = 0; i < dim_; ++i) diff_[r * dim_ + i] = static_cast<double>(theta[i]) - z[r * dim_ + i];
    }
    return Evaluation{quadratic_form(rows), kNaN};
  }

  const Blas& blas_;
  std::size_t dim_;
  std::vector<double> h_;
  std::vector<double> train_, test_;
  std::vector<double> diff_, hd_, mean_;
};

// ---------------------------------------------------------------------------------------------
// rosenbrock: f(x) = sum_i a (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, full batch.

class Rosenbrock final : public Problem {
 public:
  Rosenbrock(std::size_t dim, double a, bool random_start, std::uint64_t seed) : Problem("rosenbrock"), a_(a) {
    std::size_t x = 0;
    try {
      x = add_param("x", {static_cast<std::int64_t>(dim)});
      gd_.reserve(dim);
    } catch (const std::bad_alloc&) {
      // x, its gradient, and the gradient in double.
      throw Error("problem 'rosenbrock': " + out_of_memory("dim = " + std::to_string(dim), 16.0 * static_cast<double>(dim)));
    }
    Random rng(seed, 1);
    for (std::size_t i = 0; i < dim; ++i) {
      // The classic start (-1.2, 1, -1.2, ...), or a random point around it.
      const double classic = i % 2 == 0 ? -1.2 : 1.0;
      value(x)[i] = static_cast<float>(random_start ? classic + rng.uniform(-0.5, 0.5) : classic);
    }
  }

  std::size_t train_size() const override { return 0; }

  double loss_and_grad(const std::vector<std::uint32_t>& /*batch*/) override {
    const float* x = value(0);
    float* g = grad(0);
    const std::size_t n = params()[0].value().numel();
    gd_.assign(n, 0.0);  // keeps its capacity: no allocation after the first step
    const double f = eval(x, n, gd_.data());
    for (std::size_t i = 0; i < n; ++i) g[i] = static_cast<float>(gd_[i]);
    attach_grads();
    return f;
  }

  Evaluation evaluate_train() override {
    return Evaluation{eval(value(0), params()[0].value().numel(), nullptr), kNaN};
  }
  Evaluation evaluate_test() override { return evaluate_train(); }

 private:
  double eval(const float* xf, std::size_t n, double* g) const {
    double f = 0;
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const double x = xf[i];
      const double y = xf[i + 1];
      const double r = y - x * x;
      f += a_ * r * r + (1 - x) * (1 - x);
      if (g != nullptr) {
        g[i] += -4 * a_ * x * r - 2 * (1 - x);
        g[i + 1] += 2 * a_ * r;
      }
    }
    return f;
  }

  double a_;
  std::vector<double> gd_;  // the gradient in double
};

/// "[784, 256, 10]".
template <typename T>
std::string sizes_text(const std::vector<T>& sizes) {
  std::string s;
  for (const auto n : sizes) s += (s.empty() ? "[" : ", ") + std::to_string(n);
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// Classifier: fully connected layers with ReLU between them and softmax cross-entropy on top.
// Weights are [out, in] (the layout of torch.nn.Linear), named fcK.weight and fcK.bias.

class Classifier final : public Problem {
 public:
  Classifier(const std::string& name, std::shared_ptr<const ImageData> data, const std::vector<std::size_t>& hidden,
             std::uint64_t seed) try
      : Problem(name), blas_(blas("problem '" + name + "'")), data_(data) {
    sizes_.push_back(data_->train.features);
    for (std::size_t h : hidden) sizes_.push_back(h);
    sizes_.push_back(data_->train.classes);
    Random rng(seed, 1);
    for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
      const auto in = static_cast<std::int64_t>(sizes_[l]);
      const auto out = static_cast<std::int64_t>(sizes_[l + 1]);
      const std::string layer = "fc" + std::to_string(l + 1);
      const std::size_t w = add_param(layer + ".weight", {out, in});
      const std::size_t b = add_param(layer + ".bias", {out});
      // U(-1/sqrt(in), 1/sqrt(in)) for both, as torch.nn.Linear initialises by default.
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      for (std::int64_t i = 0; i < out * in; ++i) value(w)[i] = static_cast<float>(rng.uniform(-bound, bound));
      for (std::int64_t i = 0; i < out; ++i) value(b)[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
  } catch (const std::bad_alloc&) {
    std::vector<std::size_t> sizes = {data->train.features};
    sizes.insert(sizes.end(), hidden.begin(), hidden.end());
    sizes.push_back(data->train.classes);
    std::uint64_t count = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) count += std::uint64_t{sizes[l] + 1} * sizes[l + 1];
    const std::string layers = "layers " + sizes_text(sizes) + ", " + std::to_string(count) + " parameters";
    throw Error("problem '" + name + "': " +
                out_of_memory((hidden.empty() ? layers : "hidden: " + sizes_text(hidden) + " (" + layers + ")") +
                                  " with their gradients",
                              8.0 * static_cast<double>(count)));
  }

  std::size_t train_size() const override { return data_->train.count; }
  bool has_accuracy() const override { return true; }

  double loss_and_grad(const std::vector<std::uint32_t>& batch) override {
    const Dataset& d = data_->train;
    const std::size_t rows = batch.size();
    if (rows == 0) throw UsageError("problem '" + name() + "': a batch needs at least one example");
    reserve(rows, "batch_size");
    float* x = acts_[0].data();
    for (std::size_t r = 0; r < rows; ++r) {
      if (batch[r] >= d.count) {
        throw UsageError("problem '" + name() + "': example " + std::to_string(batch[r]) + " is outside the " +
                         std::to_string(d.count) + " training examples");
      }
      std::copy_n(&d.x[std::size_t{batch[r]} * d.features], d.features, x + r * d.features);
      labels_[r] = d.y[batch[r]];
    }
    forward(rows);
    const double loss = softmax_cross_entropy(rows, nullptr, true);
    backward(rows);
    attach_grads();
    return loss;
  }

  Evaluation evaluate_train() override { return evaluate(data_->train); }
  Evaluation evaluate_test() override { return evaluate(data_->test); }

 private:
  static constexpr std::size_t kEvalChunk = 1000;

  std::size_t layers() const { return sizes_.size() - 1; }
  const float* weight(std::size_t l) const { return params()[2 * l].value().data(); }
  const float* bias(std::size_t l) const { return params()[2 * l + 1].value().data(); }

  /// Room for `rows` examples at once; `setting` says what asked for them.
  void reserve(std::size_t rows, const char* setting) {
    if (rows <= capacity_) return;
    try {
      allocate(rows);
    } catch (const std::bad_alloc&) {
      capacity_ = 0;  // what was allocated is incomplete
      std::size_t width = 0;
      for (std::size_t n : sizes_) width += n;
      throw Error("problem '" + name() + "': " +
                  out_of_memory(std::string(setting) + " = " + std::to_string(rows) + " (examples at once through layers " +
                                    sizes_text(sizes_) + ", activations with their gradients)",
                                static_cast<double>(rows) * (8.0 * static_cast<double>(width) + 5.0)));
    }
  }

  void allocate(std::size_t rows) {
    capacity_ = rows;
    acts_.assign(sizes_.size(), {});
    deltas_.assign(sizes_.size(), {});
    for (std::size_t l = 0; l < sizes_.size(); ++l) {
      acts_[l].assign(rows * sizes_[l], 0.0F);
      deltas_[l].assign(rows * sizes_[l], 0.0F);
    }
    labels_.assign(rows, 0);
    ones_.assign(rows, 1.0F);
    exps_.assign(sizes_.back(), 0.0);
  }

  /// acts_[l + 1] = act(acts_[l] W_l' + b_l) for the first `rows` rows; the last layer is linear.
  void forward(std::size_t rows) {
    const int m = static_cast<int>(rows);
    for (std::size_t l = 0; l < layers(); ++l) {
      const int in = static_cast<int>(sizes_[l]);
      const int out = static_cast<int>(sizes_[l + 1]);
      float* z = acts_[l + 1].data();
      const float* b = bias(l);
      for (std::size_t r = 0; r < rows; ++r) std::copy_n(b, out, z + r * sizes_[l + 1]);
      blas_.sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, out, in, 1.0F, acts_[l].data(), in, weight(l), in, 1.0F, z,
                  out);
      if (l + 1 < layers()) {
        for (std::size_t i = 0, n = rows * sizes_[l + 1]; i < n; ++i) z[i] = std::max(z[i], 0.0F);
      }
    }
  }

  /// The mean cross-entropy of the logits in acts_.back() against `labels` (labels_ when null);
  /// counts correct predictions in `correct` when given; with `gradient`, leaves the gradient
  /// of the mean loss with respect to the logits in deltas_.back().
  double softmax_cross_entropy(std::size_t rows, std::size_t* correct, bool gradient) {
    const std::size_t c = sizes_.back();
    const float* logits = acts_.back().data();
    float* delta = deltas_.back().data();
    double sum = 0;
    const float inv_rows = 1.0F / static_cast<float>(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* z = logits + r * c;
      const std::size_t best = static_cast<std::size_t>(std::max_element(z, z + c) - z);
      const float top = z[best];
      double norm = 0;
      for (std::size_t k = 0; k < c; ++k) norm += exps_[k] = std::exp(static_cast<double>(z[k] - top));
      const std::size_t label = labels_[r];
      sum += std::log(norm) - static_cast<double>(z[label] - top);
      if (correct != nullptr && best == label) ++*correct;
      if (gradient) {
        for (std::size_t k = 0; k < c; ++k) {
          delta[r * c + k] = static_cast<float>(exps_[k] / norm - (k == label ? 1.0 : 0.0)) * inv_rows;
        }
      }
    }
    return sum / static_cast<double>(rows);
  }

  /// Gradients of every weight and bias from deltas_.back().
  void backward(std::size_t rows) {
    const int m = static_cast<int>(rows);
    for (std::size_t l = layers(); l-- > 0;) {
      const int in = static_cast<int>(sizes_[l]);
      const int out = static_cast<int>(sizes_[l + 1]);
      const float* delta = deltas_[l + 1].data();
      // dW = delta' A (out x in), db = delta' 1.
      blas_.sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, m, 1.0F, delta, out, acts_[l].data(), in, 0.0F,
                  grad(2 * l), in);
      blas_.sgemv(CblasRowMajor, CblasTrans, m, out, 1.0F, delta, out, ones_.data(), 1, 0.0F, grad(2 * l + 1), 1);
      if (l == 0) break;
      // delta of the layer below: (delta W) masked by where its ReLU was active.
      float* below = deltas_[l].data();
      blas_.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, in, out, 1.0F, delta, out, weight(l), in, 0.0F, below,
                  in);
      const float* a = acts_[l].data();
      for (std::size_t i = 0, n = rows * sizes_[l]; i < n; ++i) {
        if (!(a[i] > 0.0F)) below[i] = 0.0F;
      }
    }
  }

  Evaluation evaluate(const Dataset& d) {
    reserve(std::min(kEvalChunk, d.count), "an evaluation chunk");
    double loss = 0;
    std::size_t correct = 0;
    for (std::size_t start = 0; start < d.count; start += kEvalChunk) {
      const std::size_t rows = std::min(kEvalChunk, d.count - start);
      std::copy_n(&d.x[start * d.features], rows * d.features, acts_[0].data());
      std::copy_n(&d.y[start], rows, labels_.data());
      forward(rows);
      loss += softmax_cross_entropy(rows, &correct, false) * static_cast<double>(rows);
    }
    return Evaluation{loss / static_cast<double>(d.count), static_cast<double>(correct) / static_cast<double>(d.count)};
  }

  const Blas& blas_;
  std::shared_ptr<const ImageData> data_;
  std::vector<std::size_t> sizes_;
  std::size_t capacity_ = 0;
  std::vector<std::vector<float>> acts_, deltas_;
  std::vector<std::uint8_t> labels_;
  std::vector<float> ones_;
  std::vector<double> exps_;  // one row's exp(z - max z)
};

// ---------------------------------------------------------------------------------------------
// The table of kinds.

Hyperparameter int_option(const std::string& name, std::int64_t def, double lo, double hi, const std::string& meaning) {
  return Hyperparameter{name, ValueType::Int, Value(def), Range{lo, hi, false, false}, 0, {}, meaning};
}
Hyperparameter float_option(const std::string& name, double def, Range range, const std::string& meaning) {
  return Hyperparameter{name, ValueType::Float, Value(def), range, 0, {}, meaning};
}
Hyperparameter string_option(const std::string& name, const std::string& def, const std::string& meaning) {
  return Hyperparameter{name, ValueType::String, Value(def), Range{-HUGE_VAL, HUGE_VAL, false, false}, 0, {}, meaning};
}

constexpr double kInf = HUGE_VAL;
/// The most sample values a quadratic holds (doubles).
constexpr double kMaxQuadraticValues = 1e8;

std::vector<std::size_t> layer_sizes(const Options& o) {
  std::vector<std::size_t> out;
  const auto& list = o.at("hidden").as_float_list();
  for (std::size_t i = 0; i < list.size(); ++i) {
    const double h = list[i];
    if (!(h >= 1 && h <= 1e6 && std::floor(h) == h)) {
      throw OptionError("", "hidden", "option 'hidden': element " + std::to_string(i) + " is " + Value(h).to_string() +
                        "; layer sizes are whole numbers in [1, 1000000]");
    }
    out.push_back(static_cast<std::size_t>(h));
  }
  return out;
}

std::vector<ProblemKind> make_kinds() {
  std::vector<ProblemKind> kinds;
  kinds.push_back(ProblemKind{
      "quadratic", "noisy ill-conditioned quadratic 0.5 (x - z)' H (x - z), z ~ N(0, noise^2 I) (DeepOBS quadratic_deep)",
      Schema({int_option("dim", 100, 1, 4096, "number of dimensions"),
              float_option("condition", 1000.0, Range{1, kInf, false, true}, "condition number of H (largest eigenvalue 1)"),
              float_option("noise", 1.0, Range{0, kInf, false, true}, "standard deviation of the samples z"),
              int_option("train_size", 1000, 1, 1e7, "number of training samples"),
              int_option("test_size", 1000, 1, 1e7, "number of test samples")}),
      [](const Options& o, std::uint64_t seed, DataCache&) -> ProblemPtr {
        return std::make_unique<Quadratic>(static_cast<std::size_t>(o.at("dim").as_int()), o.at("condition").as_float(),
                                           o.at("noise").as_float(),
                                           static_cast<std::size_t>(o.at("train_size").as_int()),
                                           static_cast<std::size_t>(o.at("test_size").as_int()), seed);
      },
      [](const Options& o) {
        const double samples = static_cast<double>(o.at("train_size").as_int() + o.at("test_size").as_int());
        if (samples * static_cast<double>(o.at("dim").as_int()) > kMaxQuadraticValues) {
          throw OptionError("", "dim", "options 'dim' x ('train_size' + 'test_size') = " +
                            Value(samples * static_cast<double>(o.at("dim").as_int())).to_string() +
                            " sample values exceed the limit of 1e8 (800 MB)");
        }
      }});
  kinds.push_back(ProblemKind{
      "rosenbrock", "chained Rosenbrock function sum a (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, full batch",
      Schema({int_option("dim", 2, 2, 1e7, "number of dimensions"),
              float_option("a", 100.0, Range{0, kInf, true, true}, "weight of the valley term"),
              Hyperparameter{"start", ValueType::String, Value("classic"), Range{-kInf, kInf, false, false}, 0,
                             {"classic", "random"}, "start at (-1.2, 1, ...) or at a seeded point near it"}}),
      [](const Options& o, std::uint64_t seed, DataCache&) -> ProblemPtr {
        return std::make_unique<Rosenbrock>(static_cast<std::size_t>(o.at("dim").as_int()), o.at("a").as_float(),
                                            o.at("start").as_string() == "random", seed);
      },
      nullptr});
  kinds.push_back(ProblemKind{
      "logreg", "multinomial logistic regression on Fashion-MNIST (softmax cross-entropy)",
      Schema({string_option("data", kFashionMnistDir, "folder of the gzip'd IDX files")}),
      [](const Options& o, std::uint64_t seed, DataCache& cache) -> ProblemPtr {
        return std::make_unique<Classifier>("logreg", cache.images(o.at("data").as_string()), std::vector<std::size_t>{},
                                            seed);
      },
      nullptr});
  kinds.push_back(ProblemKind{
      "mlp", "ReLU multi-layer perceptron on Fashion-MNIST (softmax cross-entropy; DeepOBS fmnist_mlp is hidden [1000, 500, 100])",
      Schema({string_option("data", kFashionMnistDir, "folder of the gzip'd IDX files"),
              Hyperparameter{"hidden", ValueType::FloatList, Value(std::vector<double>{256, 128}),
                             Range{1, 1e6, false, false}, 0, {}, "sizes of the hidden layers"}}),
      [](const Options& o, std::uint64_t seed, DataCache& cache) -> ProblemPtr {
        return std::make_unique<Classifier>("mlp", cache.images(o.at("data").as_string()), layer_sizes(o), seed);
      },
      [](const Options& o) { layer_sizes(o); }});
  return kinds;
}

}  // namespace

const std::vector<ProblemKind>& problem_kinds() {
  static const std::vector<ProblemKind> kinds = make_kinds();
  return kinds;
}

const ProblemKind* find_problem(const std::string& name) {
  for (const auto& k : problem_kinds()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

ProblemPtr make_classifier(const std::string& name, std::shared_ptr<const ImageData> data,
                           const std::vector<std::size_t>& hidden, std::uint64_t seed) {
  return std::make_unique<Classifier>(name, std::move(data), hidden, seed);
}

}  // namespace optreg::train
