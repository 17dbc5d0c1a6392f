// gzip'd IDX files (the format of MNIST and Fashion-MNIST), read with zlib and validated.
#include <optreg/train/data.hpp>

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>

#include <optreg/detail/files.hpp>

#include "memory.hpp"

namespace optreg::train {

namespace {

constexpr std::uint8_t kUnsignedByte = 0x08;
/// Deflate's largest expansion: a gzip file of n bytes holds at most this many times n.
constexpr std::uint64_t kMaxDeflateRatio = 1032;
/// Data is decompressed in pieces of this size, so memory grows only with what the file holds.
constexpr std::size_t kPiece = std::size_t{1} << 22;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    detail::UniqueFd fd;
    try {
      fd = detail::open_regular_file(path, &size_);  // a FIFO or a device is refused, never waited on
    } catch (const detail::FileRefused& r) {
      if (r.error == ENOENT) {
        throw DataError(path + ": no such file (Fashion-MNIST comes with the Debian package dataset-fashion-mnist)");
      }
      throw DataError(path + ": " + r.describe("it"));
    }
    file_.reset(gzdopen(fd.get(), "rb"));
    if (!file_) throw DataError(path + ": cannot open the file");
    fd.release();  // the gzFile closes it
  }

  /// The most bytes the file can give: its size when it is not compressed (known after the
  /// first read), else what deflate can expand it to.
  std::uint64_t most_bytes() { return gzdirect(file_.get()) != 0 ? size_ : size_ * kMaxDeflateRatio; }
  /// Whether the file is gzip'd (known after the first read).
  bool compressed() { return gzdirect(file_.get()) == 0; }
  std::uint64_t file_size() const { return size_; }

  /// Reads up to `n` bytes; returns how many were read.
  std::size_t read(void* out, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      const int got = gzread(file_.get(), static_cast<char*>(out) + done, chunk);
      if (got < 0) {
        int code = 0;
        const char* msg = gzerror(file_.get(), &code);
        throw DataError(path_ + ": damaged gzip data: " + (msg != nullptr ? msg : "unknown error"));
      }
      if (got == 0) break;
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

  void read_exactly(void* out, std::size_t n, const std::string& what) {
    const std::size_t got = read(out, n);
    if (got != n) {
      throw DataError(path_ + ": truncated: " + what + " needs " + std::to_string(n) + " bytes, the file holds " +
                      std::to_string(got));
    }
  }

 private:
  std::string path_;
  std::uint64_t size_ = 0;
  std::unique_ptr<gzFile_s, GzCloser> file_;
};

std::uint32_t big_endian(const std::uint8_t* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

Dataset split(const std::string& dir, const std::string& prefix, std::size_t classes) {
  const std::string images_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  IdxArray images = read_idx(images_path, 3);
  IdxArray labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0]) {
    throw DataError(labels_path + ": holds " + std::to_string(labels.dims[0]) + " labels, but " + images_path +
                    " holds " + std::to_string(images.dims[0]) + " images");
  }
  Dataset d;
  d.name = prefix;
  d.count = images.dims[0];
  d.features = std::size_t{images.dims[1]} * images.dims[2];
  d.classes = classes;
  if (d.count == 0 || d.features == 0) throw DataError(images_path + ": holds no image");
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= classes) {
      throw DataError(labels_path + ": label " + std::to_string(i) + " is " + std::to_string(labels.data[i]) +
                      ", outside [0, " + std::to_string(classes) + ")");
    }
  }
  try {
    d.x.resize(images.data.size());
  } catch (const std::bad_alloc&) {
    throw DataError(images_path + ": " + out_of_memory("its " + std::to_string(images.data.size()) + " pixels as floats",
                                                       4.0 * static_cast<double>(images.data.size())));
  }
  for (std::size_t i = 0; i < images.data.size(); ++i) d.x[i] = static_cast<float>(images.data[i]) / 255.0F;
  d.y = std::move(labels.data);
  return d;
}

}  // namespace

IdxArray read_idx(const std::string& path, std::size_t rank) {
  GzReader in(path);
  std::uint8_t magic[4];
  in.read_exactly(magic, 4, "the IDX magic number");
  if (magic[0] != 0 || magic[1] != 0) {
    throw DataError(path + ": not an IDX file (the first two bytes are not zero)");
  }
  if (magic[2] != kUnsignedByte) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", magic[2]);
    throw DataError(path + ": IDX element type " + type + " is not 0x08 (unsigned byte)");
  }
  if (magic[3] != rank) {
    throw DataError(path + ": the IDX array has " + std::to_string(magic[3]) + " dimensions, expected " +
                    std::to_string(rank));
  }
  IdxArray out;
  std::uint64_t total = 1;
  for (std::size_t i = 0; i < rank; ++i) {
    std::uint8_t b[4];
    in.read_exactly(b, 4, "the size of dimension " + std::to_string(i));
    out.dims.push_back(big_endian(b));
    total *= out.dims.back();
    if (total > kMaxIdxElements) {
      throw DataError(path + ": the IDX header declares more than " + std::to_string(kMaxIdxElements) +
                      " elements (2^28), the limit for a dataset file");
    }
  }
  // Checked against the file before anything is allocated: a small file cannot make the
  // reader set aside what its header claims.
  const std::uint64_t header = 4 + 4 * std::uint64_t{rank};
  if (header + total > in.most_bytes()) {
    if (!in.compressed()) {
      throw DataError(path + ": truncated: the data the header declares needs " + std::to_string(total) +
                      " bytes, the file holds " + std::to_string(std::max(in.file_size(), header) - header));
    }
    throw DataError(path + ": truncated: the data the header declares needs " + std::to_string(total) +
                    " bytes, more than a gzip file of " + std::to_string(in.file_size()) + " bytes can hold");
  }
  // Read in pieces, growing the array as data arrives: a file whose header promises more than
  // it holds is found out having allocated no more than what it really holds.
  std::size_t done = 0;
  try {
    while (done < total) {
      const std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(total - done, kPiece));
      if (out.data.capacity() < done + piece) {
        const std::size_t grown = std::max(2 * out.data.capacity(), done + piece);
        out.data.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(total, grown)));
      }
      out.data.resize(done + piece);
      const std::size_t got = in.read(out.data.data() + done, piece);
      done += got;
      if (got < piece) break;
    }
  } catch (const std::bad_alloc&) {
    throw DataError(path + ": " + out_of_memory("the data its header declares", static_cast<double>(total)));
  }
  if (done != total) {
    throw DataError(path + ": truncated: the data the header declares needs " + std::to_string(total) +
                    " bytes, the file holds " + std::to_string(done));
  }
  std::uint8_t extra = 0;
  if (in.read(&extra, 1) != 0) {
    throw DataError(path + ": holds more data than the header declares (" + std::to_string(total) + " bytes)");
  }
  return out;
}

ImageData load_mnist_format(const std::string& dir, std::size_t classes) {
  ImageData d;
  d.train = split(dir, "train", classes);
  d.test = split(dir, "t10k", classes);
  if (d.train.features != d.test.features) {
    throw DataError(dir + "/t10k-images-idx3-ubyte.gz: images of " + std::to_string(d.test.features) +
                    " pixels, but the training images have " + std::to_string(d.train.features));
  }
  return d;
}

}  // namespace optreg::train
