#pragma once
/// \file
/// Catalogue<Kind>: the registry's objects of one plugin kind (optimizers, schedulers, ...).
/// Every kind is checked, registered, found, listed and made the same way; a Kind says only
/// what differs (see "Adding a plugin kind" in docs/plugin-abi.md). Private to the core: the
/// Registry holds one catalogue per kind and serialises access to them with its mutex.
///
/// A Kind, derived from KindBase, provides:
/// - `Descriptor` (the public descriptor: name, description, plugin_name, plugin_version,
///   source, schema, and fields of its own), `Entry` (its ABI entry: name, description,
///   hyperparams, hyperparam_count, create) and `Object` (the base class the factory makes);
/// - `kWord` ("optimizer"), the kind in messages, and `kMinEntrySize`, the smallest entry the
///   host accepts;
/// - `table(d)`: where the plugin descriptor `d` keeps the kind's entries;
/// - `check(e, owner)`: checks of its own before the hyperparameters (KindBase's: none);
/// - `describe(e, descriptor)`: fills the fields of its own, checking them;
/// - `builtins()`: the objects the core provides under names of the kind (KindBase's: none).

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/error.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/plugin_call.hpp>
#include <optreg/value.hpp>

#include "plugin_descriptor.hpp"

namespace optreg::detail {

/// Where a plugin descriptor keeps the entries of one kind.
struct EntryTable {
  const void* entries;
  std::uint32_t count;
  std::uint32_t entry_size;  // as the plugin was built
};

/// The plugin file that provides the objects being read.
struct Provenance {
  std::string plugin_name;
  std::string plugin_version;
  /// Absolute canonical path of the library.
  std::string source;
  /// Keeps the library loaded while anything it made lives.
  std::shared_ptr<const void> library;
};

/// An object the core provides under a name of the kind: listed and found like a plugin's,
/// refused to any plugin that declares its name, and not made by name.
template <typename Descriptor>
struct Builtin {
  Descriptor descriptor;
  /// Why a plugin cannot take the name: "the core's sequencing scheduler".
  std::string owner;
  /// Why create() refuses it, after "KIND 'NAME' ": "composes other schedulers: ...".
  std::string not_by_name;
};

/// What a kind inherits: its three types, no checks of its own before the hyperparameters,
/// and no built-in objects. A kind hides `check` or `builtins` to have them.
template <typename DescriptorType, typename EntryType, typename ObjectType>
struct KindBase {
  using Descriptor = DescriptorType;
  using Entry = EntryType;
  using Object = ObjectType;
  static void check(const Entry&, const std::string&) {}
  static const std::vector<Builtin<Descriptor>>& builtins() {
    static const std::vector<Builtin<Descriptor>> none;
    return none;
  }
};

template <typename Kind>
class Catalogue {
 public:
  using Descriptor = typename Kind::Descriptor;
  using Entry = typename Kind::Entry;
  using Object = typename Kind::Object;
  using Ptr = std::unique_ptr<Object, LibraryDeleter<Object>>;

  /// One registered object: what is shown of it, and how it is made.
  struct Slot {
    Descriptor descriptor;
    Object* (*create)() = nullptr;
    std::shared_ptr<const void> library;
  };

  /// Checks the kind's table in `d` before any entry of it is read.
  static void check_table(const abi::PluginDescriptor& d) {
    const EntryTable t = Kind::table(d);
    const std::string word = Kind::kWord;
    if (t.count != 0 && t.entries == nullptr) throw Refused{"it declares " + word + "s but gives none"};
    if (t.count != 0 && t.entry_size < Kind::kMinEntrySize) {
      throw Refused{"its " + word + " entries are " + std::to_string(t.entry_size) + " bytes, smaller than the " +
                    std::to_string(Kind::kMinEntrySize) + " bytes of ABI " + std::to_string(OPTREG_ABI_MAJOR)};
    }
  }

  /// How many entries of the kind `d` declares.
  static std::uint32_t count(const abi::PluginDescriptor& d) { return Kind::table(d).count; }

  /// Every entry of the kind in `d`, checked, in declared order; throws Refused for a bad entry,
  /// a name declared twice, a name already registered (the first file keeps it) or built in.
  std::vector<Slot> read(const abi::PluginDescriptor& d, const Provenance& from) const {
    const EntryTable t = Kind::table(d);
    std::vector<Slot> fresh;
    for (std::uint32_t i = 0; i < t.count; ++i) {
      Slot slot = read_entry(entry_at<Entry>(t.entries, t.entry_size, i), i, from);
      const std::string owner = owner_of(slot.descriptor.name);
      for (const auto& other : fresh) {
        if (other.descriptor.name == slot.descriptor.name) throw Refused{"it declares " + owner + " twice"};
      }
      if (const Slot* other = find_slot(slot.descriptor.name)) {
        throw Refused{owner + " is already registered by " + other->descriptor.source +
                      "; two plugins cannot share a name"};
      }
      fresh.push_back(std::move(slot));
    }
    return fresh;
  }

  /// Registers what read() returned; returns the names in declared order.
  std::vector<std::string> add(std::vector<Slot> fresh) {
    std::vector<std::string> names;
    for (auto& slot : fresh) {
      names.push_back(slot.descriptor.name);
      slots_.push_back(std::move(slot));
    }
    std::sort(slots_.begin(), slots_.end(),
              [](const Slot& a, const Slot& b) { return a.descriptor.name < b.descriptor.name; });
    return names;
  }

  /// Every object of the kind, built-in ones included, sorted by name.
  std::vector<Descriptor> list() const {
    std::vector<Descriptor> out;
    for (const auto& s : slots_) out.push_back(s.descriptor);
    for (const auto& b : Kind::builtins()) out.push_back(b.descriptor);
    std::sort(out.begin(), out.end(), [](const Descriptor& a, const Descriptor& b) { return a.name < b.name; });
    return out;
  }

  /// One object by name, built-in ones included.
  std::optional<Descriptor> find(const std::string& name) const {
    for (const auto& b : Kind::builtins()) {
      if (b.descriptor.name == name) return b.descriptor;
    }
    if (const Slot* s = find_slot(name)) return s->descriptor;
    return std::nullopt;
  }

  /// The slot that makes `name`; throws PluginError for a built-in name (with how to make it)
  /// or an unknown one (with the closest names, then every name: the plugins', then the core's).
  Slot slot_for(const std::string& name) const {
    for (const auto& b : Kind::builtins()) {
      if (b.descriptor.name == name) throw PluginError(owner_of(name) + " " + b.not_by_name);
    }
    if (const Slot* s = find_slot(name)) return *s;
    std::vector<std::string> known;
    for (const auto& s : slots_) known.push_back(s.descriptor.name);
    for (const auto& b : Kind::builtins()) known.push_back(b.descriptor.name);
    throw PluginError(unknown_name_message("no " + std::string(Kind::kWord) + " named '" + name + "' is registered",
                                           name, known));
  }

  /// A new object from `slot`'s factory, keeping its library loaded while it lives; throws
  /// PluginError for a factory that throws or returns nothing.
  static Ptr make(const Slot& slot) {
    const std::string& name = slot.descriptor.name;
    const std::string& source = slot.descriptor.source;
    Object* raw = call_plugin(Kind::kWord, name, source, "the factory", [&] { return slot.create(); });
    if (raw == nullptr) throw PluginError(source, plugin_object(Kind::kWord, name, source), "the factory returned no object");
    return Ptr(raw, LibraryDeleter<Object>{slot.library});
  }

 private:
  static std::string owner_of(const std::string& name) { return std::string(Kind::kWord) + " '" + name + "'"; }

  const Slot* find_slot(const std::string& name) const {
    const auto it = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.descriptor.name == name; });
    return it == slots_.end() ? nullptr : &*it;
  }

  static Slot read_entry(const Entry& e, std::uint32_t i, const Provenance& from) {
    if (!is_identifier(e.name)) throw Refused{std::string(Kind::kWord) + " " + std::to_string(i) + " has no valid name"};
    const std::string owner = owner_of(e.name);
    if (e.create == nullptr) throw Refused{owner + " has no factory"};
    Kind::check(e, owner);
    for (const auto& b : Kind::builtins()) {
      if (b.descriptor.name == e.name) throw Refused{owner + ": the name belongs to " + b.owner};
    }
    Slot slot;
    slot.descriptor.name = e.name;
    slot.descriptor.description = text_or(e.description, "");
    slot.descriptor.plugin_name = from.plugin_name;
    slot.descriptor.plugin_version = from.plugin_version;
    slot.descriptor.source = from.source;
    slot.descriptor.schema = std::make_shared<const Schema>(convert_all(e.hyperparams, e.hyperparam_count, owner));
    Kind::describe(e, slot.descriptor);
    slot.create = e.create;
    slot.library = from.library;
    return slot;
  }

  std::vector<Slot> slots_;  // sorted by name
};

}  // namespace optreg::detail
