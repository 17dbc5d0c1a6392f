// libFuzzer target: optreg::parse_checkpoint on arbitrary bytes. A CheckpointError is the only
// acceptable failure; any other exception, a crash or a sanitizer report stops the fuzzer.
//
// Each input is parsed twice: as it is, and with its header's payload length and checksum made
// to agree with it, so that mutations reach the archive parser instead of stopping at the
// envelope.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <optreg/checkpoint.hpp>
#include <optreg/error.hpp>

namespace {

constexpr std::size_t kHeader = 32;

void put_le64(unsigned char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

/// Reads everything a parsed checkpoint holds, so that a tensor whose memory disagrees with its
/// shape shows up under AddressSanitizer.
std::uint64_t touch(const optreg::Checkpoint& c) {
  std::uint64_t sum = 0;
  const auto tensor = [&](const optreg::Tensor& t) {
    // Byte by byte through raw(): a checkpoint may hold any dtype, quantized codes included.
    const auto* bytes = static_cast<const unsigned char*>(t.raw());
    for (std::size_t i = 0; i < t.nbytes(); ++i) sum += bytes[i];
  };
  for (const auto& g : c.optimizer.param_groups) sum += g.options.size() + g.params.size();
  for (const auto& [id, s] : c.optimizer.state) {
    sum += id;
    for (const auto& [name, t] : s.tensors()) {
      sum += name.size();
      tensor(t);
    }
  }
  for (const auto& p : c.parameters) tensor(p.value);
  return sum + c.metadata.size();
}

void parse(const unsigned char* data, std::size_t size) {
  try {
    volatile std::uint64_t sink = touch(optreg::parse_checkpoint(data, size, "fuzz-input"));
    (void)sink;
  } catch (const optreg::CheckpointError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse(data, size);
  if (size >= kHeader) {
    std::vector<unsigned char> sealed(data, data + size);
    put_le64(sealed.data() + 16, size - kHeader);
    put_le64(sealed.data() + 24, XXH3_64bits(sealed.data() + kHeader, size - kHeader));
    parse(sealed.data(), sealed.size());
  }
  return 0;
}
