// Checkpoint files: optreg's envelope around a Boost.Serialization binary archive.
//
// The archive is read from a stream that hashes what passes through it, so the file is read
// once; every element count is checked against the bytes the payload still holds before
// anything is allocated, and every failure, Boost's included, becomes a CheckpointError.

#include <optreg/checkpoint.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <new>
#include <streambuf>
#include <system_error>

#include <boost/archive/archive_exception.hpp>
#include <boost/archive/basic_archive.hpp>
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/split_free.hpp>
#include <boost/serialization/version.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <optreg/error.hpp>
#include <optreg/sharded_checkpoint.hpp>
#include <optreg/text.hpp>

#include <optreg/detail/files.hpp>

#include "name_regex.hpp"

namespace optreg {
namespace {

constexpr char kMagic[8] = {'O', 'P', 'T', 'R', 'E', 'G', 'C', 'K'};
constexpr std::uint32_t kEnvelopeVersion = 1;
constexpr std::uint32_t kFormatBinary = 1;
constexpr std::size_t kHeaderSize = 32;
constexpr std::size_t kChunk = 1 << 20;

/// Thrown inside this file; the public functions prefix the file name.
struct Fault {
  std::string what;
  /// For an unsupported version: the version found and the newest this reader supports.
  std::int64_t found = -1;
  std::int64_t newest = -1;
};

/// Refuses layout version `version` of `what` ("tensor") when it is above `newest`, the last
/// this reader knows; `advice` ends the message.
void check_layout_version(const char* what, unsigned version, unsigned newest, const std::string& advice = "") {
  if (version > newest) {
    throw Fault{std::string(what) + " layout version " + std::to_string(version) + " is from the future" + advice,
                version, newest};
  }
}

// ------------------------------------------------------------------ little-endian header

void put_le(unsigned char* p, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint64_t get_le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

void encode_header(unsigned char* h, std::uint64_t payload_length, std::uint64_t checksum) {
  std::memcpy(h, kMagic, 8);
  put_le(h + 8, kEnvelopeVersion, 4);
  put_le(h + 12, kFormatBinary, 4);
  put_le(h + 16, payload_length, 8);
  put_le(h + 24, checksum, 8);
}

CheckpointInfo decode_header(const unsigned char* h, std::uint64_t file_size) {
  if (file_size < kHeaderSize) {
    throw Fault{"the file is " + std::to_string(file_size) + " bytes, shorter than the " +
                std::to_string(kHeaderSize) + "-byte header; it is truncated or not a checkpoint"};
  }
  if (std::memcmp(h, kMagic, 8) != 0) throw Fault{"it is not an optreg checkpoint (wrong magic)"};
  CheckpointInfo info;
  info.file_size = file_size;
  info.envelope_version = static_cast<std::uint32_t>(get_le(h + 8, 4));
  info.format = static_cast<std::uint32_t>(get_le(h + 12, 4));
  info.payload_length = get_le(h + 16, 8);
  info.checksum = get_le(h + 24, 8);
  if (info.envelope_version == 0 || info.envelope_version > kEnvelopeVersion) {
    throw Fault{"envelope version " + std::to_string(info.envelope_version) +
                    " is not supported (this reader supports 1 to " + std::to_string(kEnvelopeVersion) +
                    "); it was written by a newer optreg or is damaged",
                info.envelope_version, kEnvelopeVersion};
  }
  if (info.format != kFormatBinary) {
    throw Fault{"archive format " + std::to_string(info.format) + " is not supported (this reader supports " +
                std::to_string(kFormatBinary) + ", binary)"};
  }
  if (info.payload_length != file_size - kHeaderSize) {
    throw Fault{"the header announces a payload of " + std::to_string(info.payload_length) + " bytes but the file holds " +
                std::to_string(file_size - kHeaderSize) + "; it is truncated or damaged"};
  }
  return info;
}

// ------------------------------------------------------------------ streams

/// Writes to a file descriptor, hashing every byte.
class HashingWriteBuf : public std::streambuf {
 public:
  explicit HashingWriteBuf(int fd) : fd_(fd), buffer_(kChunk) {
    XXH3_64bits_reset(&hash_);
    setp(buffer_.data(), buffer_.data() + buffer_.size());
  }
  /// Appends to `sink` instead of writing a file.
  explicit HashingWriteBuf(std::string& sink) : HashingWriteBuf(-1) { sink_ = &sink; }
  std::uint64_t written() const { return written_ + static_cast<std::uint64_t>(pptr() - pbase()); }
  std::uint64_t digest() { return XXH3_64bits_digest(&hash_); }
  /// The errno of the write that failed, or 0.
  int error() const { return error_; }
  void finish() {
    if (!flush_buffer()) throw Fault{std::string("writing failed: ") + std::strerror(errno)};
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (static_cast<std::size_t>(n) < buffer_.size() / 4) return std::streambuf::xsputn(s, n);
    // Large blocks (tensor data) go straight to the file.
    if (!flush_buffer() || !write_all(s, static_cast<std::size_t>(n))) return 0;
    return n;
  }
  int sync() override { return flush_buffer() ? 0 : -1; }

 private:
  bool flush_buffer() {
    const auto n = static_cast<std::size_t>(pptr() - pbase());
    if (n != 0 && !write_all(pbase(), n)) return false;
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return true;
  }
  bool write_all(const char* p, std::size_t n) {
    XXH3_64bits_update(&hash_, p, n);
    written_ += n;
    if (sink_ != nullptr) {
      sink_->append(p, n);
      return true;
    }
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        error_ = w < 0 ? errno : EIO;
        return false;
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  int fd_;
  std::string* sink_ = nullptr;
  std::vector<char> buffer_;
  XXH3_state_t hash_;
  std::uint64_t written_ = 0;
  int error_ = 0;
};

/// Reads at most `limit` bytes from a file descriptor or a memory block, hashing every byte.
class HashingReadBuf : public std::streambuf {
 public:
  HashingReadBuf(int fd, std::uint64_t limit) : fd_(fd), remaining_(limit), buffer_(kChunk) {
    XXH3_64bits_reset(&hash_);
  }
  HashingReadBuf(const char* data, std::uint64_t limit) : memory_(data), remaining_(limit) {
    XXH3_64bits_reset(&hash_);
  }
  /// Bytes not yet handed to the archive.
  std::uint64_t unread() const { return remaining_ + static_cast<std::uint64_t>(egptr() - gptr()); }
  std::uint64_t digest() { return XXH3_64bits_digest(&hash_); }
  /// Copies the next `n` bytes without consuming them; false when fewer remain.
  bool peek(void* dst, std::size_t n) {
    if (traits_type::eq_int_type(sgetc(), traits_type::eof())) return false;  // fills the buffer
    if (static_cast<std::size_t>(egptr() - gptr()) < n) return false;
    std::memcpy(dst, gptr(), n);
    return true;
  }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const std::size_t n = std::min<std::uint64_t>(remaining_, memory_ ? remaining_ : buffer_.size());
    if (n == 0) return traits_type::eof();
    char* dst = memory_ ? const_cast<char*>(memory_) : buffer_.data();
    if (!fill(dst, n)) return traits_type::eof();
    setg(dst, dst, dst + n);
    return traits_type::to_int_type(*gptr());
  }
  std::streamsize xsgetn(char* s, std::streamsize count) override {
    auto n = static_cast<std::uint64_t>(count);
    const auto buffered = static_cast<std::uint64_t>(egptr() - gptr());
    if (n <= buffered || memory_ != nullptr || n < buffer_.size() / 4) return std::streambuf::xsgetn(s, count);
    // Large blocks (tensor data) are read straight into their destination.
    std::memcpy(s, gptr(), buffered);
    setg(eback(), egptr(), egptr());
    const std::uint64_t rest = std::min(n - buffered, remaining_);
    if (!fill(s + buffered, rest)) return static_cast<std::streamsize>(buffered);
    return static_cast<std::streamsize>(buffered + rest);
  }

 private:
  bool fill(char* dst, std::uint64_t n) {
    if (memory_ != nullptr) {
      memory_ += n;
    } else {
      std::uint64_t got = 0;
      while (got < n) {
        const ssize_t r = ::read(fd_, dst + got, std::min<std::uint64_t>(n - got, std::uint64_t{1} << 30));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += static_cast<std::uint64_t>(r);
      }
    }
    XXH3_64bits_update(&hash_, dst, n);
    remaining_ -= n;
    return true;
  }

  int fd_ = -1;
  const char* memory_ = nullptr;
  std::uint64_t remaining_;
  std::vector<char> buffer_;
  XXH3_state_t hash_;
};

/// The reading context of the current thread: bounds for counts.
thread_local const HashingReadBuf* t_reader = nullptr;

/// Checks a count read from the file: `count` elements of at least `min_bytes` each must fit in
/// what the payload still holds.
void check_count(std::uint64_t count, std::uint64_t min_bytes, const char* what) {
  const std::uint64_t left = t_reader != nullptr ? t_reader->unread() : 0;
  if (min_bytes != 0 && count > left / min_bytes) {
    throw Fault{"the " + std::string(what) + " count " + std::to_string(count) + " exceeds what the remaining " +
                std::to_string(left) + " bytes of the payload can hold"};
  }
}

}  // namespace
}  // namespace optreg

// ------------------------------------------------------------------ archive layout
//
// Counts and strings are written by hand (a 64-bit count, then the elements) rather than with
// Boost's container serializers, so that a reader can bound every count before allocating.

namespace boost::serialization {

template <class Ar>
void save_string(Ar& ar, const std::string& s) {
  const std::uint64_t n = s.size();
  ar << n;
  ar.save_binary(s.data(), s.size());
}
template <class Ar>
void load_string(Ar& ar, std::string& s) {
  std::uint64_t n = 0;
  ar >> n;
  optreg::check_count(n, 1, "string length");
  s.resize(static_cast<std::size_t>(n));
  ar.load_binary(s.data(), s.size());
}

template <class Ar>
void save(Ar& ar, const optreg::Tensor& t, unsigned /*version*/) {
  // Layout version 2: the shape, the dtype's code, the elements (of a quantized dtype: its codes,
  // padding to four bytes and block scales). Version 1 knew no quantized dtype; version 0 had no
  // dtype (float32).
  const std::uint64_t dims = t.dim();
  ar << dims;
  for (std::int64_t d : t.shape()) ar << d;
  const auto dtype = static_cast<std::uint32_t>(t.dtype());
  ar << dtype;
  ar.save_binary(t.raw(), t.nbytes());
}
template <class Ar>
void load(Ar& ar, optreg::Tensor& t, unsigned version) {
  optreg::check_layout_version("tensor", version, 2);
  std::uint64_t dims = 0;
  ar >> dims;
  optreg::check_count(dims, sizeof(std::int64_t), "tensor dimension");
  optreg::Shape shape(static_cast<std::size_t>(dims));
  std::uint64_t numel = 1;
  for (auto& d : shape) {
    ar >> d;
    if (d < 0) throw optreg::Fault{"a tensor has the negative extent " + std::to_string(d)};
    if (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / static_cast<std::uint64_t>(d)) {
      throw optreg::Fault{"a tensor's element count overflows"};
    }
    numel *= static_cast<std::uint64_t>(d);
  }
  optreg::DType dtype = optreg::DType::Float32;
  if (version >= 1) {
    std::uint32_t code = 0;
    ar >> code;
    if (optreg::dtype_size(static_cast<optreg::DType>(code)) == 0 ||
        (version < 2 && optreg::is_quantized(static_cast<optreg::DType>(code)))) {
      throw optreg::Fault{"a tensor has the unknown dtype code " + std::to_string(code) + " (tensor layout version " +
                          std::to_string(version) + ")"};
    }
    dtype = static_cast<optreg::DType>(code);
  }
  optreg::check_count(numel, optreg::dtype_size(dtype), "tensor element");
  t = optreg::Tensor::uninitialized(shape, dtype);
  ar.load_binary(t.raw(), t.nbytes());
}

template <class Ar>
void save(Ar& ar, const optreg::Value& v, unsigned /*version*/) {
  const auto type = static_cast<std::uint8_t>(v.type());
  ar << type;
  switch (v.type()) {
    case optreg::ValueType::Bool: { const bool b = v.as_bool(); ar << b; break; }
    case optreg::ValueType::Int: { const std::int64_t i = v.as_int(); ar << i; break; }
    case optreg::ValueType::Float: { const double d = v.as_float(); ar << d; break; }
    case optreg::ValueType::String: save_string(ar, v.as_string()); break;
    case optreg::ValueType::FloatList: {
      const auto& l = v.as_float_list();
      const std::uint64_t n = l.size();
      ar << n;
      ar.save_binary(l.data(), l.size() * sizeof(double));
      break;
    }
  }
}
template <class Ar>
void load(Ar& ar, optreg::Value& v, unsigned version) {
  optreg::check_layout_version("value", version, 0);
  std::uint8_t type = 0;
  ar >> type;
  switch (static_cast<optreg::ValueType>(type)) {
    case optreg::ValueType::Bool: {
      // Read as a byte: any other byte than 0 or 1 in a bool is undefined behaviour.
      std::uint8_t b = 0;
      ar >> b;
      if (b > 1) throw optreg::Fault{"a boolean value holds the invalid byte " + std::to_string(b)};
      v = optreg::Value(b == 1);
      return;
    }
    case optreg::ValueType::Int: { std::int64_t i = 0; ar >> i; v = optreg::Value(i); return; }
    case optreg::ValueType::Float: { double d = 0; ar >> d; v = optreg::Value(d); return; }
    case optreg::ValueType::String: { std::string s; load_string(ar, s); v = optreg::Value(std::move(s)); return; }
    case optreg::ValueType::FloatList: {
      std::uint64_t n = 0;
      ar >> n;
      optreg::check_count(n, sizeof(double), "list element");
      std::vector<double> l(static_cast<std::size_t>(n));
      ar.load_binary(l.data(), l.size() * sizeof(double));
      v = optreg::Value(std::move(l));
      return;
    }
  }
  throw optreg::Fault{"unknown value type code " + std::to_string(type)};
}

template <class Ar>
void save_options(Ar& ar, const optreg::Options& o) {
  const std::uint64_t n = o.size();
  ar << n;
  for (const auto& [k, v] : o) {
    save_string(ar, k);
    ar << v;
  }
}
/// Reads a count of named entries (each at least `min_bytes` long in the archive: see
/// check_count) and, for each, its name; `read(name)` reads the rest of the entry.
template <class Ar, class F>
void load_named_entries(Ar& ar, std::uint64_t min_bytes, const char* what, F&& read) {
  std::uint64_t n = 0;
  ar >> n;
  optreg::check_count(n, min_bytes, what);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string name;
    load_string(ar, name);
    read(std::move(name));
  }
}

template <class Ar>
void load_options(Ar& ar, optreg::Options& o, const char* what) {
  load_named_entries(ar, 10, what, [&](std::string k) {
    optreg::Value v;
    ar >> v;
    if (!o.emplace(std::move(k), std::move(v)).second) throw optreg::Fault{std::string("a duplicate ") + what};
  });
}

template <class Ar>
void save(Ar& ar, const optreg::ParamState& s, unsigned /*version*/) {
  const std::uint64_t nt = s.num_tensors();
  ar << nt;
  for (const auto& [name, t] : s.tensors()) {
    save_string(ar, name);
    ar << t;
  }
  const std::uint64_t ns = s.num_scalars();
  ar << ns;
  for (const auto& [name, v] : s.scalars()) {
    save_string(ar, name);
    const std::uint8_t kind = v.index() == 0 ? 1 : 2;
    ar << kind;
    if (kind == 1) {
      const std::int64_t i = std::get<std::int64_t>(v);
      ar << i;
    } else {
      const double d = std::get<double>(v);
      ar << d;
    }
  }
}
template <class Ar>
void load(Ar& ar, optreg::ParamState& s, unsigned version) {
  optreg::check_layout_version("state", version, 0);
  load_named_entries(ar, 17, "state tensor", [&](std::string name) {
    optreg::Tensor t;
    ar >> t;
    s.add_tensor(name, std::move(t));
  });
  load_named_entries(ar, 17, "state scalar", [&](std::string name) {
    std::uint8_t kind = 0;
    ar >> kind;
    if (kind == 1) {
      std::int64_t v = 0;
      ar >> v;
      s.add_scalar(name, v);
    } else if (kind == 2) {
      double v = 0;
      ar >> v;
      s.add_scalar(name, v);
    } else {
      throw optreg::Fault{"state scalar " + optreg::quoted_name(name) + " has the unknown kind " + std::to_string(kind)};
    }
  });
}

template <class Ar>
void save(Ar& ar, const optreg::StateDict& d, unsigned /*version*/) {
  save_string(ar, d.optimizer);
  save_string(ar, d.plugin_version);
  const std::uint64_t ng = d.param_groups.size();
  ar << ng;
  for (const auto& g : d.param_groups) {
    save_options(ar, g.options);
    const std::uint64_t np = g.params.size();
    ar << np;
    for (std::uint64_t id : g.params) ar << id;
  }
  const std::uint64_t ns = d.state.size();
  ar << ns;
  for (const auto& [id, s] : d.state) {
    ar << id;
    ar << s;
  }
}
template <class Ar>
void load(Ar& ar, optreg::StateDict& d, unsigned version) {
  optreg::check_layout_version("state dict", version, 0, " (this reader supports 0); upgrade optreg");
  load_string(ar, d.optimizer);
  load_string(ar, d.plugin_version);
  std::uint64_t ng = 0;
  ar >> ng;
  optreg::check_count(ng, 16, "param group");
  d.param_groups.resize(static_cast<std::size_t>(ng));
  for (auto& g : d.param_groups) {
    load_options(ar, g.options, "option");
    std::uint64_t np = 0;
    ar >> np;
    optreg::check_count(np, 8, "parameter id");
    g.params.resize(static_cast<std::size_t>(np));
    for (auto& id : g.params) ar >> id;
  }
  std::uint64_t ns = 0;
  ar >> ns;
  optreg::check_count(ns, 24, "state entry");
  for (std::uint64_t i = 0; i < ns; ++i) {
    std::uint64_t id = 0;
    ar >> id;
    optreg::ParamState s;
    ar >> s;
    if (!d.state.emplace(id, std::move(s)).second) {
      throw optreg::Fault{"the state of parameter id " + std::to_string(id) + " appears twice"};
    }
  }
}

/// A count, then each tensor's name and value (a checkpoint's parameters, a section's tensors).
template <class Ar>
void save_named(Ar& ar, const std::vector<optreg::NamedTensor>& tensors) {
  const std::uint64_t n = tensors.size();
  ar << n;
  for (const auto& t : tensors) {
    save_string(ar, t.name);
    ar << t.value;
  }
}
/// What save_named() wrote; `what` names the tensors in the message of a forged count.
template <class Ar>
void load_named(Ar& ar, std::vector<optreg::NamedTensor>& tensors, const char* what) {
  std::uint64_t n = 0;
  ar >> n;
  optreg::check_count(n, 16, what);
  tensors.resize(static_cast<std::size_t>(n));
  for (auto& t : tensors) {
    load_string(ar, t.name);
    ar >> t.value;
  }
}

template <class Ar>
void save(Ar& ar, const optreg::Checkpoint& c, unsigned /*version*/) {
  ar << c.optimizer;
  save_named(ar, c.parameters);
  save_options(ar, c.metadata);
  // Layout version 1: a scheduler flag byte, then the scheduler's state when it is 1.
  const std::uint8_t has_scheduler = c.scheduler ? 1 : 0;
  ar << has_scheduler;
  if (c.scheduler) {
    save_string(ar, c.scheduler->scheduler);
    save_string(ar, c.scheduler->plugin_version);
    save_options(ar, c.scheduler->state);
  }
  // Layout version 2: the count of sections, then each one's name, scalars and named tensors.
  const std::uint64_t ns = c.sections.size();
  ar << ns;
  for (const auto& section : c.sections) {
    save_string(ar, section.name);
    save_options(ar, section.scalars);
    save_named(ar, section.tensors);
  }
}
template <class Ar>
void load(Ar& ar, optreg::Checkpoint& c, unsigned version) {
  optreg::check_layout_version("checkpoint", version, 2, " (this reader supports 0 to 2); upgrade optreg");
  ar >> c.optimizer;
  load_named(ar, c.parameters, "parameter");
  load_options(ar, c.metadata, "metadata entry");
  if (version == 0) return;  // written before scheduler states were saved
  std::uint8_t has_scheduler = 0;
  ar >> has_scheduler;
  if (has_scheduler > 1) throw optreg::Fault{"the scheduler flag holds the invalid byte " + std::to_string(has_scheduler)};
  if (has_scheduler == 1) {
    optreg::SchedulerState s;
    load_string(ar, s.scheduler);
    load_string(ar, s.plugin_version);
    load_options(ar, s.state, "scheduler state entry");
    c.scheduler = std::move(s);
  }
  if (version < 2) return;  // written before sections were saved
  std::uint64_t ns = 0;
  ar >> ns;
  optreg::check_count(ns, 24, "section");
  c.sections.resize(static_cast<std::size_t>(ns));
  for (std::size_t i = 0; i < c.sections.size(); ++i) {
    optreg::CheckpointSection& section = c.sections[i];
    load_string(ar, section.name);
    for (std::size_t j = 0; j < i; ++j) {
      if (c.sections[j].name == section.name) {
        throw optreg::Fault{"the section " + optreg::quoted_name(section.name) + " appears twice"};
      }
    }
    load_options(ar, section.scalars, "section scalar");
    load_named(ar, section.tensors, "section tensor");
  }
}

}  // namespace boost::serialization

BOOST_SERIALIZATION_SPLIT_FREE(optreg::Tensor)
BOOST_SERIALIZATION_SPLIT_FREE(optreg::Value)
BOOST_SERIALIZATION_SPLIT_FREE(optreg::ParamState)
BOOST_SERIALIZATION_SPLIT_FREE(optreg::StateDict)
BOOST_SERIALIZATION_SPLIT_FREE(optreg::Checkpoint)
// Layout versions: raise one when its layout changes, and teach load() the older ones.
BOOST_CLASS_VERSION(optreg::Tensor, 2)
BOOST_CLASS_VERSION(optreg::Value, 0)
BOOST_CLASS_VERSION(optreg::ParamState, 0)
BOOST_CLASS_VERSION(optreg::StateDict, 0)
BOOST_CLASS_VERSION(optreg::Checkpoint, 2)

namespace optreg {
namespace {

/// Runs `f`, turning every failure into a CheckpointError about `name`.
template <typename F>
auto guarded(const std::string& name, const char* verb, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Fault& e) {
    throw CheckpointError(name, e.what, {e.found, e.newest});
  } catch (const CheckpointError&) {
    throw;
  } catch (const boost::archive::archive_exception& e) {
    throw CheckpointError(name, std::string("the archive is malformed (") + e.what() + ")");
  } catch (const std::bad_alloc&) {
    throw CheckpointError(name, std::string("out of memory while ") + verb);
  } catch (const std::exception& e) {
    throw CheckpointError(name, std::string(verb) + " failed: " + e.what());
  }
}

Checkpoint parse_payload(HashingReadBuf& in, const CheckpointInfo& info) {
  const HashingReadBuf* outer = t_reader;
  t_reader = &in;
  struct Restore {
    const HashingReadBuf* p;
    ~Restore() { t_reader = p; }
  } restore{outer};
  // Boost reads the archive signature as a string of the stored length and allocates that
  // length before reading it, so the length is checked here first.
  std::size_t signature_length = 0;
  if (in.peek(&signature_length, sizeof signature_length) &&
      signature_length != std::strlen(boost::archive::BOOST_ARCHIVE_SIGNATURE())) {
    throw Fault{"the payload does not begin with a Boost.Serialization archive signature (its length field reads " +
                std::to_string(signature_length) + ")"};
  }
  Checkpoint c;
  {
    boost::archive::binary_iarchive ar(in);
    ar >> c;
  }
  if (in.unread() != 0) {
    throw Fault{std::to_string(in.unread()) + " bytes follow the archive inside the payload; the file is damaged"};
  }
  if (in.digest() != info.checksum) {
    throw Fault{"the checksum does not match the payload; the file is damaged"};
  }
  return c;
}

/// `.NAME.tmp-`: the temporaries of the checkpoint `target` are `.NAME.tmp-<pid>-XXXXXX`.
std::string temporary_prefix(const std::filesystem::path& target) { return "." + target.filename().string() + ".tmp-"; }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Checkpoint parse_checkpoint(const void* data, std::size_t size, const std::string& name, CheckpointInfo* info) {
  return guarded(name, "reading", [&] {
    const auto* bytes = static_cast<const unsigned char*>(data);
    const CheckpointInfo i = decode_header(bytes, size);
    if (info != nullptr) *info = i;
    HashingReadBuf in(reinterpret_cast<const char*>(bytes) + kHeaderSize, i.payload_length);
    return parse_payload(in, i);
  });
}

Checkpoint read_checkpoint(const std::string& path, CheckpointInfo* info) {
  return guarded(path, "reading", [&] {
    std::uint64_t size = 0;
    detail::UniqueFd f;
    try {
      f = detail::open_regular_file(path, &size);  // a FIFO or a device is refused, never waited on
    } catch (const detail::FileRefused& r) {
      throw Fault{r.describe("it")};
    }
    unsigned char header[kHeaderSize] = {};
    if (size >= kHeaderSize) {
      std::size_t got = 0;
      while (got < kHeaderSize) {
        const ssize_t r = ::read(f.get(), header + got, kHeaderSize - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) throw Fault{"reading the header failed"};
        got += static_cast<std::size_t>(r);
      }
    }
    const CheckpointInfo i = decode_header(header, size);
    if (info != nullptr) *info = i;
    HashingReadBuf in(f.get(), i.payload_length);
    return parse_payload(in, i);
  });
}

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  namespace fs = std::filesystem;
  guarded(path, "writing", [&] {
    const fs::path target = fs::absolute(path);
    // The temporary is locked while this process writes it; the stale ones of writers that
    // died mid-write (kill -9, power loss) are removed first.
    std::string tmp;
    Fd f;
    f.fd = detail::create_locked_temporary(target.parent_path().string(), temporary_prefix(target), tmp);
    if (f.fd < 0) throw Fault{"cannot create a temporary file in " + target.parent_path().string() + ": " + std::strerror(errno)};
    struct Cleanup {
      const std::string& file;
      bool armed = true;
      ~Cleanup() {
        if (armed) ::unlink(file.c_str());
      }
    } cleanup{tmp};
    unsigned char header[kHeaderSize] = {};
    if (::write(f.fd, header, kHeaderSize) != static_cast<ssize_t>(kHeaderSize)) {
      throw Fault{std::string("writing failed: ") + std::strerror(errno)};
    }
    HashingWriteBuf out(f.fd);
    try {
      boost::archive::binary_oarchive ar(out);
      ar << checkpoint;
    } catch (const boost::archive::archive_exception&) {
      // The archive reports a failed write as a stream error; name the system's reason.
      if (out.error() != 0) throw Fault{std::string("writing failed: ") + std::strerror(out.error())};
      throw;
    }
    out.finish();
    encode_header(header, out.written(), out.digest());
    if (::pwrite(f.fd, header, kHeaderSize, 0) != static_cast<ssize_t>(kHeaderSize)) {
      throw Fault{std::string("writing the header failed: ") + std::strerror(errno)};
    }
    if (::fsync(f.fd) != 0) throw Fault{std::string("fsync failed: ") + std::strerror(errno)};
    if (::close(f.fd) != 0) {
      f.fd = -1;
      throw Fault{std::string("closing failed: ") + std::strerror(errno)};
    }
    f.fd = -1;
    if (::rename(tmp.c_str(), target.c_str()) != 0) throw Fault{std::string("rename failed: ") + std::strerror(errno)};
    cleanup.armed = false;
    // Make the rename itself durable.
    Fd dir;
    dir.fd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir.fd >= 0) ::fsync(dir.fd);
  });
}

std::string encode_checkpoint(const Checkpoint& checkpoint) {
  return guarded("<memory>", "encoding", [&] {
    std::string bytes(kHeaderSize, '\0');
    HashingWriteBuf out(bytes);
    {
      boost::archive::binary_oarchive ar(out);
      ar << checkpoint;
    }
    out.finish();
    encode_header(reinterpret_cast<unsigned char*>(bytes.data()), out.written(), out.digest());
    return bytes;
  });
}

void save_checkpoint(const std::string& path, const StateDict& state) {
  Checkpoint c;
  c.optimizer = state;
  save_checkpoint(path, c);
}

}  // namespace optreg

namespace optreg {

namespace {

Checkpoint checkpoint_of(const Optimizer& optimizer, const Options& metadata) {
  Checkpoint c;
  c.optimizer = optimizer.state_dict(TensorCopy::Shared);  // written straight from the live tensors
  for (const Parameter& p : optimizer.parameters()) c.parameters.push_back(NamedTensor{p.name(), p.value()});
  c.metadata = metadata;
  return c;
}

/// The section named `name` of `c`, or nullptr.
const CheckpointSection* find_section(const Checkpoint& c, const std::string& name) {
  for (const CheckpointSection& s : c.sections) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

/// Checks every component's section of `c` (named `path`), changing nothing.
void check_components(const std::string& path, const Checkpoint& c, const std::vector<CheckpointComponent*>& components) {
  for (std::size_t i = 0; i < components.size(); ++i) {
    if (components[i] == nullptr) throw UsageError("load_optimizer: component " + std::to_string(i) + " is null");
    const std::string name = components[i]->section_name();
    const CheckpointSection* s = find_section(c, name);
    if (s == nullptr) {
      throw CheckpointError(path, "it holds no section '" + name + "', which this load asks for");
    }
    try {
      components[i]->check_section(*s);
    } catch (const StateDictError& e) {
      throw CheckpointError(path, "section '" + name + "': " + e.what());
    }
  }
}

/// A sharded checkpoint's manifest holds no state of its own: refused, saying how to read it.
void refuse_manifest(const Checkpoint& c, const std::string& path) {
  if (!is_shard_manifest(c)) return;
  throw CheckpointError(path, "it is the manifest of a sharded checkpoint, whose state is in the files of " +
                                  shard_folder(path) + ": read it with read_any_checkpoint(), which assembles "
                                  "them, or load it with optreg::mpi::ShardedOptimizer::load()");
}

/// Loads a read checkpoint into `optimizer` (and `scheduler`), checking everything first.
Options load_into(const std::string& path, Checkpoint c, Optimizer& optimizer, Scheduler* scheduler,
                  const LoadOptions& options) {
  refuse_manifest(c, path);
  optimizer.check_parameters();  // a parameter whose shape changed is the host's fault, not the file's
  std::vector<Parameter> params = optimizer.parameters();
  std::vector<DTypeConversion> conversions;
  if (c.parameters.size() != params.size()) {
    throw CheckpointError(path, "it holds " + std::to_string(c.parameters.size()) + " parameter values, but optimizer '" +
                          optimizer.name() + "' has " + std::to_string(params.size()) + " parameters");
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const NamedTensor& saved = c.parameters[i];
    if (saved.name != params[i].name() || saved.value.shape() != params[i].value().shape()) {
      throw CheckpointError(path, "parameter id " + std::to_string(i) + " is " + optreg::quoted_name(saved.name) +
                            " of shape " + to_string(saved.value.shape()) + " in the file, but '" + params[i].name() +
                            "' of shape " + to_string(params[i].value().shape()) + " in the optimizer");
    }
    if (saved.value.dtype() != params[i].value().dtype()) {
      if (!options.convert_dtypes || is_quantized(saved.value.dtype())) {
        throw CheckpointError(path, "parameter id " + std::to_string(i) + " ('" + params[i].name() + "') is " +
                              dtype_name(saved.value.dtype()) + " in the file, but " +
                              dtype_name(params[i].value().dtype()) + " in the optimizer; load with " +
                              "LoadOptions::convert_dtypes to convert it");
      }
      c.parameters[i].value = convert_dtype(saved.value, params[i].value().dtype(),
                                            "parameter '" + params[i].name() + "' (id " + std::to_string(i) + ")",
                                            conversions);
    }
  }
  if (options.convert_dtypes) {
    const std::vector<DTypeConversion> state = optimizer.convert_state_dict(c.optimizer);
    conversions.insert(conversions.end(), state.begin(), state.end());
  }
  if (scheduler != nullptr) {
    if (!c.scheduler) {
      throw CheckpointError(path, "it holds no scheduler state, but scheduler '" + scheduler->name() + "' is to be resumed");
    }
    if (c.scheduler->scheduler != scheduler->name()) {
      throw CheckpointError(path, "its scheduler state is of scheduler " + optreg::quoted_name(c.scheduler->scheduler) +
                            ", but this scheduler is '" + scheduler->name() + "'");
    }
    try {
      scheduler->check_state(c.scheduler->state);
    } catch (const StateDictError& e) {
      throw CheckpointError(path, e.what());
    }
  }
  try {
    optimizer.check_state_dict(c.optimizer);  // everything, before anything changes
  } catch (const StateDictError& e) {
    throw CheckpointError(path, e.what());
  }
  check_components(path, c, options.components);
  // The values first, so that the optimizer's post_load hooks (run by load_state_dict()) see
  // the parameters as loaded.
  for (std::size_t i = 0; i < params.size(); ++i) params[i].value().copy_from(c.parameters[i].value);
  optimizer.load_state_dict(c.optimizer);  // checked above
  if (scheduler != nullptr) scheduler->load_state(c.scheduler->state);  // checked above
  for (CheckpointComponent* component : options.components) {
    component->load_section(*find_section(c, component->section_name()));  // checked above
  }
  if (options.conversions != nullptr) *options.conversions = std::move(conversions);
  return std::move(c.metadata);
}

}  // namespace

void save_optimizer(const std::string& path, const Optimizer& optimizer, const Options& metadata) {
  save_checkpoint(path, checkpoint_of(optimizer, metadata));
}

Options load_optimizer(const std::string& path, Optimizer& optimizer) {
  return load_into(path, read_checkpoint(path), optimizer, nullptr, LoadOptions{});
}

Options load_optimizer(const std::string& path, Optimizer& optimizer, const LoadOptions& options) {
  return load_into(path, read_checkpoint(path), optimizer, nullptr, options);
}

Options load_optimizer(const std::string& path, Optimizer& optimizer, Scheduler& scheduler) {
  return load_into(path, read_checkpoint(path), optimizer, &scheduler, LoadOptions{});
}

Options load_optimizer(const std::string& path, Optimizer& optimizer, Scheduler& scheduler, const LoadOptions& options) {
  return load_into(path, read_checkpoint(path), optimizer, &scheduler, options);
}

Options load_optimizer(Checkpoint checkpoint, const std::string& name, Optimizer& optimizer, Scheduler* scheduler,
                       const LoadOptions& options) {
  return load_into(name, std::move(checkpoint), optimizer, scheduler, options);
}

void save_optimizer(const std::string& path, const Optimizer& optimizer, const Scheduler& scheduler,
                    const Options& metadata) {
  save_checkpoint(path, make_checkpoint(optimizer, &scheduler, {}, metadata));
}

Checkpoint make_checkpoint(const Optimizer& optimizer, const Scheduler* scheduler,
                           const std::vector<const CheckpointComponent*>& components, const Options& metadata) {
  Checkpoint c = checkpoint_of(optimizer, metadata);
  if (scheduler != nullptr) c.scheduler = SchedulerState{scheduler->name(), scheduler->plugin_version(), scheduler->state()};
  for (std::size_t i = 0; i < components.size(); ++i) {
    if (components[i] == nullptr) throw UsageError("save_optimizer: component " + std::to_string(i) + " is null");
    CheckpointSection s = components[i]->save_section();
    if (find_section(c, s.name) != nullptr) {
      throw UsageError("save_optimizer: two components keep their state in section '" + s.name + "'");
    }
    c.sections.push_back(std::move(s));
  }
  return c;
}

void save_optimizer(const std::string& path, const Optimizer& optimizer, const Scheduler* scheduler,
                    const std::vector<const CheckpointComponent*>& components, const Options& metadata) {
  save_checkpoint(path, make_checkpoint(optimizer, scheduler, components, metadata));
}

CheckpointComponent::~CheckpointComponent() = default;

namespace {

/// A rename of NameMatchPolicy: FROM as a regular expression whose groups are its `*`s.
struct Rename {
  std::string pattern;  // as written
  detail::NameRegex from{""};
  std::string to;
  std::size_t stars = 0;
};

std::vector<Rename> compile_renames(const NameMatchPolicy& policy) {
  std::vector<Rename> out;
  for (const auto& [from, to] : policy.renames) {
    Rename r;
    std::string re;
    for (std::size_t i = 0; i < from.size(); ++i) {
      const char c = from[i];
      if (c == '*') {
        re += "(.*)";
        ++r.stars;
      } else if (c == '?') {
        re += '.';
      } else if (c == '\\' && i + 1 < from.size()) {
        // An escaped character stands for itself, as in fnmatch(): a letter or digit as it is
        // (escaped it would be a class, a back-reference or Perl's \Q), any other escaped.
        const char e = from[++i];
        if (std::isalnum(static_cast<unsigned char>(e)) == 0) re += '\\';
        re += e;
      } else if (c == '[') {
        // A set: `!` or `^` first negates it, a `]` first (after either) is a member.
        std::size_t j = i + 1;
        const bool negated = j < from.size() && (from[j] == '!' || from[j] == '^');
        if (negated) ++j;
        if (j < from.size() && from[j] == ']') ++j;
        const std::size_t end = from.find(']', j);
        if (end == std::string::npos) {
          re += "\\[";
          continue;
        }
        std::string set = negated ? "[^" : "[";
        for (std::size_t k = i + 1 + (negated ? 1 : 0); k < end; ++k) {
          if (from[k] == ']' || from[k] == '\\' || from[k] == '[' || from[k] == '^') set += '\\';
          set += from[k];
        }
        re += set + "]";
        i = end;
      } else {
        if (std::strchr("\\^$.|+(){}", c) != nullptr) re += '\\';
        re += c;
      }
    }
    const auto to_stars = static_cast<std::size_t>(std::count(to.begin(), to.end(), '*'));
    if (to_stars > r.stars) {
      throw UsageError("rename '" + from + "' -> '" + to + "': the new name has " + std::to_string(to_stars) +
                       " '*', the pattern only " + std::to_string(r.stars));
    }
    try {
      r.from = detail::NameRegex(re);
      if (r.from.groups() != r.stars) throw std::runtime_error("its stars did not make one group each");
    } catch (const std::runtime_error& e) {
      throw UsageError("rename '" + from + "' -> '" + to + "': not a pattern this loader reads (" + e.what() + ")");
    }
    r.pattern = from;
    r.to = to;
    out.push_back(std::move(r));
  }
  return out;
}

std::string renamed(const std::string& name, const std::vector<Rename>& renames) {
  for (const Rename& r : renames) {
    std::vector<std::string> stars;
    try {
      if (!r.from.matches(name, &stars)) continue;
    } catch (const std::runtime_error& e) {
      throw UsageError("rename '" + r.pattern + "' -> '" + r.to + "': " + e.what() + " (parameter " + quoted_name(name) + ")");
    }
    std::string out;
    std::size_t star = 0;
    for (const char c : r.to) {
      if (c == '*') {
        out += stars[star++];
      } else {
        out += c;
      }
    }
    return out;
  }
  return name;
}

/// The plan of a name-matched load: the report, and for each parameter of the optimizer (in id
/// order) the checkpoint's id it takes its state from, or -1.
struct NamePlan {
  NameMatchReport report;
  std::vector<std::int64_t> source;
};

NamePlan name_plan(const Checkpoint& c, const std::string& path, const Optimizer& optimizer, const NameMatchPolicy& policy) {
  if (c.optimizer.optimizer != optimizer.name()) {
    throw CheckpointError(path, "it holds the state of optimizer " + quoted_name(c.optimizer.optimizer) +
                                    ", but this optimizer is '" + optimizer.name() + "'");
  }
  if (c.parameters.empty()) {
    throw CheckpointError(path, "it holds no parameters, so no names to match the optimizer's parameters by");
  }
  const std::vector<Rename> renames = compile_renames(policy);
  std::map<std::string, std::size_t> saved;  // renamed name -> checkpoint id
  for (std::size_t i = 0; i < c.parameters.size(); ++i) {
    const std::string name = renamed(c.parameters[i].name, renames);
    const auto [it, fresh] = saved.emplace(name, i);
    if (!fresh) {
      throw CheckpointError(path, "parameters " + quoted_name(c.parameters[it->second].name) + " (id " +
                                      std::to_string(it->second) + ") and " + quoted_name(c.parameters[i].name) +
                                      " (id " + std::to_string(i) + ") both load as " + quoted_name(name));
    }
  }
  const std::vector<Parameter> params = optimizer.parameters();
  std::map<std::string, std::size_t> live;
  for (std::size_t j = 0; j < params.size(); ++j) {
    if (!live.emplace(params[j].name(), j).second) {
      throw CheckpointError(path, "the optimizer has two parameters named " + quoted_name(params[j].name()) +
                                      " (ids " + std::to_string(live[params[j].name()]) + " and " + std::to_string(j) +
                                      "); a load by name needs distinct names");
    }
  }
  NamePlan plan;
  plan.source.assign(params.size(), -1);
  for (std::size_t j = 0; j < params.size(); ++j) {
    const auto it = saved.find(params[j].name());
    if (it == saved.end()) {
      if (!policy.fresh_for_missing) {
        throw CheckpointError(path, "parameter " + quoted_name(params[j].name()) + " (id " + std::to_string(j) +
                                        ") has no state in it; NameMatchPolicy::fresh_for_missing keeps its own");
      }
      plan.report.created.push_back(params[j].name());
      continue;
    }
    const NamedTensor& s = c.parameters[it->second];
    if (s.value.shape() != params[j].value().shape()) {
      throw CheckpointError(path, "parameter " + quoted_name(params[j].name()) + " (id " + std::to_string(j) +
                                      ") has shape " + to_string(params[j].value().shape()) + ", but " +
                                      quoted_name(s.name) + " (id " + std::to_string(it->second) + ") has shape " +
                                      to_string(s.value.shape()) + " in the file");
    }
    plan.source[j] = static_cast<std::int64_t>(it->second);
    plan.report.matched.push_back(NameMatchReport::Match{params[j].name(), s.name});
  }
  std::vector<bool> used(c.parameters.size(), false);
  for (const std::int64_t k : plan.source) {
    if (k >= 0) used[static_cast<std::size_t>(k)] = true;
  }
  for (std::size_t i = 0; i < c.parameters.size(); ++i) {
    if (used[i]) continue;
    if (!policy.drop_unexpected) {
      throw CheckpointError(path, "its parameter " + quoted_name(c.parameters[i].name) + " (id " + std::to_string(i) +
                                      ") matches no parameter of the optimizer; NameMatchPolicy::drop_unexpected "
                                      "leaves it out");
    }
    plan.report.dropped.push_back(c.parameters[i].name);
  }
  return plan;
}

}  // namespace

NameMatchReport plan_name_match(const Checkpoint& checkpoint, const std::string& name, const Optimizer& optimizer,
                                const NameMatchPolicy& policy) {
  return name_plan(checkpoint, name, optimizer, policy).report;
}

NameMatchReport load_optimizer_by_name(Checkpoint c, const std::string& path, Optimizer& optimizer,
                                       const NameMatchPolicy& policy, const LoadOptions& options, Options* metadata) {
  if (!options.components.empty()) {
    throw UsageError("load_optimizer_by_name: components (LoadOptions::components) load by position only; "
                     "load them with load_optimizer()");
  }
  refuse_manifest(c, path);
  const NamePlan plan = name_plan(c, path, optimizer, policy);
  // The optimizer's own groups, options and state (shared, not copied: no save, so no
  // pre_state_dict hook), with the matched parameters' saved state in place.
  StateDict next;
  next.optimizer = optimizer.name();
  next.plugin_version = optimizer.plugin_version();
  std::vector<std::string> part;  // of a composite: the optimizer of each parameter's group
  std::uint64_t id = 0;
  for (const ParamGroup& g : optimizer.param_groups()) {
    StateDict::Group group{g.options(), {}};
    const auto it = g.options().find("optimizer");
    for (std::size_t i = 0; i < g.params().size(); ++i, ++id) {
      group.params.push_back(id);
      next.state.emplace(id, g.states()[i]);
      part.push_back(is_composite(optimizer) && it != g.options().end() ? it->second.as_string() : std::string());
    }
    next.param_groups.push_back(std::move(group));
  }
  std::map<std::uint64_t, std::string> saved_part;  // the same of the checkpoint's parameters
  for (const auto& g : c.optimizer.param_groups) {
    const auto it = g.options.find("optimizer");
    if (it == g.options.end() || it->second.type() != ValueType::String) continue;
    for (const std::uint64_t k : g.params) saved_part[k] = it->second.as_string();
  }
  std::vector<Parameter> params = optimizer.parameters();
  std::vector<DTypeConversion> conversions;
  std::vector<Tensor> values(params.size());
  for (std::size_t j = 0; j < params.size(); ++j) {
    if (plan.source[j] < 0) continue;
    const auto k = static_cast<std::uint64_t>(plan.source[j]);
    const auto state = c.optimizer.state.find(k);
    if (state == c.optimizer.state.end()) {
      throw CheckpointError(path, "its parameter " + quoted_name(c.parameters[k].name) + " (id " + std::to_string(k) +
                                      ") has no optimizer state");
    }
    if (!part[j].empty() && saved_part[k] != part[j]) {
      throw CheckpointError(path, "parameter " + quoted_name(params[j].name()) + " is stepped by optimizer '" + part[j] +
                                      "' here, but " + quoted_name(c.parameters[k].name) + " was stepped by " +
                                      (saved_part[k].empty() ? std::string("another") : "'" + saved_part[k] + "'") +
                                      " in the file");
    }
    next.state[j] = state->second;
    Tensor value = c.parameters[k].value;
    if (value.dtype() != params[j].value().dtype()) {
      if (!options.convert_dtypes || is_quantized(value.dtype())) {
        throw CheckpointError(path, "parameter " + quoted_name(params[j].name()) + " is " + dtype_name(value.dtype()) +
                                        " in the file, but " + dtype_name(params[j].value().dtype()) +
                                        " in the optimizer; load with LoadOptions::convert_dtypes to convert it");
      }
      value = convert_dtype(value, params[j].value().dtype(), "parameter '" + params[j].name() + "' (id " + std::to_string(j) + ")",
                            conversions);
    }
    values[j] = value;
  }
  if (options.convert_dtypes) {
    const std::vector<DTypeConversion> state = optimizer.convert_state_dict(next);
    conversions.insert(conversions.end(), state.begin(), state.end());
  }
  try {
    optimizer.check_state_dict(next);  // everything, before anything changes
  } catch (const StateDictError& e) {
    throw CheckpointError(path, e.what());
  }
  for (std::size_t j = 0; j < params.size(); ++j) {
    if (plan.source[j] >= 0) params[j].value().copy_from(values[j]);
  }
  optimizer.load_state_dict(next);  // checked above; its post_load hooks see the values loaded
  if (options.conversions != nullptr) *options.conversions = std::move(conversions);
  if (metadata != nullptr) *metadata = std::move(c.metadata);
  return plan.report;
}

NameMatchReport load_optimizer_by_name(const std::string& path, Optimizer& optimizer, const NameMatchPolicy& policy,
                                       const LoadOptions& options, Options* metadata) {
  return load_optimizer_by_name(read_checkpoint(path), path, optimizer, policy, options, metadata);
}

}  // namespace optreg
