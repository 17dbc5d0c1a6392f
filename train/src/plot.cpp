// Loss plots through gnuplot: the data and a script are written beside the plot.
#include <optreg/train/plot.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <optreg/error.hpp>

namespace optreg::train {

namespace {

/// A gnuplot double-quoted string.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Labelled tics at 1, 2, 3, 5 and 7 times the powers of ten within [lo, hi] (gnuplot labels
/// only the decades of a log axis, and a loss curve often spans less than one).
std::string log_tics(double lo, double hi) {
  if (!(lo > 0) || !(hi >= lo)) return "";
  std::string tics;
  for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= static_cast<int>(std::ceil(std::log10(hi))); ++e) {
    for (double m : {1.0, 2.0, 3.0, 5.0, 7.0}) {
      const double v = m * std::pow(10.0, e);
      if (v < lo / 1.2 || v > hi * 1.2) continue;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", v);
      tics += (tics.empty() ? "" : ", ") + std::string(buf);
    }
  }
  return tics.empty() ? "" : "set ytics (" + tics + ")\n";
}

}  // namespace

void plot_losses(const std::string& path, const PlotText& text, const std::vector<RunOutcome>& runs) {
  namespace fs = std::filesystem;
  const std::string ext = fs::path(path).extension().string();
  std::string terminal;
  if (ext == ".svg") {
    terminal = "svg size 1000,620 dynamic noenhanced font 'sans,13' background rgb 'white'";
  } else if (ext == ".png") {
    terminal = "png size 1000,620 noenhanced font 'sans,11'";
  } else {
    throw UsageError("plot " + path + ": the file name must end in .svg or .png");
  }
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  const std::string data_path = path + ".dat";
  const std::string script_path = path + ".gp";
  bool positive = true;
  double lo = HUGE_VAL;
  double hi = -HUGE_VAL;
  {
    std::ofstream data(data_path, std::ios::trunc);
    if (!data) throw Error(data_path + ": cannot write the plot data");
    for (const auto& r : runs) {
      data << "# " << r.label << "\n# step train_loss\n";
      for (const auto& row : r.rows) {
        char line[64];
        std::snprintf(line, sizeof line, "%lld %.9g\n", static_cast<long long>(row.step), row.train_loss);
        data << line;
        positive = positive && row.train_loss > 0;
        lo = std::min(lo, row.train_loss);
        hi = std::max(hi, row.train_loss);
      }
      data << "\n\n";  // a new gnuplot data block
    }
    if (!data) throw Error(data_path + ": writing the plot data failed");
  }
  {
    std::ofstream gp(script_path, std::ios::trunc);
    if (!gp) throw Error(script_path + ": cannot write the plot script");
    gp << "# Redraw with: gnuplot " << fs::path(script_path).filename().string() << "\n"
       << "set terminal " << terminal << "\n"
       << "set output " << quoted(fs::path(path).filename().string()) << "\n"
       << "set title " << quoted(text.title) << "\n"
       << "set xlabel " << quoted(text.x_label) << "\n"
       << "set ylabel " << quoted(text.y_label) << "\n"
       << (positive ? "set logscale y\nset autoscale yfix\nset offsets 0, 0, graph 0.04, graph 0.04\n" + log_tics(lo, hi) : "")
       << "set grid xtics ytics mytics lc rgb '#dddddd'\n"
       << "set key top right box opaque\n"
       << "set border lw 1.2\n";
    gp << "plot";
    for (std::size_t i = 0; i < runs.size(); ++i) {
      gp << (i == 0 ? " " : ", \\\n     ") << quoted(fs::path(data_path).filename().string()) << " index " << i
         << " using 1:2 with lines lw 2 dt " << (i % 4 + 1) << " title " << quoted(runs[i].label);
    }
    gp << "\n";
    if (!gp) throw Error(script_path + ": writing the plot script failed");
  }
  const std::string dir = fs::absolute(path).parent_path().string();
  const std::string command = "cd " + shell_quoted(dir) + " && gnuplot " +
                              shell_quoted(fs::path(script_path).filename().string()) + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw Error("plot " + path + ": cannot start gnuplot");
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  const int status = pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      throw Error("plot " + path + ": gnuplot was not found; install the Debian package gnuplot-nox");
    }
    throw Error("plot " + path + ": gnuplot failed on " + script_path + ": " + output);
  }
}

}  // namespace optreg::train
