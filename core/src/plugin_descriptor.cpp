// Reading a plugin's descriptor: the checks that refuse a plugin (see plugin_descriptor.hpp).
#include "plugin_descriptor.hpp"

#include <cmath>
#include <optional>

namespace optreg::detail {

bool is_identifier(const char* s) {
  if (s == nullptr || *s == '\0' || !((*s >= 'a' && *s <= 'z') || *s == '_')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}

namespace {

/// A hyperparameter name: an identifier, upper-case letters allowed (PyTorch's `T_max`).
bool is_option_name(const char* s) {
  if (s == nullptr || *s == '\0' || (*s >= '0' && *s <= '9')) return false;
  for (; *s != '\0'; ++s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  }
  return true;
}

/// One hyperparameter, checked; `owner` names what declares it: "optimizer 'adam'".
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

/// A declared state domain, checked; empty for "any value". `where` names the entry.
std::optional<Range> convert_domain(const abi::StateDomainSpec& d, StateKind kind, const std::string& where) {
  if ((d.flags & ~abi::kDomainRange) != 0) throw Refused{where + ": its domain has unknown flags"};
  if ((d.flags & abi::kDomainRange) == 0) return std::nullopt;
  const Range r{d.lo, d.hi, d.lo_open != 0, d.hi_open != 0};
  const bool empty = std::isnan(r.lo) || std::isnan(r.hi) || r.lo > r.hi || (r.lo == r.hi && (r.lo_open || r.hi_open));
  if (empty) throw Refused{where + ": its domain " + r.to_string(kind == StateKind::Int ? ValueType::Int : ValueType::Float) + " is empty"};
  return r;
}

}  // namespace

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
    if (e.state_domains != nullptr) {
      const auto domain = entry_at<abi::StateDomainSpec>(e.state_domains, e.state_domain_size, i);
      entry.domain = convert_domain(domain, entry.kind, where);
    }
    out.push_back(std::move(entry));
  }
  return out;
}

abi::PluginDescriptor read_descriptor(const void* raw) {
  if (raw == nullptr) throw Refused{std::string("the entry '") + abi::kEntryName + "' is a null pointer"};
  std::uint32_t head[2];
  std::memcpy(head, raw, sizeof head);
  if (head[0] != OPTREG_ABI_MAJOR) {
    throw Refused{"it was built for optreg plugin ABI " + std::to_string(head[0]) +
                      ", but this host supports ABI " + std::to_string(OPTREG_ABI_MAJOR) +
                      "; rebuild the plugin against this optreg (find_package(optreg) and optreg_add_plugin(); "
                      "docs/plugin-guide.md)",
                  Versions{head[0], OPTREG_ABI_MAJOR}};
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
  return d;
}

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

}  // namespace optreg::detail
