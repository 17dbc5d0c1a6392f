#pragma once
/// \file
/// Datasets for the built-in problems: the gzip'd IDX files of (Fashion-)MNIST, read and
/// validated directly.
///
/// Contract:
/// - Every failure is a DataError whose message begins with the file's path and says what is
///   wrong (missing file, damaged gzip stream, wrong magic or element type, wrong rank or
///   sizes, truncated or over-long data, labels out of range, mismatched counts).
/// - Nothing is read past what the header promises, and the header's sizes are bounded before
///   any allocation.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <optreg/error.hpp>

namespace optreg::train {

/// A dataset file is missing or malformed.
class DataError : public Error {
 public:
  using Error::Error;
};

/// The content of one IDX file of unsigned bytes.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;
};

/// The most elements an IDX file may declare: 2^28 (Fashion-MNIST's training images have
/// 47,040,000), a bound on what a dataset file can make the reader allocate.
inline constexpr std::uint64_t kMaxIdxElements = std::uint64_t{1} << 28;

/// Reads a gzip'd (or plain) IDX file of unsigned bytes (type 0x08) and checks that it has
/// `rank` dimensions. Only a regular file is read; the sizes its header declares are checked
/// against kMaxIdxElements and against what the file can hold before anything is allocated,
/// and the data is decompressed in pieces, so memory grows only with what the file holds.
IdxArray read_idx(const std::string& path, std::size_t rank);

/// A classification dataset held in memory: `count` examples of `features` floats in [0, 1],
/// row-major, and a label in [0, classes) for each.
struct Dataset {
  std::string name;
  std::size_t count = 0;
  std::size_t features = 0;
  std::size_t classes = 0;
  std::vector<float> x;
  std::vector<std::uint8_t> y;
};

/// The train and test splits of an image-classification dataset.
struct ImageData {
  Dataset train;
  Dataset test;
};

/// The folder where Debian's `dataset-fashion-mnist` package puts its files.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

/// Reads the four files of (Fashion-)MNIST from `dir`: train-images-idx3-ubyte.gz,
/// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
ImageData load_mnist_format(const std::string& dir, std::size_t classes = 10);

}  // namespace optreg::train
