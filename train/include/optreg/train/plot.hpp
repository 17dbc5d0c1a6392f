#pragma once
/// \file
/// Plots of training runs, drawn by gnuplot (Debian package gnuplot-nox).
///
/// Contract:
/// - Text from configs, checkpoints and file names (labels, titles, paths) reaches gnuplot only
///   as single-quoted string constants, which gnuplot never expands (no backquote command,
///   no `@` macro, no `\` escape); control characters and bytes that are not UTF-8 are shown
///   as `\xNN`, and file names are written as `./NAME`, so that no name can make gnuplot open
///   a pipe (`<command`, `|command`). gnuplot is started without a shell.
/// - Memory does not grow with the number of points: they go to the data file as they come.
/// - Every file is written as output.hpp says: a failure is an Error naming the file.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <optreg/train/output.hpp>

namespace optreg::train {

struct PlotText {
  std::string title;
  std::string x_label;
  std::string y_label;
  /// Log-scale the y axis when every value is positive (losses); false keeps it linear
  /// (learning rates, whose warm-ups and decays read best on a linear axis).
  bool log_y = true;
  /// The name of the value column in the data file.
  std::string column = "train_loss";
};

/// Checks that a plot can be drawn to `path`: its name ends in .svg or .png, and it is absent or
/// not a folder or a FIFO (gnuplot would block on one). Throws UsageError.
void check_plot_path(const std::string& path);

/// The training loss of every run against its step, one labelled line per run, log-scaled loss
/// axis when every loss is positive (PlotText::log_y; any other series, such as a learning rate
/// per param group, with log_y false). The points go to PATH.dat as they are added; draw()
/// writes the gnuplot script PATH.gp beside it (so the plot can be redrawn or restyled:
/// `cd FOLDER && gnuplot NAME.gp`) and draws PATH. Losses that are not finite are kept in the
/// data (as nan or inf) and left out of the lines.
class LossPlot {
 public:
  /// Checks the path (check_plot_path()), creates its folder and PATH.dat.
  LossPlot(std::string path, PlotText text);

  /// Starts the line of the next run.
  void begin_run(const std::string& label);
  /// Adds a point to the current run's line.
  void add(std::int64_t step, double loss);
  /// Writes the data and the script and runs gnuplot. Throws Error when a file cannot be
  /// written, when gnuplot is missing or fails (with its message), and when the plot it wrote
  /// is not a complete file.
  void draw();

  const std::string& path() const noexcept { return path_; }

 private:
  struct Line {
    std::string label;
    int block = -1;                 // index of its data block; -1 until its first point
    std::int64_t finite_points = 0;
  };

  std::string path_;
  PlotText text_;
  OutputFile data_;
  std::vector<Line> lines_;
  int blocks_ = 0;
  bool positive_ = true;
  double lo_;
  double hi_;
  std::int64_t last_step_ = 0;
};

}  // namespace optreg::train
