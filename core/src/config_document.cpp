// Config documents: YAML text read once by yaml-cpp's parser into a tree of our own. The one
// pass over the parser's events both refuses what a config may not hold (a second document,
// unknown tags, nesting beyond the limit) and builds the nodes, as yaml-cpp's own NodeBuilder
// would, so that positions and kinds are those yaml-cpp gives. This file is the only one that
// sees yaml-cpp.
#include <optreg/config_document.hpp>

#include <map>
#include <sstream>
#include <string_view>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include <optreg/detail/files.hpp>
#include <optreg/error.hpp>

#include "config_scalar.hpp"

namespace optreg {

namespace detail {

/// The nodes of one document, each child named by its index.
struct ConfigDocumentData {
  /// How a node was tagged: only the tags a config may carry reach a node.
  enum class Tag : std::uint8_t { Plain, Quoted, Str, Int, Float, Bool, Null, Collection };

  struct Node {
    ConfigNode::Kind kind = ConfigNode::Kind::Null;
    Tag tag = Tag::Plain;
    ConfigMark mark;
    std::string text;
    /// A list's elements; a map's keys and values, alternately.
    std::vector<std::uint32_t> children;
  };

  std::string source;
  std::vector<Node> nodes;
  std::uint32_t root = 0;

  static ConfigNode node(const std::shared_ptr<const ConfigDocumentData>& document, std::uint32_t index) noexcept {
    return ConfigNode(document, index);
  }
};

}  // namespace detail

namespace {

using detail::ConfigDocumentData;
using Tag = ConfigDocumentData::Tag;

ConfigMark mark_of(const YAML::Mark& m) {
  // yaml-cpp marks are 0-based, and -1 when unknown.
  return ConfigMark{m.line < 0 ? 1 : m.line + 1, m.column < 0 ? 1 : m.column + 1};
}

constexpr std::string_view kCoreTag = "tag:yaml.org,2002:";
constexpr char kSeqTag[] = "tag:yaml.org,2002:seq";
constexpr char kMapTag[] = "tag:yaml.org,2002:map";

/// "!!str" for a core tag, the tag itself otherwise.
std::string tag_name(const std::string& tag) {
  return tag.rfind(kCoreTag, 0) == 0 ? "!!" + tag.substr(kCoreTag.size()) : tag;
}

std::string too_deep() {
  return "maps and lists are nested more than " + std::to_string(detail::kMaxNesting) +
         " deep here; a config nests at most " + std::to_string(detail::kMaxNesting);
}

/// The one pass over a config's events: checks each event, then adds its node to the tree.
class DocumentBuilder final : public YAML::EventHandler {
 public:
  explicit DocumentBuilder(ConfigDocumentData& document) : doc_(document) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1) {
      fail(mark, "a second YAML document starts here; a config is one document (a second one would be ignored): "
                 "remove this '---' line and what follows it, or merge it into the first");
    }
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    add(ConfigNode::Kind::Null, Tag::Plain, mark, anchor);
  }
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t anchor) override {
    // The parser has refused an alias whose anchor it has not seen.
    attach(anchors_.at(anchor));
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    const Tag t = scalar_tag(mark, tag, value);
    const std::uint32_t index = add(ConfigNode::Kind::Scalar, t, mark, anchor);
    doc_.nodes[index].text = value;
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    if (tag != "?" && tag != "!" && tag != kSeqTag) unknown(mark, tag, "a list", "!!seq");
    open(ConfigNode::Kind::List, mark, anchor);
  }
  void OnSequenceEnd() override { open_.pop_back(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    if (tag != "?" && tag != "!" && tag != kMapTag) unknown(mark, tag, "a map", "!!map");
    open(ConfigNode::Kind::Map, mark, anchor);
  }
  void OnMapEnd() override { open_.pop_back(); }

  /// Whether the text held a node at all (a document of comments holds none).
  bool has_root() const noexcept { return has_root_; }

 private:
  /// The tag of a scalar, after checking that its form fits the tag.
  Tag scalar_tag(const YAML::Mark& mark, const std::string& tag, const std::string& value) {
    if (tag == "?") return Tag::Plain;
    if (tag == "!") return Tag::Quoted;
    if (tag == detail::kStrTag) return Tag::Str;
    const detail::ScalarForm form = detail::form_of(value);
    const auto refuse = [&](const char* what) {
      fail(mark, "'" + detail::shown(value) + "' is tagged " + tag_name(tag) + " but is not " + what);
    };
    using detail::ScalarForm;
    if (tag == detail::kIntTag) {
      if (form != ScalarForm::Int) refuse("an integer");
      return Tag::Int;
    }
    if (tag == detail::kFloatTag) {
      if (form != ScalarForm::Float && form != ScalarForm::Int) refuse("a number");
      return Tag::Float;
    }
    if (tag == detail::kBoolTag) {
      if (form != ScalarForm::Bool) refuse("true or false");
      return Tag::Bool;
    }
    if (tag == detail::kNullTag) {
      if (form != ScalarForm::Null) refuse("null");
      return Tag::Null;
    }
    unknown(mark, tag, "a scalar", "!!str, !!int, !!float, !!bool or !!null");
  }

  std::uint32_t add(ConfigNode::Kind kind, Tag tag, const YAML::Mark& mark, YAML::anchor_t anchor) {
    const auto index = static_cast<std::uint32_t>(doc_.nodes.size());
    ConfigDocumentData::Node node;
    node.kind = kind;
    node.tag = tag;
    node.mark = mark_of(mark);
    doc_.nodes.push_back(std::move(node));
    if (anchor != YAML::NullAnchor) anchors_[anchor] = index;
    attach(index);
    return index;
  }

  void open(ConfigNode::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (static_cast<int>(open_.size()) + 1 > detail::kMaxNesting) fail(mark, too_deep());
    open_.push_back(add(kind, Tag::Collection, mark, anchor));
  }

  /// Makes a node the next child of the collection being read, or the root. A collection's
  /// children come in the order they are written, whether they are read before or after it.
  void attach(std::uint32_t index) {
    if (open_.empty()) {
      if (!has_root_) doc_.root = index;
      has_root_ = true;
      return;
    }
    doc_.nodes[open_.back()].children.push_back(index);
  }

  [[noreturn]] void unknown(const YAML::Mark& mark, const std::string& tag, const char* node, const char* fits) {
    fail(mark, "the tag '" + tag_name(tag) + "' is not one a config takes on " + node + "; " + node + " takes " + fits +
                   ", or no tag");
  }

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) {
    throw_config_error(doc_.source, mark_of(mark), what);
  }

  ConfigDocumentData& doc_;
  std::map<YAML::anchor_t, std::uint32_t> anchors_;
  std::vector<std::uint32_t> open_;
  int documents_ = 0;
  bool has_root_ = false;
};

const ConfigDocumentData::Node& node_of(const ConfigDocumentData& document, std::uint32_t index) {
  return document.nodes[index];
}

/// The document of a default ConfigNode: nothing, at 1:1, named "".
std::shared_ptr<const ConfigDocumentData> empty_document() {
  static const auto empty = [] {
    auto doc = std::make_shared<ConfigDocumentData>();
    doc->nodes.emplace_back();
    return std::shared_ptr<const ConfigDocumentData>(std::move(doc));
  }();
  return empty;
}

}  // namespace

ConfigNode::ConfigNode() : ConfigNode(empty_document(), 0) {}

ConfigNode::ConfigNode(std::shared_ptr<const detail::ConfigDocumentData> document, std::uint32_t index) noexcept
    : document_(std::move(document)), index_(index) {}

ConfigNode::Kind ConfigNode::kind() const noexcept { return node_of(*document_, index_).kind; }
ConfigMark ConfigNode::mark() const noexcept { return node_of(*document_, index_).mark; }
const std::string& ConfigNode::source() const noexcept { return document_->source; }
const std::string& ConfigNode::text() const noexcept { return node_of(*document_, index_).text; }

bool ConfigNode::is_string() const noexcept {
  const Tag tag = node_of(*document_, index_).tag;
  return is_scalar() && (tag == Tag::Quoted || tag == Tag::Str);
}

const char* ConfigNode::kind_name() const noexcept {
  switch (kind()) {
    case Kind::Map: return size() == 0 ? "an empty map" : "a map";
    case Kind::List: return size() == 0 ? "an empty list" : "a list";
    case Kind::Scalar: return "a scalar";
    case Kind::Null: break;
  }
  return "nothing";
}

std::size_t ConfigNode::size() const noexcept {
  const auto& node = node_of(*document_, index_);
  if (node.kind == Kind::List) return node.children.size();
  if (node.kind == Kind::Map) return node.children.size() / 2;
  return 0;
}

std::vector<ConfigNode> ConfigNode::items() const {
  std::vector<ConfigNode> out;
  if (!is_list()) return out;
  for (std::uint32_t child : node_of(*document_, index_).children) {
    out.push_back(ConfigDocumentData::node(document_, child));
  }
  return out;
}

std::vector<ConfigEntry> ConfigNode::entries(const std::string& what) const {
  std::vector<ConfigEntry> out;
  if (!is_map()) return out;
  std::map<std::string, ConfigMark> seen;
  const auto& children = node_of(*document_, index_).children;
  for (std::size_t i = 0; i + 1 < children.size(); i += 2) {
    const ConfigNode key = ConfigDocumentData::node(document_, children[i]);
    if (!key.is_scalar()) key.fail("a key of " + what + " must be a name, not " + key.kind_name());
    const auto [at, fresh] = seen.emplace(key.text(), key.mark());
    if (!fresh) {
      key.fail("duplicate key '" + key.text() + "' in " + what + " (first at line " + std::to_string(at->second.line) +
               ", column " + std::to_string(at->second.column) + ")");
    }
    out.push_back(ConfigEntry{key, ConfigDocumentData::node(document_, children[i + 1])});
  }
  return out;
}

std::optional<ConfigNode> ConfigNode::find(const std::string& key) const {
  if (!is_map()) return std::nullopt;
  const auto& children = node_of(*document_, index_).children;
  for (std::size_t i = 0; i + 1 < children.size(); i += 2) {
    const auto& k = node_of(*document_, children[i]);
    if (k.kind == Kind::Scalar && k.text == key) return ConfigDocumentData::node(document_, children[i + 1]);
  }
  return std::nullopt;
}

Value ConfigNode::to_value(const std::string& name) const {
  if (is_null()) fail("option '" + name + "' has no value");
  if (is_map()) fail("option '" + name + "' must be a value, not a map");
  if (is_list()) {
    std::vector<double> out;
    for (const ConfigNode& e : items()) {
      if (!e.is_scalar() || node_of(*document_, e.index_).tag == Tag::Quoted) {
        e.fail("option '" + name + "' must be a list of numbers; this element is not a number");
      }
      const Value v = e.to_value(name);
      if (v.type() != ValueType::Float && v.type() != ValueType::Int) {
        e.fail("option '" + name + "' must be a list of numbers; '" + e.text() + "' is not a number");
      }
      out.push_back(v.as_float());
    }
    return Value(std::move(out));
  }
  const std::string& s = text();
  if (is_string()) return Value(s);
  // A plain scalar, or one tagged !!int, !!float, !!bool or !!null, whose form the builder has
  // found to fit its tag.
  const std::string what = "option '" + name + "'";
  using detail::ScalarForm;
  switch (detail::form_of(s)) {
    case ScalarForm::Null: fail(what + " has no value");
    case ScalarForm::Bool: return Value(s[0] == 't' || s[0] == 'T');
    case ScalarForm::Int:
      if (node_of(*document_, index_).tag == Tag::Float) return Value(detail::parse_float(source(), mark(), what, s));
      return Value(detail::parse_int(source(), mark(), what, s));
    case ScalarForm::Float: return Value(detail::parse_float(source(), mark(), what, s));
    case ScalarForm::String: break;
  }
  return Value(s);
}

void ConfigNode::fail(const std::string& what) const { throw_config_error(source(), mark(), what); }

void throw_config_error(const std::string& source, const ConfigMark& at, const std::string& what) {
  throw ConfigError(source, at.line, at.column, what);
}

Value checked_option(const Schema& schema, const ConfigEntry& entry, const std::string& where) {
  const std::string& name = entry.key.text();
  if (entry.value.is_null()) entry.key.fail("option '" + name + "' has no value");
  const Value v = entry.value.to_value(name);
  try {
    return schema.check(name, v, where);
  } catch (const OptionError& e) {
    (e.part() == OptionPart::Name ? entry.key : entry.value).fail(e.what());
  }
}

ConfigNode parse_config_document(const std::string& text, const std::string& source) {
  auto doc = std::make_shared<ConfigDocumentData>();
  doc->source = source;
  std::istringstream in(text);
  try {
    YAML::Parser parser(in);
    DocumentBuilder builder(*doc);
    while (parser.HandleNextDocument(builder)) {
    }
    if (!builder.has_root()) {
      doc->nodes.emplace_back();  // nothing, at 1:1
      doc->root = 0;
    }
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own limit (it says "bad file"); the builder's lower one comes first in practice.
    throw_config_error(source, mark_of(e.mark), too_deep());
  } catch (const YAML::ParserException& e) {
    throw_config_error(source, mark_of(e.mark), "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw_config_error(source, mark_of(e.mark), "YAML error: " + e.msg);
  }
  return ConfigDocumentData::node(doc, doc->root);
}

ConfigNode load_config_document(const std::string& path, const std::string& what) {
  const std::string subject = "the " + what;
  const auto too_large = [&](const std::string& size) {
    return ConfigError(path, 0, 0, subject + " is " + size + " bytes, above the limit of " +
                                       std::to_string(kMaxConfigFileBytes) + " bytes (1 MiB)");
  };
  std::string text;
  try {
    std::uint64_t size = 0;
    const detail::UniqueFd fd = detail::open_regular_file(path, &size);  // a FIFO or a device is refused, never waited on
    if (size > kMaxConfigFileBytes) throw too_large(std::to_string(size));
    // The limit holds for what is read too: the file may have grown since fstat.
    if (!detail::read_at_most(fd.get(), kMaxConfigFileBytes, text)) {
      throw too_large("more than " + std::to_string(kMaxConfigFileBytes));
    }
  } catch (const detail::FileRefused& r) {
    throw ConfigError(path, 0, 0, r.describe(subject));
  }
  return parse_config_document(text, path);
}

}  // namespace optreg
