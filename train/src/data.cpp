// gzip'd IDX files (the format of MNIST and Fashion-MNIST), read with zlib and validated.
#include <optreg/train/data.hpp>

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>

#include "files.hpp"

namespace optreg::train {

namespace {

constexpr std::uint8_t kUnsignedByte = 0x08;
/// The largest array accepted: far above any image dataset, far below what would exhaust memory.
constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 32;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    detail::UniqueFd fd;
    try {
      fd = detail::open_regular_file(path);  // a FIFO or a device is refused, never waited on
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
  d.x.resize(images.data.size());
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
    if (total > kMaxElements) throw DataError(path + ": the IDX header declares more than 2^32 elements");
  }
  out.data.resize(static_cast<std::size_t>(total));
  in.read_exactly(out.data.data(), out.data.size(), "the data the header declares");
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
