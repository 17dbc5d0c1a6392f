// optreg._optreg: the Python binding of the registry, optimizers, schedulers, configs and
// checkpoints. Parameters and gradients are views of the caller's arrays (numpy arrays through
// the buffer protocol, torch tensors through their data pointer), never copies; each view keeps
// its array alive, so an optimizer stays safe when the model that owned the arrays is gone.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/checkpoint.hpp>
#include <optreg/clip.hpp>
#include <optreg/config.hpp>
#include <optreg/registry.hpp>

namespace py = pybind11;

namespace {

using optreg::DType;
using optreg::Tensor;

// ------------------------------------------------------------------ exceptions

/// The Python class of each optreg error, made once by define_errors().
struct ErrorClasses {
  PyObject* error = nullptr;
  PyObject* file = nullptr;
  PyObject* plugin = nullptr;
  PyObject* checkpoint = nullptr;
  PyObject* option = nullptr;
  PyObject* config = nullptr;
  PyObject* state_dict = nullptr;
  PyObject* non_finite = nullptr;
  PyObject* usage = nullptr;
};
ErrorClasses g_errors;

PyObject* new_error(py::module_& m, const char* name, const char* doc, std::initializer_list<PyObject*> bases) {
  py::tuple b(bases.size());
  std::size_t i = 0;
  for (PyObject* base : bases) b[i++] = py::reinterpret_borrow<py::object>(base);
  const std::string full = std::string("optreg.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(full.c_str(), doc, b.ptr(), nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(cls));
  return cls;
}

void define_errors(py::module_& m) {
  ErrorClasses& e = g_errors;
  e.error = new_error(m, "Error", "Base of every error optreg raises.", {PyExc_Exception});
  e.file = new_error(m, "FileError", "A file could not be read or written; `str()` names it.", {e.error, PyExc_RuntimeError});
  e.plugin = new_error(m, "PluginError", "A plugin library could not be loaded; `str()` names its path.", {e.file});
  e.checkpoint = new_error(m, "CheckpointError", "A checkpoint is damaged or does not fit the optimizer.", {e.file});
  e.option = new_error(m, "OptionError", "A hyperparameter is unknown, of the wrong type or out of its range.",
                       {e.error, PyExc_ValueError});
  e.config = new_error(m, "ConfigError", "A YAML config is wrong; `str()` gives its file, line and column.",
                       {e.error, PyExc_ValueError});
  e.state_dict = new_error(m, "StateDictError", "A state dict does not fit the optimizer; nothing was loaded.",
                           {e.error, PyExc_ValueError});
  e.non_finite = new_error(m, "NonFiniteError", "A gradient norm is not finite (clipping with error_if_nonfinite).",
                           {e.error, PyExc_RuntimeError});
  e.usage = new_error(m, "UsageError", "An array or a call does not fit: wrong dtype, shape, memory, or order of calls.",
                      {e.error, PyExc_ValueError});
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const optreg::PluginError& x) {
      PyErr_SetString(g_errors.plugin, x.what());
    } catch (const optreg::CheckpointError& x) {
      PyErr_SetString(g_errors.checkpoint, x.what());
    } catch (const optreg::FileError& x) {
      PyErr_SetString(g_errors.file, x.what());
    } catch (const optreg::OptionError& x) {
      PyErr_SetString(g_errors.option, x.what());
    } catch (const optreg::ConfigError& x) {
      PyErr_SetString(g_errors.config, x.what());
    } catch (const optreg::StateDictError& x) {
      PyErr_SetString(g_errors.state_dict, x.what());
    } catch (const optreg::NonFiniteError& x) {
      PyErr_SetString(g_errors.non_finite, x.what());
    } catch (const optreg::UsageError& x) {
      PyErr_SetString(g_errors.usage, x.what());
    } catch (const optreg::Error& x) {
      PyErr_SetString(g_errors.error, x.what());
    }
  });
}

// ------------------------------------------------------------------ values

std::string type_name(py::handle obj) { return py::str(py::type::of(obj).attr("__qualname__")); }

optreg::Value to_value(py::handle v, const std::string& key) {
  if (py::isinstance<py::bool_>(v)) return optreg::Value(v.cast<bool>());
  if (py::isinstance<py::int_>(v)) {
    try {
      return optreg::Value(v.cast<std::int64_t>());
    } catch (const py::cast_error&) {  // beyond int64: as a float, which the schema's range checks
      PyErr_Clear();
    }
    const double d = PyLong_AsDouble(v.ptr());
    if (d == -1.0 && PyErr_Occurred() != nullptr) {
      PyErr_Clear();
      throw optreg::UsageError("option '" + key + "': the integer " + std::string(py::str(v)).substr(0, 40) +
                               "... is too large for any option");
    }
    return optreg::Value(d);
  }
  if (py::isinstance<py::float_>(v)) return optreg::Value(v.cast<double>());
  if (py::isinstance<py::str>(v)) return optreg::Value(v.cast<std::string>());
  if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
    std::vector<double> l;
    for (py::handle x : v) {
      const auto refuse = [&] {
        return optreg::UsageError("option '" + key + "': a list holds numbers only, not " + type_name(x));
      };
      if (py::isinstance<py::bool_>(x) || py::isinstance<py::str>(x)) throw refuse();
      try {
        l.push_back(x.cast<double>());  // a float, an int, or a numpy or torch scalar
      } catch (const py::cast_error&) {
        PyErr_Clear();
        throw refuse();
      }
    }
    return optreg::Value(std::move(l));
  }
  // A numpy or torch scalar (np.float32(0.1), torch.tensor(0.1)) is taken by its value.
  if (py::hasattr(v, "item") && py::hasattr(v, "dtype")) {
    if (py::hasattr(v, "numel") ? v.attr("numel")().cast<std::size_t>() == 1 : v.attr("size").cast<std::size_t>() == 1) {
      return to_value(v.attr("item")(), key);
    }
  }
  throw optreg::UsageError("option '" + key + "': a " + type_name(v) +
                           " is not an option value (bool, int, float, str or a list of floats)");
}

py::object from_value(const optreg::Value& v) {
  switch (v.type()) {
    case optreg::ValueType::Bool:
      return py::bool_(v.as_bool());
    case optreg::ValueType::Int:
      return py::int_(v.as_int());
    case optreg::ValueType::Float:
      return py::float_(v.as_float());
    case optreg::ValueType::String:
      return py::str(v.as_string());
    case optreg::ValueType::FloatList:
      return py::cast(v.as_float_list());
  }
  return py::none();
}

optreg::Options to_options(const py::dict& d, const char* skip = nullptr) {
  optreg::Options o;
  for (auto [k, v] : d) {
    const std::string key = py::str(k);
    if (skip != nullptr && key == skip) continue;
    o[key] = to_value(v, key);
  }
  return o;
}

py::dict from_options(const optreg::Options& o) {
  py::dict d;
  for (const auto& [k, v] : o) d[py::str(k)] = from_value(v);
  return d;
}

// ------------------------------------------------------------------ arrays

/// Keeps a Python object alive from C++; released with the GIL held.
std::shared_ptr<const void> hold(py::handle obj) {
  Py_XINCREF(obj.ptr());
  return std::shared_ptr<const void>(obj.ptr(), [](const void* p) {
    if (!Py_IsInitialized()) return;  // at interpreter exit the object is gone with it
    py::gil_scoped_acquire gil;
    Py_XDECREF(static_cast<PyObject*>(const_cast<void*>(p)));
  });
}

bool is_torch_tensor(py::handle obj) {
  py::dict modules = py::module_::import("sys").attr("modules");
  if (!modules.contains("torch")) return false;  // no torch tensor exists before torch is imported
  return py::isinstance(obj, modules["torch"].attr("Tensor"));
}

/// A view of the torch tensor `t`: CPU, strided, contiguous, of a dtype optreg steps.
Tensor view_of_torch(py::handle t, const std::string& what) {
  const std::string layout = py::str(t.attr("layout"));
  if (layout != "torch.strided") throw optreg::UsageError(what + " is a sparse torch tensor (" + layout + "); optreg steps dense tensors");
  const std::string device = py::str(t.attr("device"));
  if (py::str(t.attr("device").attr("type")).cast<std::string>() != "cpu") {
    throw optreg::UsageError(what + " is on device '" + device + "'; optreg steps CPU memory: move it with .cpu()");
  }
  if (!t.attr("is_contiguous")().cast<bool>()) {
    throw optreg::UsageError(what + " is not contiguous; pass .contiguous() (a copy would not be updated in place)");
  }
  static const std::map<std::string, DType> kDTypes = {{"torch.float32", DType::Float32},
                                                       {"torch.float64", DType::Float64},
                                                       {"torch.bfloat16", DType::BFloat16},
                                                       {"torch.float16", DType::Float16}};
  const std::string dtype = py::str(t.attr("dtype"));
  const auto it = kDTypes.find(dtype);
  if (it == kDTypes.end()) {
    throw optreg::UsageError(what + " is a torch tensor of " + dtype +
                             "; optreg steps torch.float32, torch.float64, torch.bfloat16 and torch.float16");
  }
  optreg::Shape shape;
  for (py::handle d : t.attr("shape")) shape.push_back(d.cast<std::int64_t>());
  if (optreg::numel_of(shape) == 0) return Tensor(shape, it->second);
  auto* data = reinterpret_cast<void*>(t.attr("data_ptr")().cast<std::uintptr_t>());
  // The view keeps the memory alive through a detached alias: the tensor object itself may
  // be given other memory later (`p.data = ...`), which would free this memory under the view.
  return Tensor::view(data, it->second, shape, hold(t.attr("detach")()));
}

/// A view of the buffer-protocol array `a` (numpy): writable, C-contiguous, float32, float64 or
/// float16.
Tensor view_of_buffer(py::handle a, const std::string& what) {
  auto* buffer = new Py_buffer{};
  if (PyObject_GetBuffer(a.ptr(), buffer, PyBUF_RECORDS_RO) != 0) {
    delete buffer;
    PyErr_Clear();
    throw optreg::UsageError(what + " is a " + type_name(a) + ", which exposes no strided buffer");
  }
  std::shared_ptr<Py_buffer> keep(buffer, [](Py_buffer* b) {
    if (Py_IsInitialized()) {
      py::gil_scoped_acquire gil;
      PyBuffer_Release(b);
    }
    delete b;
  });
  if (buffer->readonly != 0) throw optreg::UsageError(what + " is read-only; optreg updates parameters in place");
  if (PyBuffer_IsContiguous(buffer, 'C') == 0) {
    throw optreg::UsageError(what + " is not C-contiguous; pass numpy.ascontiguousarray() of it (a copy would not be updated in place)");
  }
  std::string format = buffer->format != nullptr ? buffer->format : "B";
  if (!format.empty() && (format[0] == '<' || format[0] == '=' || format[0] == '@')) format.erase(0, 1);
  DType dtype;
  if (format == "f" && buffer->itemsize == 4) {
    dtype = DType::Float32;
  } else if (format == "d" && buffer->itemsize == 8) {
    dtype = DType::Float64;
  } else if (format == "e" && buffer->itemsize == 2) {
    dtype = DType::Float16;
  } else {
    throw optreg::UsageError(what + " holds elements of buffer format '" + format +
                             "'; optreg steps float32, float64 and float16 arrays (bfloat16 through torch tensors)");
  }
  optreg::Shape shape(buffer->shape, buffer->shape + buffer->ndim);
  if (optreg::numel_of(shape) == 0) return Tensor(shape, dtype);
  return Tensor::view(buffer->buf, dtype, shape, std::shared_ptr<const void>(keep, buffer->buf));
}

Tensor view_of(py::handle a, const std::string& what) {
  if (is_torch_tensor(a)) return view_of_torch(a, what);
  if (!PyObject_CheckBuffer(a.ptr())) {
    throw optreg::UsageError(what + " is a " + type_name(a) + ", not an array: pass a numpy array or a torch tensor");
  }
  return view_of_buffer(a, what);
}

// ------------------------------------------------------------------ the registry

/// The registry, shared by what it made so that it may go before them.
struct PyRegistry {
  std::shared_ptr<optreg::Registry> registry = std::make_shared<optreg::Registry>();
};

py::list refusals(const std::vector<optreg::Refusal>& refused) {
  py::list out;
  for (const optreg::Refusal& r : refused) out.append(py::make_tuple(r.path, r.reason));
  return out;
}

py::dict schema_dict(const optreg::Schema& schema) {
  py::dict out;
  for (const optreg::Hyperparameter& h : schema.entries()) {
    py::dict e;
    e["type"] = optreg::to_string(h.type);
    e["default"] = from_value(h.default_value);
    if (h.type == optreg::ValueType::Int || h.type == optreg::ValueType::Float || h.type == optreg::ValueType::FloatList) {
      e["range"] = py::make_tuple(h.range.lo, h.range.hi, h.range.lo_open, h.range.hi_open);
    }
    if (h.list_size != 0) e["length"] = h.list_size;
    if (!h.choices.empty()) e["choices"] = h.choices;
    e["meaning"] = h.meaning;
    out[py::str(h.name)] = e;
  }
  return out;
}

py::list dtype_names(optreg::DTypeSet set) {
  py::list out;
  for (DType d : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    if ((set & optreg::dtype_bit(d)) != 0) out.append(optreg::dtype_name(d));
  }
  return out;
}

// ------------------------------------------------------------------ optimizers

/// Throws UsageError naming both parameters when two of `params` share memory: each would be
/// stepped twice.
void check_disjoint(const std::vector<optreg::Parameter>& params) {
  struct Range {
    const char* begin;
    const char* end;
    std::size_t index;
  };
  std::vector<Range> ranges;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& t = params[i].value();
    if (t.numel() == 0) continue;
    const auto* b = static_cast<const char*>(t.raw());
    ranges.push_back({b, b + t.nbytes(), i});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t k = 1; k < ranges.size(); ++k) {
    if (ranges[k].begin < ranges[k - 1].end) {
      const std::size_t a = std::min(ranges[k - 1].index, ranges[k].index);
      const std::size_t b = std::max(ranges[k - 1].index, ranges[k].index);
      throw optreg::UsageError("parameters " + std::to_string(a) + " ('" + params[a].name() + "') and " +
                               std::to_string(b) + " ('" + params[b].name() +
                               "') share memory; each parameter must be given once");
    }
  }
}

/// An optimizer with the parameters it steps (views of the caller's arrays).
class PyOptimizer {
 public:
  PyOptimizer(std::shared_ptr<optreg::Registry> registry, optreg::OptimizerPtr opt)
      : registry_(std::move(registry)), opt_(std::move(opt)), params_(opt_->parameters()) {}

  optreg::Optimizer& get() { return *opt_; }
  const std::vector<optreg::Parameter>& params() const { return params_; }

  optreg::Parameter& param(std::size_t i) {
    if (i >= params_.size()) {
      throw py::index_error("parameter index " + std::to_string(i) + " is out of range: the optimizer has " +
                            std::to_string(params_.size()) + " parameters");
    }
    return params_[i];
  }

  void set_grad(std::size_t i, py::handle g) {
    optreg::Parameter& p = param(i);
    if (g.is_none()) {
      p.clear_grad();
      return;
    }
    p.set_grad(view_of(g, "the gradient of parameter " + std::to_string(i) + " ('" + p.name() + "')"));
  }

  void set_value(std::size_t i, py::handle v) {
    optreg::Parameter& p = param(i);
    Tensor t = view_of(v, "the new value of parameter " + std::to_string(i) + " ('" + p.name() + "')");
    if (t.dtype() != p.value().dtype() || t.shape() != p.value().shape()) {
      throw optreg::UsageError("parameter " + std::to_string(i) + " ('" + p.name() + "'): the new value is " +
                               optreg::dtype_name(t.dtype()) + " of shape " + optreg::to_string(t.shape()) +
                               ", but the parameter is " + optreg::dtype_name(p.value().dtype()) + " of shape " +
                               optreg::to_string(p.value().shape()));
    }
    p.value() = std::move(t);
  }

  void add_param_group(std::vector<optreg::Parameter> params, const optreg::Options& options) {
    std::vector<optreg::Parameter> all = params_;
    all.insert(all.end(), params.begin(), params.end());
    check_disjoint(all);
    opt_->add_param_group(params, options);
    params_ = opt_->parameters();
  }

  void step() {
    py::gil_scoped_release nogil;
    opt_->step();
  }

  /// A hook that calls `fn(optimizer)` with the GIL; it lives until remove() or the optimizer's
  /// end, as torch's hooks do (dropping the handle keeps it).
  std::shared_ptr<optreg::HookHandle> add_hook(const py::object& self, const std::string& point, const py::function& fn) {
    static const std::pair<const char*, optreg::HookPoint> kPoints[] = {
        {"pre_step", optreg::HookPoint::PreStep},
        {"post_step", optreg::HookPoint::PostStep},
        {"pre_state_dict", optreg::HookPoint::PreStateDict},
        {"post_load", optreg::HookPoint::PostLoad}};
    const auto* it = std::find_if(std::begin(kPoints), std::end(kPoints), [&](const auto& k) { return point == k.first; });
    if (it == std::end(kPoints)) {
      throw optreg::UsageError("add_hook: unknown hook point '" + point +
                               "'; the points are pre_step, post_step, pre_state_dict, post_load");
    }
    // The callable and a weak reference to the Python optimizer (a strong one would keep it
    // alive forever); both change their reference counts only with the GIL.
    struct Held {
      py::object fn, owner;
      ~Held() {
        py::gil_scoped_acquire gil;
        fn = py::object();
        owner = py::object();
      }
    };
    auto held = std::make_shared<Held>();
    held->fn = fn;
    held->owner = py::weakref(self);
    auto handle = std::make_shared<optreg::HookHandle>(opt_->add_hook(it->second, [held](optreg::Optimizer&) {
      py::gil_scoped_acquire gil;
      const py::object owner = held->owner();
      if (!owner.is_none()) held->fn(owner);
    }));
    hooks_.push_back(handle);
    return handle;
  }

  /// step(closure): the closure (a Python callable returning the loss) runs with the GIL, the
  /// optimizer's work without it; a Python exception of the closure propagates as it was.
  double step(const py::function& closure) {
    const optreg::Closure call = [&closure]() -> double {
      py::gil_scoped_acquire gil;
      const py::object loss = closure();
      if (py::hasattr(loss, "item")) return loss.attr("item")().cast<double>();  // a torch or numpy scalar
      return loss.cast<double>();
    };
    py::gil_scoped_release nogil;
    return opt_->step(call);
  }

 private:
  std::shared_ptr<optreg::Registry> registry_;  // declared first: destroyed after the optimizer
  optreg::OptimizerPtr opt_;
  std::vector<optreg::Parameter> params_;  // in id order
  std::vector<std::shared_ptr<optreg::HookHandle>> hooks_;  // its hooks live as long as it
};

/// The context manager of PyOptimizer's eval_weights(): an optreg::EvalWeights from __enter__
/// to __exit__.
class EvalScope {
 public:
  explicit EvalScope(optreg::Optimizer& opt) : opt_(&opt) {}
  EvalScope& enter() {
    if (scope_) throw optreg::UsageError("eval_weights(): this scope is already entered");
    scope_.emplace(*opt_);
    return *this;
  }
  void exit() { scope_.reset(); }
  bool active() const { return scope_ && scope_->active(); }

 private:
  optreg::Optimizer* opt_;
  std::optional<optreg::EvalWeights> scope_;
};

/// Parameters from a list of arrays, or of (name, array) pairs.
std::vector<optreg::Parameter> params_of(py::handle list, std::size_t& index, const std::string& group) {
  std::vector<optreg::Parameter> out;
  if (py::isinstance<py::str>(list) || !py::hasattr(list, "__iter__")) {
    throw optreg::UsageError(group + ": 'params' is a " + type_name(list) + ", not a list of arrays");
  }
  for (py::handle item : list) {
    std::string name = "p" + std::to_string(index);
    py::handle array = item;
    if (py::isinstance<py::tuple>(item) && py::len(item) == 2 && py::isinstance<py::str>(item[py::int_(0)])) {
      name = item[py::int_(0)].cast<std::string>();
      array = item[py::int_(1)];
    }
    out.emplace_back(name, view_of(array, "parameter " + std::to_string(index) + " ('" + name + "')"));
    ++index;
  }
  return out;
}

std::unique_ptr<PyOptimizer> create(const PyRegistry& r, const std::string& name, py::handle params, const py::dict& defaults) {
  std::vector<optreg::ParamGroupSpec> groups;
  std::size_t index = 0;
  py::list items;
  for (py::handle item : params) items.append(item);
  const bool as_groups = py::len(items) > 0 && py::isinstance<py::dict>(items[0]);
  if (as_groups) {
    for (std::size_t g = 0; g < py::len(items); ++g) {
      const std::string where = "param group " + std::to_string(g);
      if (!py::isinstance<py::dict>(items[g])) {
        throw optreg::UsageError(where + " is a " + type_name(items[g]) + "; give every group as a dict or none");
      }
      py::dict d = items[g];
      if (!d.contains("params")) throw optreg::UsageError(where + " has no 'params'");
      groups.push_back({params_of(d["params"], index, where), to_options(d, "params")});
    }
  } else {
    groups.push_back({params_of(items, index, "param group 0"), {}});
  }
  std::vector<optreg::Parameter> all;
  for (const optreg::ParamGroupSpec& g : groups) all.insert(all.end(), g.params.begin(), g.params.end());
  check_disjoint(all);
  if (!defaults.contains("inner")) {
    return std::make_unique<PyOptimizer>(r.registry, r.registry->create(name, std::move(groups), to_options(defaults)));
  }
  // A wrapper: `inner` names the optimizer it wraps, or is a dict of its name and options; the
  // other keyword arguments are options of every group (either optimizer's).
  const py::object inner = defaults["inner"];
  std::string inner_name;
  optreg::Options inner_options;
  if (py::isinstance<py::str>(inner)) {
    inner_name = inner.cast<std::string>();
  } else if (py::isinstance<py::dict>(inner) && py::dict(inner).contains("name") &&
             py::isinstance<py::str>(py::dict(inner)["name"])) {
    inner_name = py::dict(inner)["name"].cast<std::string>();
    inner_options = to_options(py::dict(inner), "name");
  } else {
    throw optreg::UsageError("inner= names the optimizer a wrapper steps with: a name, or a dict with 'name' and its "
                             "options, not a " + type_name(inner));
  }
  const optreg::Options every = to_options(defaults, "inner");
  for (optreg::ParamGroupSpec& g : groups) {
    for (const auto& [key, value] : every) g.options.emplace(key, value);  // a group's own value wins
  }
  return std::make_unique<PyOptimizer>(r.registry,
                                       r.registry->create_wrapped(name, {}, inner_name, std::move(groups), inner_options));
}

py::list param_groups(optreg::Optimizer& opt) {
  py::list out;
  std::size_t id = 0;
  for (const optreg::ParamGroup& g : opt.param_groups()) {
    py::dict d = from_options(g.options());
    py::list ids;
    for (std::size_t i = 0; i < g.params().size(); ++i) ids.append(id++);
    d["params"] = ids;
    out.append(d);
  }
  return out;
}

/// A state dict as Python holds it: the optimizer's name, its groups' options (read-only
/// information) and the whole state encoded as a checkpoint (its tensors, every option, each
/// tensor's dtype), which load_state_dict() checks before it changes anything. Picklable, so
/// torch.save() and pickle keep it.
py::dict state_dict(PyOptimizer& o) {
  optreg::Checkpoint c;
  c.optimizer = o.get().state_dict(optreg::TensorCopy::Shared);
  std::string bytes;
  {
    py::gil_scoped_release nogil;
    bytes = optreg::encode_checkpoint(c);
  }
  py::dict d;
  d["optimizer"] = o.get().name();
  d["param_groups"] = param_groups(o.get());
  d["optreg_state"] = py::bytes(bytes);
  return d;
}

void load_state_dict(PyOptimizer& o, const py::dict& d) {
  if (!d.contains("optreg_state")) {
    throw optreg::UsageError("the state dict has no 'optreg_state' entry: it was not made by an optreg optimizer's "
                             "state_dict() (convert a torch.optim state dict with optreg.torch.from_torch_state_dict())");
  }
  const std::string bytes = py::bytes(d["optreg_state"]);
  py::gil_scoped_release nogil;
  optreg::Checkpoint c = optreg::parse_checkpoint(bytes.data(), bytes.size(), "the state dict");
  o.get().load_state_dict(c.optimizer);  // checks everything before it changes anything
}

// ------------------------------------------------------------------ state dicts as Python data

/// A copy of `t` as a numpy array (float32, float64 or float16); `what` names it when its dtype
/// has no numpy counterpart (bfloat16, quantized state).
py::array to_numpy(const Tensor& t, const std::string& what) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  py::dtype dtype;
  switch (t.dtype()) {
    case DType::Float32:
      dtype = py::dtype::of<float>();
      break;
    case DType::Float64:
      dtype = py::dtype::of<double>();
      break;
    case DType::Float16:
      dtype = py::dtype("float16");
      break;
    default:
      throw optreg::UsageError(what + " is " + optreg::dtype_name(t.dtype()) +
                               ", which has no numpy dtype; only float32, float64 and float16 state is converted");
  }
  py::array out(dtype, shape);
  if (t.numel() != 0) std::memcpy(out.mutable_data(), t.raw(), t.nbytes());
  return out;
}

/// The state dict encoded in `bytes` as Python data: {"optimizer", "plugin_version",
/// "param_groups": [{"params": [ids], option: value, ...}], "state": {id: {entry: value}}},
/// tensors as numpy arrays.
py::dict decode_state(const std::string& bytes) {
  const optreg::Checkpoint c = optreg::parse_checkpoint(bytes.data(), bytes.size(), "the state dict");
  const optreg::StateDict& sd = c.optimizer;
  py::dict out;
  out["optimizer"] = sd.optimizer;
  out["plugin_version"] = sd.plugin_version;
  py::list groups;
  for (const optreg::StateDict::Group& g : sd.param_groups) {
    py::dict d = from_options(g.options);
    d["params"] = g.params;
    groups.append(d);
  }
  out["param_groups"] = groups;
  py::dict state;
  for (const auto& [id, s] : sd.state) {
    py::dict entries;
    for (const auto& [name, v] : s.scalars()) entries[py::str(name)] = std::visit([](auto x) { return py::cast(x); }, v);
    for (const auto& [name, t] : s.tensors()) {
      entries[py::str(name)] = to_numpy(t, "state '" + name + "' of parameter id " + std::to_string(id));
    }
    state[py::int_(id)] = entries;
  }
  out["state"] = state;
  return out;
}

/// The inverse of decode_state(): Python data to the encoded state dict. Integers are counts,
/// floats float scalars, arrays (numpy, or anything numpy.asarray takes) tensors of their dtype.
std::string encode_state(const py::dict& d) {
  optreg::Checkpoint c;
  optreg::StateDict& sd = c.optimizer;
  sd.optimizer = py::str(d["optimizer"]);
  sd.plugin_version = py::str(d["plugin_version"]);
  for (py::handle g : d["param_groups"]) {
    py::dict group = py::reinterpret_borrow<py::dict>(g);
    optreg::StateDict::Group out;
    out.options = to_options(group, "params");
    for (py::handle id : group["params"]) out.params.push_back(id.cast<std::uint64_t>());
    sd.param_groups.push_back(std::move(out));
  }
  py::module_ np = py::module_::import("numpy");
  for (auto [id_obj, entries_obj] : py::reinterpret_borrow<py::dict>(d["state"])) {
    const auto id = id_obj.cast<std::uint64_t>();
    optreg::ParamState& s = sd.state[id];
    for (auto [name_obj, v] : py::reinterpret_borrow<py::dict>(entries_obj)) {
      const std::string name = py::str(name_obj);
      const std::string what = "state '" + name + "' of parameter id " + std::to_string(id);
      if (py::isinstance<py::bool_>(v)) throw optreg::UsageError(what + " is a bool; state holds counts, floats and arrays");
      if (py::isinstance<py::int_>(v)) {
        s.add_scalar(name, v.cast<std::int64_t>());
      } else if (py::isinstance<py::float_>(v)) {
        s.add_scalar(name, v.cast<double>());
      } else {
        py::array a = np.attr("array")(v, py::arg("copy") = true, py::arg("order") = "C");  // writable, contiguous
        const Tensor view = view_of_buffer(a, what);
        s.add_tensor(name, view.clone());
      }
    }
  }
  return optreg::encode_checkpoint(c);
}

// ------------------------------------------------------------------ schedulers

class PyScheduler {
 public:
  PyScheduler(std::shared_ptr<optreg::Registry> registry, optreg::SchedulerPtr s)
      : registry_(std::move(registry)), s_(std::move(s)) {}
  optreg::Scheduler& get() { return *s_; }

 private:
  std::shared_ptr<optreg::Registry> registry_;
  optreg::SchedulerPtr s_;
};

// ------------------------------------------------------------------ configs

struct ConfigHandle {
  optreg::OptimizerConfig config;
};

}  // namespace

PYBIND11_MODULE(_optreg, m) {
  m.doc() = "optreg: deep-learning parameter optimizers loaded as plugins by name";
  define_errors(m);

  py::class_<PyRegistry>(m, "Registry", "Loaded optimizer and scheduler plugins.")
      .def(py::init<>())
      .def(
          "load_default", [](PyRegistry& r) { return refusals(r.registry->load_default()); },
          "Loads the in-tree plugins and those on OPTREG_PLUGIN_PATH; returns the refused files as (path, reason).")
      .def(
          "load_file", [](PyRegistry& r, const std::string& path) { return r.registry->load_file(path); },
          py::arg("path"), "Loads one plugin library; returns the names it registered. Raises PluginError.")
      .def(
          "load_directory", [](PyRegistry& r, const std::string& dir) { return refusals(r.registry->load_directory(dir)); },
          py::arg("path"))
      .def("names",
           [](const PyRegistry& r) {
             std::vector<std::string> out;
             for (const auto& d : r.registry->list()) out.push_back(d.name);
             return out;
           })
      .def("scheduler_names",
           [](const PyRegistry& r) {
             std::vector<std::string> out;
             for (const auto& d : r.registry->list_schedulers()) out.push_back(d.name);
             return out;
           })
      .def(
          "schema",
          [](const PyRegistry& r, const std::string& name) {
            if (auto d = r.registry->find(name)) return schema_dict(*d->schema);
            if (auto s = r.registry->find_scheduler(name)) return schema_dict(*s->schema);
            std::vector<std::string> known;
            for (const auto& d : r.registry->list()) known.push_back(d.name);
            for (const auto& d : r.registry->list_schedulers()) known.push_back(d.name);
            throw optreg::PluginError(optreg::unknown_name_message(
                "no optimizer or scheduler named '" + name + "' is registered", name, known));
          },
          py::arg("name"), "The hyperparameters of an optimizer or scheduler: name -> {type, default, range, ...}.")
      .def(
          "describe",
          [](const PyRegistry& r, const std::string& name) {
            const auto d = r.registry->find(name);
            if (!d) {
              std::vector<std::string> known;
              for (const auto& o : r.registry->list()) known.push_back(o.name);
              throw optreg::PluginError(
                  optreg::unknown_name_message("no optimizer named '" + name + "' is registered", name, known));
            }
            py::dict out;
            out["name"] = d->name;
            out["description"] = d->description;
            out["plugin"] = d->plugin_name;
            out["version"] = d->plugin_version;
            out["source"] = d->source;
            out["param_dtypes"] = dtype_names(d->param_dtypes);
            py::list state_dtypes;
            state_dtypes.append("float32");
            if ((d->state_dtypes & optreg::abi::kStateBFloat16) != 0) state_dtypes.append("bfloat16");
            if ((d->state_dtypes & optreg::abi::kStateInt8) != 0) state_dtypes.append("int8");
            out["state_dtypes"] = state_dtypes;
            out["flags"] = optreg::optimizer_flag_names(d->flags);
            py::list state;
            for (const optreg::StateEntry& e : *d->state) state.append(py::make_tuple(e.name, optreg::to_string(e.kind)));
            out["state"] = state;
            return out;
          },
          py::arg("name"))
      .def("refusals", [](const PyRegistry& r) { return refusals(r.registry->refused()); },
           "Every plugin file refused so far, as (path, reason).")
      .def(
          "create",
          [](const PyRegistry& r, const std::string& name, py::handle params, const py::kwargs& defaults) {
            return create(r, name, params, defaults);
          },
          py::arg("name"), py::arg("params"),
          "Makes optimizer `name` over `params`: arrays, (name, array) pairs, or dicts of groups "
          "({'params': [...], 'lr': ...}); keyword arguments are the defaults of every group. A wrapper "
          "(lookahead) takes inner='adam' or inner={'name': 'adam', 'lr': 1e-3}: the optimizer it wraps.")
      .def(
          "create_scheduler",
          [](const PyRegistry& r, const std::string& name, PyOptimizer& opt, const py::kwargs& options) {
            return std::make_unique<PyScheduler>(r.registry,
                                                 r.registry->create_scheduler(name, opt.get(), to_options(options)));
          },
          py::arg("name"), py::arg("optimizer"), py::keep_alive<0, 2>())
      .def(
          "build",
          [](const PyRegistry& r, const ConfigHandle& c, py::handle named_params) {
            std::size_t index = 0;
            std::vector<optreg::Parameter> params = params_of(named_params, index, "the named parameters");
            check_disjoint(params);
            return std::make_unique<PyOptimizer>(r.registry, optreg::build_optimizer(c.config, params, *r.registry));
          },
          py::arg("config"), py::arg("named_params"),
          "Makes the optimizer a config describes over (name, array) pairs, grouped by the config's patterns.")
      .def(
          "build_scheduler",
          [](const PyRegistry& r, const ConfigHandle& c, PyOptimizer& opt) -> std::unique_ptr<PyScheduler> {
            optreg::SchedulerPtr s = optreg::build_scheduler(c.config, opt.get(), *r.registry);
            if (!s) return nullptr;
            return std::make_unique<PyScheduler>(r.registry, std::move(s));
          },
          py::arg("config"), py::arg("optimizer"), py::keep_alive<0, 3>())
      .def(
          "load_config_plugins",
          [](PyRegistry& r, const ConfigHandle& c) { return refusals(optreg::load_config_plugins(c.config, *r.registry)); },
          py::arg("config"));

  py::class_<ConfigHandle>(m, "Config", "A parsed YAML optimizer config.")
      .def_property_readonly("optimizer", [](const ConfigHandle& c) { return c.config.optimizer; })
      .def_property_readonly("source", [](const ConfigHandle& c) { return c.config.source; })
      .def_property_readonly("has_scheduler", [](const ConfigHandle& c) { return c.config.scheduler.has_value(); });
  m.def(
      "load_config", [](const std::string& path) { return ConfigHandle{optreg::load_config(path)}; }, py::arg("path"),
      "Reads a YAML config; raises ConfigError naming the file, line and column of what is wrong.");
  m.def(
      "parse_config", [](const std::string& text) { return ConfigHandle{optreg::parse_config(text)}; }, py::arg("text"));

  py::class_<EvalScope>(m, "EvalWeights")
      .def("__enter__", &EvalScope::enter, py::return_value_policy::reference_internal)
      .def("__exit__", [](EvalScope& e, const py::args&) {
        e.exit();
        return false;
      })
      .def_property_readonly("active", &EvalScope::active, "Whether the parameters hold evaluation weights.");

  py::class_<optreg::HookHandle, std::shared_ptr<optreg::HookHandle>>(m, "HookHandle", "A hook added by add_hook().")
      .def("remove", &optreg::HookHandle::remove, "Removes the hook (nothing if it was removed).")
      .def_property_readonly("active", &optreg::HookHandle::active);

  py::class_<PyOptimizer>(m, "Optimizer", "An optreg optimizer stepping views of the caller's arrays.")
      .def_property_readonly("name", [](PyOptimizer& o) { return o.get().name(); })
      .def_property_readonly("num_params", [](PyOptimizer& o) { return o.params().size(); })
      .def_property_readonly("param_names",
                             [](PyOptimizer& o) {
                               std::vector<std::string> out;
                               for (const auto& p : o.params()) out.push_back(p.name());
                               return out;
                             })
      .def_property_readonly("param_groups", [](PyOptimizer& o) { return param_groups(o.get()); },
                             "Each group's options and parameter indices (a copy: change options with set_option()).")
      .def("set_grad", &PyOptimizer::set_grad, py::arg("index"), py::arg("grad"),
           "Makes `grad` (an array of the parameter's dtype and shape, viewed, not copied) the gradient of "
           "parameter `index`; None clears it.")
      .def(
          "set_grads",
          [](PyOptimizer& o, py::handle grads) {
            std::size_t i = 0;
            for (py::handle g : grads) o.set_grad(i++, g);
            if (i != o.params().size()) {
              throw optreg::UsageError("set_grads got " + std::to_string(i) + " gradients for " +
                                       std::to_string(o.params().size()) + " parameters");
            }
          },
          py::arg("grads"))
      .def("set_value", &PyOptimizer::set_value, py::arg("index"), py::arg("value"),
           "Makes `value` (same dtype and shape) the memory of parameter `index` from now on.")
      .def(
          "add_param_group",
          [](PyOptimizer& o, py::handle params, const py::kwargs& options) {
            std::size_t index = o.params().size();
            o.add_param_group(params_of(params, index, "the new param group"), to_options(options));
          },
          py::arg("params"), "Adds a group of parameters with its own options (the others at the defaults).")
      .def("has_grad", [](PyOptimizer& o, std::size_t i) { return o.param(i).has_grad(); }, py::arg("index"))
      .def(
          "add_hook",
          [](const py::object& self, const std::string& point, const py::function& fn) {
            return self.cast<PyOptimizer&>().add_hook(self, point, fn);
          },
          py::arg("point"), py::arg("fn"),
          "Calls fn(optimizer) at `point` ('pre_step', 'post_step', 'pre_state_dict', 'post_load'), after the hooks "
          "added before it; returns a handle whose remove() removes it (dropping the handle keeps it). An exception "
          "of a pre_step hook leaves the optimizer unchanged.")
      .def(
          "step",
          [](PyOptimizer& o) -> PyOptimizer& {
            o.step();
            return o;
          },
          py::return_value_policy::reference_internal,
          "One update of every parameter that has a gradient (the GIL is released meanwhile).")
      .def(
          "step", [](PyOptimizer& o, const py::function& closure) { return o.step(closure); }, py::arg("closure"),
          "A step that may re-evaluate the loss: calls `closure` (which sets the gradients and returns the loss) once, "
          "then as often as an optimizer that needs a closure (lbfgs) does; returns the first loss.")
      .def_property_readonly("needs_closure", [](PyOptimizer& o) { return o.get().needs_closure(); },
                             "Whether it must be stepped with step(closure).")
      .def_property_readonly("has_eval_weights", [](PyOptimizer& o) { return o.get().has_eval_weights(); },
                             "Whether it evaluates at other weights than it trains (schedulefree_adamw).")
      .def(
          "eval_weights", [](PyOptimizer& o) { return std::make_unique<EvalScope>(o.get()); }, py::keep_alive<0, 1>(),
          "A context manager that puts the evaluation weights in the parameters and the training weights back "
          "at its end, bit for bit (nothing for an optimizer without them).")
      .def(
          "clear_grad",
          [](PyOptimizer& o) -> PyOptimizer& {
            o.get().clear_grad();
            return o;
          },
          py::return_value_policy::reference_internal)
      .def(
          "set_option",
          [](PyOptimizer& o, const std::string& name, py::handle value, std::optional<std::size_t> group) {
            const optreg::Value v = to_value(value, name);
            if (group) {
              o.get().set_option(*group, name, v);
            } else {
              o.get().set_option(name, v);
            }
          },
          py::arg("name"), py::arg("value"), py::arg("group") = py::none(),
          "Sets an option of one group (or of every group); it takes effect at the next step().")
      .def(
          "option",
          [](PyOptimizer& o, const std::string& name, std::size_t group) {
            if (group >= o.get().param_groups().size()) {
              throw py::index_error("param group " + std::to_string(group) + " is out of range");
            }
            return from_value(o.get().param_groups()[group].option(name));
          },
          py::arg("name"), py::arg("group") = 0)
      .def("state_dict", &state_dict)
      .def("load_state_dict", &load_state_dict, py::arg("state_dict"),
           "Restores a state_dict(): all or nothing (a refused one leaves the optimizer as it was).")
      .def(
          "state",
          [](PyOptimizer& o, std::size_t i) {
            const optreg::ParamState& s = o.get().state(o.param(i));
            py::dict out;
            for (const auto& [name, v] : s.scalars()) {
              out[py::str(name)] = std::visit([](auto x) { return py::cast(x); }, v);
            }
            for (const auto& [name, t] : s.tensors()) {
              out[py::str(name)] = py::make_tuple(optreg::dtype_name(t.dtype()), py::cast(t.shape()));
            }
            return out;
          },
          py::arg("index"), "Parameter `index`'s state: scalars by value, tensors as (dtype, shape).")
      .def(
          "save",
          [](PyOptimizer& o, const std::string& path) {
            py::gil_scoped_release nogil;
            optreg::save_optimizer(path, o.get());
          },
          py::arg("path"), "Writes a checkpoint (state and parameter values) atomically.")
      .def(
          "load",
          [](PyOptimizer& o, const std::string& path, bool convert_dtypes) {
            optreg::LoadOptions options;
            options.convert_dtypes = convert_dtypes;
            py::gil_scoped_release nogil;
            optreg::load_optimizer(path, o.get(), options);
          },
          py::arg("path"), py::arg("convert_dtypes") = false,
          "Restores a checkpoint written by save(), all or nothing.")
      .def(
          "load_by_name",
          [](PyOptimizer& o, const std::string& path, bool fresh_for_missing, bool drop_unexpected,
             const std::map<std::string, std::string>& renames, bool convert_dtypes) {
            optreg::NameMatchPolicy policy;
            policy.fresh_for_missing = fresh_for_missing;
            policy.drop_unexpected = drop_unexpected;
            policy.renames.assign(renames.begin(), renames.end());
            optreg::LoadOptions options;
            options.convert_dtypes = convert_dtypes;
            optreg::NameMatchReport report;
            {
              py::gil_scoped_release nogil;
              report = optreg::load_optimizer_by_name(path, o.get(), policy, options);
            }
            py::dict out;
            py::list matched;
            for (const auto& m : report.matched) matched.append(py::make_tuple(m.param, m.saved));
            out["matched"] = matched;
            out["created"] = report.created;
            out["dropped"] = report.dropped;
            return out;
          },
          py::arg("path"), py::kw_only(), py::arg("fresh_for_missing") = false, py::arg("drop_unexpected") = false,
          py::arg("renames") = std::map<std::string, std::string>{}, py::arg("convert_dtypes") = false,
          "Restores a checkpoint matching parameters by name (a model that changed a little), all or nothing; "
          "renames maps a glob of saved names to the new name ('*' carried). Returns {'matched': [(param, saved)], "
          "'created': [...], 'dropped': [...]}.")
      .def(
          "clip_grad_norm",
          [](PyOptimizer& o, double max_norm, double norm_type, bool error_if_nonfinite) {
            py::gil_scoped_release nogil;
            return optreg::clip_grad_norm(o.params(), max_norm, norm_type, error_if_nonfinite);
          },
          py::arg("max_norm"), py::arg("norm_type") = 2.0, py::arg("error_if_nonfinite") = false)
      .def(
          "clip_grad_value",
          [](PyOptimizer& o, double value) {
            py::gil_scoped_release nogil;
            optreg::clip_grad_value(o.params(), value);
          },
          py::arg("clip_value"));

  py::class_<PyScheduler>(m, "Scheduler", "A learning-rate scheduler driving one optimizer.")
      .def_property_readonly("name", [](PyScheduler& s) { return s.get().name(); })
      .def_property_readonly("needs_metric", [](PyScheduler& s) { return s.get().needs_metric(); })
      .def("step", [](PyScheduler& s) { s.get().step(); })
      .def("step", [](PyScheduler& s, double metric) { s.get().step(metric); }, py::arg("metric"))
      .def("last_lr", [](PyScheduler& s) { return s.get().last_lr(); })
      .def("state", [](PyScheduler& s) { return from_options(s.get().state()); })
      .def("load_state", [](PyScheduler& s, const py::dict& d) { s.get().load_state(to_options(d)); }, py::arg("state"));

  m.def("decode_state", [](const py::bytes& b) { return decode_state(std::string(b)); }, py::arg("optreg_state"),
        "The encoded state of a state_dict() as Python data, tensors as numpy arrays.");
  m.def("encode_state", [](const py::dict& d) { return py::bytes(encode_state(d)); }, py::arg("state"),
        "The inverse of decode_state().");
  m.attr("abi_version") = OPTREG_ABI_MAJOR;
}
