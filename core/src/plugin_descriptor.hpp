#pragma once
/// \file
/// Reading a plugin's descriptor (<optreg/abi.hpp>): the checks that refuse a plugin before the
/// registry calls any of its functions. Private to the core.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <optreg/abi.hpp>
#include <optreg/optimizer.hpp>
#include <optreg/value.hpp>

namespace optreg::detail {

/// Thrown while a descriptor is read, for a refused plugin; carries the reason (the registry
/// adds the path) and, for an ABI this host does not support, the plugin's ABI and the host's.
struct Refused {
  std::string reason;
  Versions versions{};
};

/// `s`, or `fallback` for a null pointer.
inline std::string text_or(const char* s, const char* fallback) { return s != nullptr ? s : fallback; }

/// A lower-case identifier: the form of plugin, optimizer, scheduler and state entry names.
bool is_identifier(const char* s);

/// Entry `i` of a table of entries laid out `entry_size` bytes apart, as the plugin built it:
/// only the bytes the plugin provides are read, so fields appended after them stay zero.
template <typename Entry>
Entry entry_at(const void* table, std::uint32_t entry_size, std::uint32_t i) {
  Entry e{};
  std::memcpy(&e, static_cast<const char*>(table) + static_cast<std::size_t>(i) * entry_size,
              std::min<std::size_t>(entry_size, sizeof e));
  return e;
}

/// Reads and checks the descriptor's head, in the order that keeps the host safe: ABI major and
/// size from the first two fields, then the build tag, then the plugin's name and version. The
/// tables of each kind are checked by the kind's catalogue.
abi::PluginDescriptor read_descriptor(const void* raw);

/// The hyperparameters of an entry, checked; `owner` names the entry in messages
/// ("optimizer 'adam'").
std::vector<Hyperparameter> convert_all(const abi::HyperparamSpec* specs, std::uint32_t count, const std::string& owner);

/// The per-parameter state an optimizer entry declares, checked.
StateSchema convert_state(const abi::OptimizerEntry& e);

}  // namespace optreg::detail
