#include <optreg/registry.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <system_error>
#include <tuple>
#include <utility>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/text.hpp>
#include <optreg/version.hpp>

#include <optreg/detail/files.hpp>

#include "catalogue.hpp"
#include "plugin_descriptor.hpp"

namespace optreg {

namespace fs = std::filesystem;

struct Registry::Plugin {
  std::string path;
  std::string name;
  std::string version;
  /// The names it registered, kind by kind in the order of Kinds.
  std::vector<std::string> names;
  boost::dll::shared_library library;
};

namespace {

using detail::Refused;

/// The part of a Boost.DLL load error that the dynamic loader wrote, or the whole message.
std::string loader_message(const std::string& what) {
  const std::string key = "dlerror system message: ";
  const auto at = what.find(key);
  if (at == std::string::npos) return what;
  const auto end = what.rfind(')');
  const auto begin = at + key.size();
  return what.substr(begin, end == std::string::npos || end < begin ? std::string::npos : end - begin);
}

/// Optimizers: the first kind of plugin object (see catalogue.hpp for what a kind provides).
struct OptimizerKind : detail::KindBase<OptimizerDescriptor, abi::OptimizerEntry, Optimizer> {
  static constexpr const char* kWord = "optimizer";
  static constexpr std::uint32_t kMinEntrySize = abi::kMinOptimizerEntrySize;
  static detail::EntryTable table(const abi::PluginDescriptor& d) {
    return {d.optimizers, d.optimizer_count, d.optimizer_entry_size};
  }
  static void describe(const Entry& e, Descriptor& out) {
    // The core's precision options and state follow the plugin's own; a plugin may not take their names.
    StateSchema state = detail::convert_state(e);
    std::vector<Hyperparameter> options = out.schema->entries();
    for (Hyperparameter& h : precision_options()) {
      for (const Hyperparameter& mine : options) {
        if (mine.name == h.name) throw Refused{"optimizer '" + std::string(e.name) + "' declares hyperparameter '" + h.name + "', which the core provides"};
      }
      options.push_back(std::move(h));
    }
    for (StateEntry& entry : precision_state()) {
      for (const StateEntry& mine : state) {
        if (mine.name == entry.name) throw Refused{"optimizer '" + std::string(e.name) + "' declares state entry '" + entry.name + "', which the core keeps"};
      }
      state.push_back(std::move(entry));
    }
    out.schema = std::make_shared<const Schema>(std::move(options));
    out.state = std::make_shared<const StateSchema>(std::move(state));
    if ((e.param_dtypes & ~kAllDTypes) != 0) throw Refused{"optimizer '" + std::string(e.name) + "' declares unknown parameter dtypes"};
    if ((e.state_dtypes & ~(abi::kStateBFloat16 | abi::kStateInt8)) != 0) {
      throw Refused{"optimizer '" + std::string(e.name) + "' declares unknown state dtypes"};
    }
    if ((e.flags & ~abi::kOptimizerFlags) != 0) throw Refused{"optimizer '" + std::string(e.name) + "' declares unknown flags"};
    out.param_dtypes = e.param_dtypes == 0 ? dtype_bit(DType::Float32) : e.param_dtypes;
    out.state_dtypes = e.state_dtypes;
    out.flags = e.flags;
    if ((out.flags & abi::kOptimizerNeedsClosure) != 0 &&
        (out.param_dtypes & (dtype_bit(DType::BFloat16) | dtype_bit(DType::Float16))) != 0) {
      throw Refused{"optimizer '" + std::string(e.name) +
                    "' steps with a closure and declares bfloat16 or float16 parameters, which the core steps through "
                    "float32 copies that a closure's gradients would not reach"};
    }
  }
};

/// Learning-rate schedulers, with the core's "sequential" and "chained" built in.
struct SchedulerKind : detail::KindBase<SchedulerDescriptor, abi::SchedulerEntry, Scheduler> {
  static constexpr const char* kWord = "scheduler";
  static constexpr std::uint32_t kMinEntrySize = abi::kMinSchedulerEntrySize;
  static detail::EntryTable table(const abi::PluginDescriptor& d) {
    return {d.schedulers, d.scheduler_count, d.scheduler_entry_size};
  }
  static void check(const Entry& e, const std::string& owner) {
    if ((e.flags & ~abi::kSchedulerNeedsMetric) != 0) throw Refused{owner + " has unknown flags"};
  }
  static void describe(const Entry& e, Descriptor& out) { out.needs_metric = (e.flags & abi::kSchedulerNeedsMetric) != 0; }
  static const std::vector<detail::Builtin<Descriptor>>& builtins() {
    static const std::vector<detail::Builtin<Descriptor>> core = [] {
      SchedulerDescriptor d;
      d.name = kSequentialScheduler;
      d.description = "Runs schedulers one after another, switching at milestones (a config's 'schedulers' list)";
      d.plugin_name = "optreg";
      d.plugin_version = OPTREG_VERSION;
      d.source = "built in";
      d.schema = sequential_schema();
      SchedulerDescriptor c = d;
      c.name = kChainedScheduler;
      c.description = "Steps several schedulers at every step, their factors multiplied (a config's 'schedulers' list)";
      c.schema = chained_schema();
      return std::vector<detail::Builtin<Descriptor>>{
          {d, "the core's sequencing scheduler",
           "composes other schedulers: make it with make_sequential() or a config's 'schedulers' list"},
          {c, "the core's chaining scheduler",
           "composes other schedulers: make it with make_chained() or a config's 'schedulers' list"}};
    }();
    return core;
  }
};

}  // namespace

/// One catalogue per plugin kind. A plugin's entries of every kind are read and checked before
/// any is registered, so a refused plugin leaves no name behind.
struct Registry::Kinds {
  std::tuple<detail::Catalogue<OptimizerKind>, detail::Catalogue<SchedulerKind>> all;

  template <typename Kind>
  detail::Catalogue<Kind>& of() {
    return std::get<detail::Catalogue<Kind>>(all);
  }
  template <typename Kind>
  const detail::Catalogue<Kind>& of() const {
    return std::get<detail::Catalogue<Kind>>(all);
  }

  /// A new object of `name`, made by its factory under no lock (the factory is plugin code,
  /// and loading need not wait for it), and the descriptor it was made from.
  template <typename Kind>
  std::pair<typename detail::Catalogue<Kind>::Ptr, typename Kind::Descriptor> make(std::shared_mutex& mutex,
                                                                                   const std::string& name) const {
    typename detail::Catalogue<Kind>::Slot slot;
    {
      std::shared_lock lock(mutex);
      slot = of<Kind>().slot_for(name);
    }
    auto object = detail::Catalogue<Kind>::make(slot);
    return {std::move(object), std::move(slot.descriptor)};
  }

  /// Registers every entry of `d` (throws Refused, registering nothing); returns the names,
  /// kind by kind, each kind in declared order.
  std::vector<std::string> add(const abi::PluginDescriptor& d, const detail::Provenance& from) {
    std::apply([&](const auto&... c) { (c.check_table(d), ...); }, all);
    const std::uint32_t total = std::apply([&](const auto&... c) { return (0U + ... + c.count(d)); }, all);
    if (total == 0) throw Refused{"it declares no optimizer and no scheduler"};
    auto fresh = std::apply([&](const auto&... c) { return std::make_tuple(c.read(d, from)...); }, all);
    return commit(fresh, std::make_index_sequence<std::tuple_size_v<decltype(all)>>{});
  }

 private:
  template <typename Fresh, std::size_t... I>
  std::vector<std::string> commit(Fresh& fresh, std::index_sequence<I...>) {
    std::vector<std::string> names;
    const auto append = [&](std::vector<std::string> more) { names.insert(names.end(), more.begin(), more.end()); };
    (append(std::get<I>(all).add(std::move(std::get<I>(fresh)))), ...);
    return names;
  }
};

Registry::Registry() : kinds_(std::make_unique<Kinds>()) {}
Registry::~Registry() = default;

std::vector<std::string> Registry::load_file(const std::string& path) {
  LoadResult r = try_load_file(path);
  if (!r.ok) throw PluginError(r.refusal.path, r.refusal.reason, r.refusal.versions);
  return r.names;
}

LoadResult Registry::try_load_file(const std::string& path) {
  LoadResult result;
  std::error_code ec;
  const fs::path canonical = fs::canonical(fs::absolute(path, ec), ec);
  const std::string shown = ec ? path : canonical.string();
  std::unique_lock lock(mutex_);
  const auto refuse = [&](const std::string& reason, Versions versions = {}) {
    // The reason quotes the plugin's own text and the loader's: inert, as an Error's message is.
    result.error = escape_message("plugin " + shown + ": " + reason);
    result.refusal = Refusal{shown, escape_message(reason), versions};
    refused_.push_back(result.refusal);
    return result;
  };
  if (ec) return refuse(detail::FileRefused{ec.value(), 0}.describe("it"));
  // Checked on a descriptor opened without blocking: the dynamic loader's own open of a FIFO
  // would wait for a writer forever. The descriptor stays open until the library is loaded.
  detail::UniqueFd file;
  try {
    file = detail::open_regular_file(canonical.string());
  } catch (const detail::FileRefused& r) {
    return refuse(r.describe("it"));
  }
  for (const auto& p : plugins_) {
    if (p->path == shown) {
      result.ok = true;
      result.names = p->names;
      return result;
    }
  }

  auto plugin = std::make_shared<Plugin>();
  plugin->path = shown;
  try {
    // An absolute path only: Boost.DLL resolves a relative one against the current directory.
    plugin->library.load(canonical, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    return refuse("the dynamic loader refused it: " + loader_message(e.what()));
  }
  if (!plugin->library.has(abi::kEntryName)) {
    return refuse(std::string("it exports no '") + abi::kEntryName +
                  "' entry; it is not an optreg plugin (build it with OPTREG_REGISTER_OPTIMIZER or OPTREG_REGISTER_SCHEDULERS)");
  }

  try {
    const abi::PluginDescriptor d = detail::read_descriptor(plugin->library.get<const void*>(abi::kEntryName));
    plugin->name = d.plugin_name;
    plugin->version = d.version;
    plugin->names = kinds_->add(d, detail::Provenance{plugin->name, plugin->version, shown, plugin});
  } catch (const Refused& r) {
    return refuse(r.reason, r.versions);
  }
  plugins_.push_back(plugin);
  result.ok = true;
  result.names = plugin->names;
  return result;
}

std::vector<std::string> Registry::plugin_files(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".so") files.push_back(p.string());
  }
  if (ec) throw PluginError("cannot read plugin folder " + dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Refusal> Registry::load_directory(const std::string& dir) {
  std::vector<Refusal> out;
  for (const auto& f : plugin_files(dir)) {
    LoadResult r = try_load_file(f);
    if (!r.ok) out.push_back(r.refusal);
  }
  return out;
}

std::vector<Refusal> Registry::load_default() {
  std::vector<Refusal> out;
  for (const auto& dir : default_search_path()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    auto r = load_directory(dir);
    out.insert(out.end(), r.begin(), r.end());
  }
  return out;
}

std::string Registry::installed_plugin_dir() {
  // The core library's own folder, so that the build tree and any install prefix both work.
  const fs::path lib = boost::dll::this_line_location();
  return (lib.parent_path() / "optreg" / "plugins").string();
}

std::vector<std::string> Registry::default_search_path() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("OPTREG_PLUGIN_PATH")) {
    std::string s = env;
    std::size_t start = 0;
    while (start <= s.size()) {
      const std::size_t colon = std::min(s.find(':', start), s.size());
      if (colon > start) out.push_back(s.substr(start, colon - start));
      start = colon + 1;
    }
  }
  out.push_back(installed_plugin_dir());
  return out;
}

std::vector<OptimizerDescriptor> Registry::list() const {
  std::shared_lock lock(mutex_);
  return kinds_->of<OptimizerKind>().list();
}

std::optional<OptimizerDescriptor> Registry::find(const std::string& name) const {
  std::shared_lock lock(mutex_);
  return kinds_->of<OptimizerKind>().find(name);
}

std::vector<SchedulerDescriptor> Registry::list_schedulers() const {
  std::shared_lock lock(mutex_);
  return kinds_->of<SchedulerKind>().list();
}

std::optional<SchedulerDescriptor> Registry::find_scheduler(const std::string& name) const {
  std::shared_lock lock(mutex_);
  return kinds_->of<SchedulerKind>().find(name);
}

std::vector<Refusal> Registry::refused() const {
  std::shared_lock lock(mutex_);
  return refused_;
}

OptimizerPtr Registry::create(const std::string& name, std::vector<Parameter> params, const Options& options) const {
  std::vector<ParamGroupSpec> groups(1);
  groups[0].params = std::move(params);
  return create(name, std::move(groups), options);
}

OptimizerPtr Registry::create(const std::string& name, std::vector<ParamGroupSpec> groups,
                              const Options& options) const {
  // A group that names another optimizer makes a composite; one that names this one is its own.
  std::vector<std::string> others;
  for (auto& g : groups) {
    const auto it = g.options.find("optimizer");
    if (it == g.options.end()) continue;
    if (it->second.type() != ValueType::String) {
      throw OptionError(OptionFacts{"optimizer '" + name + "'", "optimizer", it->second.to_short_string(), OptionPart::Value,
                                    static_cast<std::int64_t>(&g - groups.data()),
                                    "option 'optimizer' of a param group names the optimizer that steps it: a string, "
                                    "not " + it->second.to_short_string()});
    }
    const std::string& part = it->second.as_string();
    if (part != name && std::find(others.begin(), others.end(), part) == others.end()) others.push_back(part);
  }
  if (!others.empty()) {
    std::vector<OptimizerPtr> parts;
    parts.push_back(create(name, std::vector<ParamGroupSpec>{}, options));
    for (const auto& part : others) parts.push_back(create(part, std::vector<ParamGroupSpec>{}));
    OptimizerPtr composite = make_composite(std::move(parts));
    for (auto& g : groups) composite->add_param_group(std::move(g.params), g.options);
    return composite;
  }
  for (auto& g : groups) g.options.erase("optimizer");
  auto [opt, d] = kinds_->make<OptimizerKind>(mutex_, name);
  if ((d.flags & abi::kOptimizerWrapper) != 0 && !groups.empty()) {
    throw UsageError("optimizer '" + name + "' is a wrapper: it steps with an inner optimizer; make it with "
                     "Registry::create_wrapped() (a config: optimizer: {name: " + name + ", inner: {name: ...}})");
  }
  opt->setup(OptimizerInfo{name, d.plugin_version, d.schema, d.state, d.source, d.param_dtypes, d.state_dtypes, d.flags}, options, std::move(groups));
  return std::move(opt);
}

OptimizerPtr Registry::create_wrapped(const std::string& wrapper, const Options& wrapper_options,
                                      const std::string& inner, std::vector<ParamGroupSpec> groups,
                                      const Options& inner_options) const {
  OptimizerPtr wrapped = make_wrapped(create(wrapper, std::vector<ParamGroupSpec>{}, wrapper_options),
                                      create(inner, std::vector<ParamGroupSpec>{}, inner_options));
  for (auto& g : groups) wrapped->add_param_group(std::move(g.params), g.options);
  return wrapped;
}

std::vector<OptionError> Registry::validate_options(const std::string& name, const Options& options,
                                                   const std::vector<Options>& group_overrides) const {
  const auto [unbound, d] = kinds_->make<OptimizerKind>(mutex_, name);
  return unbound->check_options(OptimizerInfo{name, d.plugin_version, d.schema, d.state, d.source, d.param_dtypes, d.state_dtypes, d.flags}, options,
                                group_overrides);
}

SchedulerPtr Registry::create_scheduler(const std::string& name, Optimizer& optimizer, const Options& options) const {
  auto [s, d] = kinds_->make<SchedulerKind>(mutex_, name);
  s->setup(SchedulerInfo{name, d.plugin_version, d.schema, d.needs_metric, d.source}, optimizer, options);
  return std::move(s);
}

std::vector<OptionError> Registry::validate_scheduler_options(const std::string& name, const Options& options) const {
  const auto [unbound, d] = kinds_->make<SchedulerKind>(mutex_, name);
  return unbound->check_options(SchedulerInfo{name, d.plugin_version, d.schema, d.needs_metric, d.source}, options);
}

std::vector<std::string> optimizer_flag_names(std::uint32_t flags) {
  std::vector<std::string> out;
  if ((flags & abi::kOptimizerNeedsClosure) != 0) out.emplace_back("needs_closure");
  if ((flags & abi::kOptimizerEvalWeights) != 0) out.emplace_back("eval_weights");
  if ((flags & abi::kOptimizerMatricesOnly) != 0) out.emplace_back("matrices_only");
  if ((flags & abi::kOptimizerWrapper) != 0) out.emplace_back("wrapper");
  if ((flags & abi::kOptimizerWholeTensors) != 0) out.emplace_back("whole_tensors");
  return out;
}

}  // namespace optreg
