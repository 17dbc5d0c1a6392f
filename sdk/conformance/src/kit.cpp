// What every table of checks of the conformance kit shares (kit.hpp).
#include "kit.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include <optreg/error.hpp>

namespace optreg::kit {

namespace fs = std::filesystem;

std::string number(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

std::string number(float f) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(f));
  return buf;
}

std::string count(std::size_t n, const std::string& one, const std::string& many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool same_bits(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  if (a.type() == ValueType::Float) return same_bits(a.as_float(), b.as_float());
  if (a.type() == ValueType::FloatList) {
    const auto& x = a.as_float_list();
    const auto& y = b.as_float_list();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same_bits(x[i], y[i])) return false;
    }
    return true;
  }
  return a == b;
}

std::string diff(const Options& a, const Options& b, const std::string& what) {
  for (const auto& [name, value] : a) {
    const auto it = b.find(name);
    if (it == b.end()) return what + " '" + name + "' only in the first";
    if (!same_bits(value, it->second)) return what + " '" + name + "': " + value.to_string() + " vs " + it->second.to_string();
  }
  for (const auto& entry : b) {
    if (a.find(entry.first) == a.end()) return what + " '" + entry.first + "' only in the second";
  }
  return {};
}

std::optional<std::string> schema_fault(const Schema* schema, std::vector<std::string>& names, std::set<std::string>& seen) {
  if (schema == nullptr) return "the registry holds no hyperparameter schema for it";
  for (const Hyperparameter& h : schema->entries()) {
    if (h.name.empty()) return "a hyperparameter has no name";
    if (h.meaning.empty()) return "hyperparameter '" + h.name + "' has no meaning";
    if (!seen.insert(h.name).second) return "two hyperparameters are named '" + h.name + "'";
    names.push_back(h.name);
  }
  return std::nullopt;
}

Outcome check_schema_defaults(const Schema& schema) {
  std::size_t n = 0;
  for (const Hyperparameter& h : schema.entries()) {
    if (h.default_value.type() != h.type) {
      return failed("the default of '" + h.name + "' is " + h.default_value.to_string() + ", a " +
                    to_string(h.default_value.type()) + ", but it is declared a " + to_string(h.type));
    }
    try {
      (void)schema.check(h.name, h.default_value, "default");
    } catch (const OptionError& e) {
      return failed("the default of '" + h.name + "' is refused by its own schema: " + e.what());
    }
    ++n;
  }
  return passed(count(n, "default", "defaults") + " accepted by the schema");
}

TempDir::TempDir() {
  std::error_code ec;
  const fs::path parent = fs::temp_directory_path(ec);
  if (ec) {
    error_ = "no temporary folder: " + ec.message();
    return;
  }
  std::string made;
  lock_.reset(detail::create_locked_temporary_folder(parent.string(), "optreg-conformance-", made));
  if (lock_.get() < 0) {
    error_ = "cannot make a temporary folder in " + parent.string() + ": " + std::strerror(errno);
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::file(const std::string& name) const {
  if (path_.empty()) throw CheckpointError(error_);
  return (path_ / name).string();
}

RemoveOnExit::~RemoveOnExit() {
  std::error_code ec;
  fs::remove(path_, ec);
}

}  // namespace optreg::kit
