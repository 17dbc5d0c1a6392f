#pragma once
/// \file
/// A config file as a read-only tree of maps, lists and scalars, each with its 1-based line and
/// column: how a host reads sections of its own beside the optimizer's (the training suite's
/// `problem:` and `train:`), with the rules and messages of the optimizer's sections.
///
///   const optreg::ConfigNode root = optreg::load_config_document("run.yaml");
///   for (const optreg::ConfigEntry& e : root.entries("the config")) {
///     if (e.key.text() == "seed") seed = e.value.to_value("seed").as_int();
///   }
///   optreg::OptimizerConfig opt = optreg::parse_config_sections(root, dir, {"seed"});  // config.hpp
///
/// Contract:
/// - The text is parsed once, with every check a config gets (docs/config.md): one YAML
///   document; no tags but the core ones, and !!int, !!float, !!bool, !!null only on scalars of
///   their form; maps and lists nested at most 100 deep. load_config_document() reads only a
///   regular file of at most kMaxConfigFileBytes, without waiting on a FIFO or a device.
/// - Every error is a ConfigError whose message begins with "SOURCE:LINE:COLUMN: " (1-based).
/// - Duplicate keys are kept as written and refused by entries() when their map is read, so
///   that a host meets the errors of its config in the order it reads the sections.
/// - An alias (`*name`) is the node its anchor names, position included: nothing is copied, so
///   aliases nested in aliases cost no memory.
/// - A ConfigNode is a small handle that keeps its document alive; documents are immutable and
///   may be read from several threads at once.

#include <optreg/export.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <optreg/value.hpp>

namespace optreg {

/// A 1-based position in a config file.
struct OPTREG_API ConfigMark {
  int line = 1;
  int column = 1;
};

/// The largest config file read (optimizer configs, run configs, parameter lists): 1 MiB.
inline constexpr std::uint64_t kMaxConfigFileBytes = std::uint64_t{1} << 20;

namespace detail {
struct ConfigDocumentData;
}

struct ConfigEntry;

/// A node of a config document: a map, a list, a scalar, or nothing (an empty value, `~`,
/// `null`, an empty document).
class OPTREG_API ConfigNode {
 public:
  enum class Kind { Null, Scalar, List, Map };

  /// Nothing, at line 1, column 1 of an empty document named "".
  ConfigNode();

  Kind kind() const noexcept;
  bool is_null() const noexcept { return kind() == Kind::Null; }
  bool is_scalar() const noexcept { return kind() == Kind::Scalar; }
  bool is_list() const noexcept { return kind() == Kind::List; }
  bool is_map() const noexcept { return kind() == Kind::Map; }

  /// Where the node begins. A value left empty (`key:` at the end of a line) is placed where
  /// the next token begins, so messages about a missing value point at its key instead.
  ConfigMark mark() const noexcept;
  /// The document's name in messages: its path, or the name given to parse_config_document().
  const std::string& source() const noexcept;
  /// A scalar's text as written, without quotes; "" for the other kinds.
  const std::string& text() const noexcept;
  /// Whether a scalar is a string whatever it looks like: quoted, or tagged !!str.
  bool is_string() const noexcept;
  /// The kind as messages name it: "a map", "an empty map", "a list", "an empty list",
  /// "a scalar" or "nothing".
  const char* kind_name() const noexcept;

  /// The number of elements of a list or of entries of a map (duplicates included); 0 otherwise.
  std::size_t size() const noexcept;
  /// The elements of a list, in order; none for the other kinds.
  std::vector<ConfigNode> items() const;
  /// The entries of a map in the order written; none for the other kinds. `what` names the map
  /// in messages ("section 'train'"): ConfigError at a key that is not a scalar ("a key of WHAT
  /// must be a name, not a list") or that repeats an earlier one ("duplicate key 'K' in WHAT
  /// (first at line L, column C)").
  std::vector<ConfigEntry> entries(const std::string& what) const;
  /// The value of the first entry of a map whose key is `key`; nullopt when there is none.
  std::optional<ConfigNode> find(const std::string& key) const;

  /// The node as the value of the option `name`: a plain scalar as YAML 1.2's core schema
  /// types it (bool, decimal integer, float, `.inf`, `.nan`; anything else a string), a quoted
  /// or !!str scalar as a string, !!int, !!float, !!bool as their type, a list of numbers as a
  /// list of floats. ConfigError placed at the node: "option 'NAME' has no value", "... must be
  /// a value, not a map", "... must be a list of numbers", a number too large or too small.
  Value to_value(const std::string& name) const;

  /// Throws ConfigError "SOURCE:LINE:COLUMN: WHAT" placed at this node.
  [[noreturn]] void fail(const std::string& what) const;

 private:
  friend struct detail::ConfigDocumentData;
  ConfigNode(std::shared_ptr<const detail::ConfigDocumentData> document, std::uint32_t index) noexcept;

  std::shared_ptr<const detail::ConfigDocumentData> document_;
  std::uint32_t index_ = 0;
};

/// A key and its value, in a map.
struct OPTREG_API ConfigEntry {
  ConfigNode key;
  ConfigNode value;
};

/// Parses YAML text as a config document; `source` names it in messages. Throws ConfigError.
OPTREG_API ConfigNode parse_config_document(const std::string& text, const std::string& source = "<string>");

/// Reads and parses a config file. Only a regular file of at most kMaxConfigFileBytes is read;
/// `what` names it in messages ("PATH: the config file is a FIFO (named pipe), not a regular
/// file"). Throws ConfigError.
OPTREG_API ConfigNode load_config_document(const std::string& path, const std::string& what = "config file");

/// Throws ConfigError "SOURCE:LINE:COLUMN: WHAT": for what a host finds wrong at a place it
/// kept (ConfigNode::fail() places it at a node).
[[noreturn]] OPTREG_API void throw_config_error(const std::string& source, const ConfigMark& at, const std::string& what);

/// The value of `entry`, an option of `where` ("problem 'mlp'"), checked against `schema`
/// (Schema::check()). Throws ConfigError: at the key for a missing value or an unknown name,
/// at the value for a value the schema refuses.
OPTREG_API Value checked_option(const Schema& schema, const ConfigEntry& entry, const std::string& where);

}  // namespace optreg
