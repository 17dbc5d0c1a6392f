#pragma once
/// \file
/// Plots of training runs, drawn by gnuplot (Debian package gnuplot-nox).

#include <string>
#include <vector>

#include <optreg/train/run.hpp>

namespace optreg::train {

struct PlotText {
  std::string title;
  std::string x_label;
  std::string y_label;
};

/// Draws the training loss of every run against its step into `path` (.svg or .png by the
/// extension), one labelled line per run, log-scaled loss axis. Writes the data and the
/// gnuplot script beside it (PATH.dat, PATH.gp) so the plot can be redrawn or restyled.
/// Throws Error when gnuplot is missing or fails (with its message).
void plot_losses(const std::string& path, const PlotText& text, const std::vector<RunOutcome>& runs);

}  // namespace optreg::train
