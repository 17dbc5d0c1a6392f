#include <optreg/registry.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <system_error>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/plugin_call.hpp>
#include <optreg/text.hpp>
#include <optreg/version.hpp>

#include <optreg/detail/files.hpp>

namespace optreg {

namespace fs = std::filesystem;

struct Registry::Plugin {
  std::string path;
  std::string name;
  std::string version;
  std::vector<std::string> optimizer_names;
  std::vector<std::string> scheduler_names;
  boost::dll::shared_library library;
};

struct Registry::Entry {
  OptimizerDescriptor descriptor;
  Optimizer* (*create)() = nullptr;
  std::shared_ptr<Plugin> plugin;
};

struct Registry::SchedulerSlot {
  SchedulerDescriptor descriptor;
  Scheduler* (*create)() = nullptr;
  std::shared_ptr<Plugin> plugin;
};

namespace {

/// Thrown inside this file for a refused plugin; carries only the reason (the caller adds the path).
struct Refused {
  std::string reason;
};

std::string text_or(const char* s, const char* fallback) { return s != nullptr ? s : fallback; }

/// The part of a Boost.DLL load error that the dynamic loader wrote, or the whole message.
std::string loader_message(const std::string& what) {
  const std::string key = "dlerror system message: ";
  const auto at = what.find(key);
  if (at == std::string::npos) return what;
  const auto end = what.rfind(')');
  const auto begin = at + key.size();
  return what.substr(begin, end == std::string::npos || end < begin ? std::string::npos : end - begin);
}

bool is_identifier(const char* s) {
  if (s == nullptr || *s == '\0' || !((*s >= 'a' && *s <= 'z') || *s == '_')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}

/// `owner` names what declares it: "optimizer 'adam'", "scheduler 'cosine'".
/// A hyperparameter name: an identifier, upper-case letters allowed (PyTorch's `T_max`).
bool is_option_name(const char* s) {
  if (s == nullptr || *s == '\0' || (*s >= '0' && *s <= '9')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}

Hyperparameter convert(const abi::HyperparamSpec& s, const std::string& owner) {
  const std::string where = owner + ", hyperparameter '" + text_or(s.name, "(null)") + "'";
  if (!is_option_name(s.name)) throw Refused{where + ": the name is not an identifier"};
  if (s.meaning == nullptr || *s.meaning == '\0') throw Refused{where + ": no meaning is given"};
  Hyperparameter h;
  h.name = s.name;
  h.meaning = s.meaning;
  h.range = Range{s.lo, s.hi, s.lo_open != 0, s.hi_open != 0};
  if (std::isnan(s.lo) || std::isnan(s.hi) || s.lo > s.hi) throw Refused{where + ": the allowed range is empty"};
  const auto need_in_range = [&](double v, const std::string& what) {
    if (!h.range.contains(v)) {
      throw Refused{where + ": the default " + what + " lies outside the declared range " + h.range.to_string()};
    }
  };
  switch (s.type) {
    case abi::HyperparamType::Bool:
      h.type = ValueType::Bool;
      if (s.default_int != 0 && s.default_int != 1) throw Refused{where + ": a bool default must be 0 or 1"};
      h.default_value = Value(s.default_int != 0);
      break;
    case abi::HyperparamType::Int:
      h.type = ValueType::Int;
      if (!h.range.contains_integer(s.default_int)) {
        throw Refused{where + ": the default " + std::to_string(s.default_int) + " lies outside the declared range " +
                      h.range.to_string(ValueType::Int)};
      }
      h.default_value = Value(s.default_int);
      break;
    case abi::HyperparamType::Float:
      h.type = ValueType::Float;
      need_in_range(s.default_float, Value(s.default_float).to_string());
      h.default_value = Value(s.default_float);
      break;
    case abi::HyperparamType::String: {
      h.type = ValueType::String;
      if (s.default_string == nullptr) throw Refused{where + ": a string hyperparameter needs a default"};
      if (s.choices != nullptr) {
        for (const char* const* c = s.choices; *c != nullptr; ++c) h.choices.emplace_back(*c);
        if (std::find(h.choices.begin(), h.choices.end(), s.default_string) == h.choices.end()) {
          throw Refused{where + ": the default \"" + s.default_string + "\" is not among its choices"};
        }
      }
      h.default_value = Value(std::string(s.default_string));
      break;
    }
    case abi::HyperparamType::FloatList: {
      h.type = ValueType::FloatList;
      h.list_size = s.list_size;
      if (s.default_list == nullptr && s.default_list_size != 0) throw Refused{where + ": the default list is null"};
      std::vector<double> l(s.default_list, s.default_list + s.default_list_size);
      if (s.list_size != 0 && l.size() != s.list_size) {
        throw Refused{where + ": the default has " + std::to_string(l.size()) + " elements, the schema requires " +
                      std::to_string(s.list_size)};
      }
      for (double v : l) need_in_range(v, Value(l).to_string());
      h.default_value = Value(std::move(l));
      break;
    }
    default:
      throw Refused{where + ": unknown type code " + std::to_string(static_cast<std::uint32_t>(s.type))};
  }
  return h;
}

/// Domain `i` of an entry whose state_domains is not null, as the plugin laid it out.
abi::StateDomainSpec domain_at(const abi::OptimizerEntry& e, std::uint32_t i) {
  abi::StateDomainSpec d{};
  std::memcpy(&d, reinterpret_cast<const char*>(e.state_domains) + static_cast<std::size_t>(i) * e.state_domain_size,
              sizeof d);
  return d;
}

/// A declared state domain, checked; empty for "any value". `where` names the entry.
std::optional<Range> convert_domain(const abi::StateDomainSpec& d, StateKind kind, const std::string& where) {
  if ((d.flags & ~abi::kDomainRange) != 0) throw Refused{where + ": its domain has unknown flags"};
  if ((d.flags & abi::kDomainRange) == 0) return std::nullopt;
  const Range r{d.lo, d.hi, d.lo_open != 0, d.hi_open != 0};
  const bool empty = std::isnan(r.lo) || std::isnan(r.hi) || r.lo > r.hi || (r.lo == r.hi && (r.lo_open || r.hi_open));
  if (empty) throw Refused{where + ": its domain " + r.to_string(kind == StateKind::Int ? ValueType::Int : ValueType::Float) + " is empty"};
  return r;
}

StateSchema convert_state(const abi::OptimizerEntry& e) {
  const std::string optimizer = e.name;
  if (e.state_count != 0 && e.state == nullptr) {
    throw Refused{"optimizer '" + optimizer + "' declares state entries but gives none"};
  }
  if (e.state_count != 0 && e.state_domains != nullptr && e.state_domain_size < abi::kMinStateDomainSize) {
    throw Refused{"optimizer '" + optimizer + "': its state domains are " + std::to_string(e.state_domain_size) +
                  " bytes, smaller than the " + std::to_string(abi::kMinStateDomainSize) + " bytes of ABI " +
                  std::to_string(OPTREG_ABI_MAJOR)};
  }
  StateSchema out;
  for (std::uint32_t i = 0; i < e.state_count; ++i) {
    const abi::StateSpec& s = e.state[i];
    const std::string where = "optimizer '" + optimizer + "', state entry '" + text_or(s.name, "(null)") + "'";
    if (!is_identifier(s.name)) throw Refused{where + ": the name is not a lower-case identifier"};
    if (s.meaning == nullptr || *s.meaning == '\0') throw Refused{where + ": no meaning is given"};
    StateEntry entry;
    entry.name = s.name;
    entry.meaning = s.meaning;
    switch (s.kind) {
      case abi::StateKind::Tensor: entry.kind = StateKind::Tensor; break;
      case abi::StateKind::Int: entry.kind = StateKind::Int; break;
      case abi::StateKind::Float: entry.kind = StateKind::Float; break;
      default: throw Refused{where + ": unknown kind code " + std::to_string(static_cast<std::uint32_t>(s.kind))};
    }
    if ((s.flags & ~(abi::kStateOptional | abi::kStateCustomShape)) != 0) throw Refused{where + ": unknown flags"};
    entry.optional = (s.flags & abi::kStateOptional) != 0;
    entry.custom_shape = (s.flags & abi::kStateCustomShape) != 0;
    if (entry.custom_shape && entry.kind != StateKind::Tensor) throw Refused{where + ": only a tensor can have a custom shape"};
    for (const auto& other : out) {
      if (other.name == entry.name) throw Refused{where + ": declared twice"};
    }
    if (e.state_domains != nullptr) entry.domain = convert_domain(domain_at(e, i), entry.kind, where);
    out.push_back(std::move(entry));
  }
  return out;
}

/// Reads and checks the descriptor, in the order that keeps the host safe: ABI major and size
/// from the first two fields, then the build tag, then the rest.
abi::PluginDescriptor read_descriptor(const void* raw) {
  if (raw == nullptr) throw Refused{std::string("the entry '") + abi::kEntryName + "' is a null pointer"};
  std::uint32_t head[2];
  std::memcpy(head, raw, sizeof head);
  if (head[0] != OPTREG_ABI_MAJOR) {
    throw Refused{"it was built for optreg plugin ABI " + std::to_string(head[0]) +
                  ", but this host supports ABI " + std::to_string(OPTREG_ABI_MAJOR) +
                  "; rebuild the plugin against this optreg"};
  }
  if (head[1] < abi::kMinDescriptorSize) {
    throw Refused{"its descriptor is " + std::to_string(head[1]) + " bytes, smaller than the " +
                  std::to_string(abi::kMinDescriptorSize) + " bytes of ABI " + std::to_string(OPTREG_ABI_MAJOR) +
                  "; the plugin is damaged or was not built with the optreg SDK"};
  }
  // Fields appended by newer plugins are ignored; fields an older plugin lacks stay zero.
  abi::PluginDescriptor d{};
  std::memcpy(&d, raw, std::min<std::size_t>(head[1], sizeof d));
  const std::string host_tag = OPTREG_BUILD_TAG;
  if (d.build_tag == nullptr || host_tag != d.build_tag) {
    throw Refused{"it was built with \"" + text_or(d.build_tag, "(no build tag)") + "\", but this host was built with \"" +
                  host_tag + "\"; rebuild the plugin with the same standard library and Boost"};
  }
  if (!is_identifier(d.plugin_name)) throw Refused{"its plugin name is missing or not a lower-case identifier"};
  if (d.version == nullptr || *d.version == '\0') throw Refused{"it declares no version"};
  if (d.optimizer_count != 0 && d.optimizers == nullptr) throw Refused{"it declares optimizers but gives none"};
  if (d.scheduler_count != 0 && d.schedulers == nullptr) throw Refused{"it declares schedulers but gives none"};
  if (d.optimizer_count == 0 && d.scheduler_count == 0) throw Refused{"it declares no optimizer and no scheduler"};
  if (d.scheduler_count != 0 && d.scheduler_entry_size < abi::kMinSchedulerEntrySize) {
    throw Refused{"its scheduler entries are " + std::to_string(d.scheduler_entry_size) + " bytes, smaller than the " +
                  std::to_string(abi::kMinSchedulerEntrySize) + " bytes of ABI " + std::to_string(OPTREG_ABI_MAJOR)};
  }
  if (d.optimizer_count != 0 && d.optimizer_entry_size < abi::kMinOptimizerEntrySize) {
    throw Refused{"its optimizer entries are " + std::to_string(d.optimizer_entry_size) + " bytes, smaller than the " +
                  std::to_string(abi::kMinOptimizerEntrySize) + " bytes of ABI " + std::to_string(OPTREG_ABI_MAJOR)};
  }
  return d;
}

abi::OptimizerEntry entry_at(const abi::PluginDescriptor& d, std::uint32_t i) {
  // Only the bytes the plugin provides: fields appended after its entry size stay zero.
  abi::OptimizerEntry e{};
  std::memcpy(&e, reinterpret_cast<const char*>(d.optimizers) + static_cast<std::size_t>(i) * d.optimizer_entry_size,
              std::min<std::size_t>(d.optimizer_entry_size, sizeof e));
  return e;
}

abi::SchedulerEntry scheduler_at(const abi::PluginDescriptor& d, std::uint32_t i) {
  abi::SchedulerEntry e{};
  std::memcpy(&e, reinterpret_cast<const char*>(d.schedulers) + static_cast<std::size_t>(i) * d.scheduler_entry_size,
              sizeof e);
  return e;
}

/// The hyperparameters of an entry, checked; `owner` names the entry in messages.
std::vector<Hyperparameter> convert_all(const abi::HyperparamSpec* specs, std::uint32_t count, const std::string& owner) {
  if (count != 0 && specs == nullptr) throw Refused{owner + " declares hyperparameters but gives none"};
  std::vector<Hyperparameter> hs;
  for (std::uint32_t k = 0; k < count; ++k) {
    hs.push_back(convert(specs[k], owner));
    for (std::size_t j = 0; j + 1 < hs.size(); ++j) {
      if (hs[j].name == hs.back().name) throw Refused{owner + " declares hyperparameter '" + hs[j].name + "' twice"};
    }
  }
  return hs;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

Registry::Registry() = default;
Registry::~Registry() = default;

std::vector<std::string> Registry::load_file(const std::string& path) {
  LoadResult r = try_load_file(path);
  if (!r.ok) throw PluginError(r.error);
  return r.names;
}

LoadResult Registry::try_load_file(const std::string& path) {
  LoadResult result;
  std::error_code ec;
  const fs::path canonical = fs::canonical(fs::absolute(path, ec), ec);
  const std::string shown = ec ? path : canonical.string();
  std::unique_lock lock(mutex_);
  const auto refuse = [&](const std::string& reason) {
    // The reason quotes the plugin's own text and the loader's: inert, as an Error's message is.
    result.error = escape_message("plugin " + shown + ": " + reason);
    result.refusal = Refusal{shown, escape_message(reason)};
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
      result.names = all_names(*p);
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

  std::vector<Entry> fresh;
  std::vector<SchedulerSlot> fresh_schedulers;
  try {
    const abi::PluginDescriptor d = read_descriptor(plugin->library.get<const void*>(abi::kEntryName));
    plugin->name = d.plugin_name;
    plugin->version = d.version;
    for (std::uint32_t i = 0; i < d.optimizer_count; ++i) {
      const abi::OptimizerEntry e = entry_at(d, i);
      if (!is_identifier(e.name)) throw Refused{"optimizer " + std::to_string(i) + " has no valid name"};
      if (e.create == nullptr) throw Refused{std::string("optimizer '") + e.name + "' has no factory"};
      std::vector<Hyperparameter> hs = convert_all(e.hyperparams, e.hyperparam_count, std::string("optimizer '") + e.name + "'");
      Entry entry;
      entry.descriptor.name = e.name;
      entry.descriptor.description = text_or(e.description, "");
      entry.descriptor.plugin_name = plugin->name;
      entry.descriptor.plugin_version = plugin->version;
      entry.descriptor.source = shown;
      entry.descriptor.schema = std::make_shared<const Schema>(std::move(hs));
      entry.descriptor.state = std::make_shared<const StateSchema>(convert_state(e));
      entry.create = e.create;
      entry.plugin = plugin;
      for (const auto& other : fresh) {
        if (other.descriptor.name == entry.descriptor.name) {
          throw Refused{"it declares optimizer '" + entry.descriptor.name + "' twice"};
        }
      }
      for (const auto& other : entries_) {
        if (other.descriptor.name == entry.descriptor.name) {
          throw Refused{"optimizer '" + entry.descriptor.name + "' is already registered by " +
                        other.descriptor.source + "; two plugins cannot share a name"};
        }
      }
      fresh.push_back(std::move(entry));
    }
    for (std::uint32_t i = 0; i < d.scheduler_count; ++i) {
      const abi::SchedulerEntry e = scheduler_at(d, i);
      if (!is_identifier(e.name)) throw Refused{"scheduler " + std::to_string(i) + " has no valid name"};
      const std::string owner = std::string("scheduler '") + e.name + "'";
      if (e.create == nullptr) throw Refused{owner + " has no factory"};
      if ((e.flags & ~abi::kSchedulerNeedsMetric) != 0) throw Refused{owner + " has unknown flags"};
      if (std::string(e.name) == kSequentialScheduler) {
        throw Refused{owner + ": the name belongs to the core's sequencing scheduler"};
      }
      SchedulerSlot slot;
      slot.descriptor.name = e.name;
      slot.descriptor.description = text_or(e.description, "");
      slot.descriptor.plugin_name = plugin->name;
      slot.descriptor.plugin_version = plugin->version;
      slot.descriptor.source = shown;
      slot.descriptor.schema = std::make_shared<const Schema>(convert_all(e.hyperparams, e.hyperparam_count, owner));
      slot.descriptor.needs_metric = (e.flags & abi::kSchedulerNeedsMetric) != 0;
      slot.create = e.create;
      slot.plugin = plugin;
      for (const auto& other : fresh_schedulers) {
        if (other.descriptor.name == slot.descriptor.name) throw Refused{"it declares " + owner + " twice"};
      }
      for (const auto& other : schedulers_) {
        if (other.descriptor.name == slot.descriptor.name) {
          throw Refused{owner + " is already registered by " + other.descriptor.source + "; two plugins cannot share a name"};
        }
      }
      fresh_schedulers.push_back(std::move(slot));
    }
  } catch (const Refused& r) {
    return refuse(r.reason);
  }

  for (auto& e : fresh_schedulers) {
    plugin->scheduler_names.push_back(e.descriptor.name);
    schedulers_.push_back(std::move(e));
  }
  std::sort(schedulers_.begin(), schedulers_.end(),
            [](const SchedulerSlot& a, const SchedulerSlot& b) { return a.descriptor.name < b.descriptor.name; });

  for (auto& e : fresh) {
    plugin->optimizer_names.push_back(e.descriptor.name);
    entries_.push_back(std::move(e));
  }
  std::sort(entries_.begin(), entries_.end(),
            [](const Entry& a, const Entry& b) { return a.descriptor.name < b.descriptor.name; });
  plugins_.push_back(plugin);
  result.ok = true;
  result.names = all_names(*plugin);
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
  std::vector<OptimizerDescriptor> out;
  for (const auto& e : entries_) out.push_back(e.descriptor);
  return out;
}

std::optional<OptimizerDescriptor> Registry::find(const std::string& name) const {
  std::shared_lock lock(mutex_);
  for (const auto& e : entries_) {
    if (e.descriptor.name == name) return e.descriptor;
  }
  return std::nullopt;
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
  Entry entry;
  {
    std::shared_lock lock(mutex_);
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [&](const Entry& e) { return e.descriptor.name == name; });
    if (it == entries_.end()) {
      std::vector<std::string> known;
      for (const auto& e : entries_) known.push_back(e.descriptor.name);
      std::string msg = "no optimizer named '" + name + "' is registered";
      const auto near = closest_names(name, known);
      if (!near.empty()) msg += " (did you mean '" + near.front() + "'?)";
      msg += known.empty() ? "; no plugin is loaded" : "; registered: " + join(known);
      throw PluginError(msg);
    }
    entry = *it;
  }
  const std::string& source = entry.descriptor.source;
  Optimizer* raw = call_plugin("optimizer", name, source, "the factory", [&] { return entry.create(); });
  if (raw == nullptr) throw PluginError(plugin_object("optimizer", name, source) + ": the factory returned no object");
  OptimizerPtr opt(raw, OptimizerDeleter{entry.plugin});
  opt->setup(OptimizerInfo{name, entry.descriptor.plugin_version, entry.descriptor.schema, entry.descriptor.state, source},
             options, std::move(groups));
  return opt;
}

}  // namespace optreg

namespace optreg {

std::vector<std::string> Registry::all_names(const Plugin& p) {
  std::vector<std::string> out = p.optimizer_names;
  out.insert(out.end(), p.scheduler_names.begin(), p.scheduler_names.end());
  return out;
}

namespace {

SchedulerDescriptor sequential_descriptor() {
  SchedulerDescriptor d;
  d.name = kSequentialScheduler;
  d.description = "Runs schedulers one after another, switching at milestones (a config's 'schedulers' list)";
  d.plugin_name = "optreg";
  d.plugin_version = OPTREG_VERSION;
  d.source = "built in";
  d.schema = sequential_schema();
  return d;
}

}  // namespace

std::vector<SchedulerDescriptor> Registry::list_schedulers() const {
  std::shared_lock lock(mutex_);
  std::vector<SchedulerDescriptor> out;
  for (const auto& e : schedulers_) out.push_back(e.descriptor);
  out.push_back(sequential_descriptor());
  std::sort(out.begin(), out.end(), [](const SchedulerDescriptor& a, const SchedulerDescriptor& b) { return a.name < b.name; });
  return out;
}

std::optional<SchedulerDescriptor> Registry::find_scheduler(const std::string& name) const {
  if (name == kSequentialScheduler) return sequential_descriptor();
  std::shared_lock lock(mutex_);
  for (const auto& e : schedulers_) {
    if (e.descriptor.name == name) return e.descriptor;
  }
  return std::nullopt;
}

SchedulerPtr Registry::create_scheduler(const std::string& name, Optimizer& optimizer, const Options& options) const {
  if (name == kSequentialScheduler) {
    throw PluginError(std::string("scheduler '") + kSequentialScheduler +
                      "' composes other schedulers: make it with make_sequential() or a config's 'schedulers' list");
  }
  SchedulerSlot slot;
  {
    std::shared_lock lock(mutex_);
    const auto it = std::find_if(schedulers_.begin(), schedulers_.end(),
                                 [&](const SchedulerSlot& e) { return e.descriptor.name == name; });
    if (it == schedulers_.end()) {
      std::vector<std::string> known;
      for (const auto& e : schedulers_) known.push_back(e.descriptor.name);
      known.push_back(kSequentialScheduler);
      std::string msg = "no scheduler named '" + name + "' is registered";
      const auto near = closest_names(name, known);
      if (!near.empty()) msg += " (did you mean '" + near.front() + "'?)";
      msg += "; registered: " + join(known);
      throw PluginError(msg);
    }
    slot = *it;
  }
  const std::string& source = slot.descriptor.source;
  Scheduler* raw = call_plugin("scheduler", name, source, "the factory", [&] { return slot.create(); });
  if (raw == nullptr) throw PluginError(plugin_object("scheduler", name, source) + ": the factory returned no object");
  SchedulerPtr s(raw, SchedulerDeleter{slot.plugin});
  s->setup(
      SchedulerInfo{name, slot.descriptor.plugin_version, slot.descriptor.schema, slot.descriptor.needs_metric, source},
      optimizer, options);
  return s;
}

}  // namespace optreg
