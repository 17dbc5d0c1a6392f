// Loss plots through gnuplot: the data and a script are written beside the plot.
//
// gnuplot expands backquotes (running a shell command) and `@` macros everywhere on a command
// line except inside single-quoted strings, and processes `\` escapes inside double-quoted
// ones; a file name that begins with `<` (data) or `|` (output) is a shell pipe. So every text
// that comes from outside goes into the script as single-quoted pieces (quotes doubled), a
// control character only as a double-quoted octal escape joined with gnuplot's `.`, and every
// file name as `./NAME`.
#include <optreg/train/plot.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <optreg/error.hpp>
#include <optreg/train/run.hpp>

extern char** environ;

namespace optreg::train {

namespace {

namespace fs = std::filesystem;

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

std::string hex_escape(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", c);
  return buf;
}

/// The length of the well-formed UTF-8 sequence at s[i], or 0 when there is none.
std::size_t utf8_length(const std::string& s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // no overlong forms
    if (c == 0xed) hi = 0x9f;  // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if (b(i + k) < (k == 1 ? lo : 0x80) || b(i + k) > (k == 1 ? hi : 0xbf)) return 0;
  }
  return n;
}

/// Text as a plot shows it: control characters (but line breaks where `line_breaks` allows)
/// and bytes that are not UTF-8 become the four characters `\xNN`, so that the SVG stays
/// well-formed and a name cannot end a line of the script or of the data.
std::string displayable(const std::string& s, bool line_breaks) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_length(s, i);
    if (n == 0 || (is_control(c) && !(line_breaks && c == '\n'))) {
      out += hex_escape(c);
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

/// A gnuplot string expression whose value is exactly `s`: single-quoted pieces, which gnuplot
/// never expands, joined by `.` to a double-quoted octal escape for each control character.
std::string gnuplot_string(const std::string& s) {
  std::string out;
  std::string piece;
  bool open = false;
  const auto join = [&](const std::string& part) { out += (out.empty() ? "" : ".") + part; };
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_control(c)) {
      if (open) join("'" + piece + "'");
      piece.clear();
      open = false;
      char buf[8];
      std::snprintf(buf, sizeof buf, "\"\\%03o\"", c);
      join(buf);
      continue;
    }
    open = true;
    piece += ch == '\'' ? std::string("''") : std::string(1, ch);
  }
  if (open || out.empty()) join("'" + piece + "'");
  return out;
}

/// A text of the plot (a title, a label), shown as displayable() says (write `noenhanced` after
/// it, or gnuplot reads `\`, `^`, `_`, `@`, `{` and `}` in it as markup when it measures it).
std::string gnuplot_text(const std::string& s) { return gnuplot_string(displayable(s, true)); }

/// A file in the script's folder: `./NAME`, so that gnuplot reads no pipe into it.
std::string gnuplot_file(const fs::path& p) { return gnuplot_string("./" + p.filename().string()); }

/// Labelled tics at 1, 2, 3, 5 and 7 times the powers of ten within [lo, hi] (gnuplot labels
/// only the decades of a log axis, and a loss curve often spans less than one).
std::string log_tics(double lo, double hi) {
  if (!(lo > 0) || !(hi >= lo) || !std::isfinite(hi)) return "";
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

std::string terminal_of(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".svg") return "svg size 1000,620 dynamic noenhanced font 'sans,13' background rgb 'white'";
  if (ext == ".png") return "png size 1000,620 noenhanced font 'sans,11'";
  return "";
}

std::string data_path_of(const std::string& path) {
  check_plot_path(path);
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  return path + ".dat";
}

/// Runs gnuplot on `script` in `dir` (no shell between), returning its exit status and
/// everything it printed.
int run_gnuplot(const std::string& dir, const std::string& script, std::string& output) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("cannot start gnuplot: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  const std::string arg = "./" + script;  // never an option, whatever the name
  char* argv[] = {const_cast<char*>("gnuplot"), const_cast<char*>(arg.c_str()), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, "gnuplot", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (spawned != 0) {
    ::close(fds[0]);
    return spawned == ENOENT ? 127 : 126;
  }
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/// Whether the plot gnuplot wrote is a whole file: gnuplot exits 0 even when it could not write
/// it (a full disk), so its end is checked.
bool complete_plot(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  const bool svg = fs::path(path).extension() == ".svg";
  const std::string end = svg ? std::string("</svg>\n") : std::string("IEND\xae\x42\x60\x82", 8);
  std::ifstream in(path, std::ios::binary);
  const auto size = static_cast<std::streamoff>(st.st_size);
  const auto want = static_cast<std::streamoff>(end.size() + (svg ? 2 : 0));
  if (size < want) return false;
  std::string tail(static_cast<std::size_t>(want), '\0');
  in.seekg(size - want);
  in.read(tail.data(), want);
  return in && tail.find(end) != std::string::npos;
}

}  // namespace

void check_plot_path(const std::string& path) {
  if (terminal_of(path).empty()) throw UsageError("plot " + path + ": the file name must end in .svg or .png");
  // gnuplot would block on a FIFO until a reader came, and fail only after the run on a
  // folder: refuse both first (a device is written like a file, and fails as one: /dev/full).
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISDIR(st.st_mode))) {
    throw UsageError("plot " + path + ": it exists and is not a regular file (" +
                     (S_ISDIR(st.st_mode) ? "a folder" : "a FIFO") + "); name a new file or a regular one to replace");
  }
}

LossPlot::LossPlot(std::string path, PlotText text)
    : path_(std::move(path)), text_(std::move(text)), data_(data_path_of(path_)), lo_(HUGE_VAL), hi_(-HUGE_VAL) {}

void LossPlot::begin_run(const std::string& label) { lines_.push_back(Line{label, -1, 0}); }

void LossPlot::add(std::int64_t step, double loss) {
  if (lines_.empty()) begin_run("");
  Line& line = lines_.back();
  if (line.block < 0) {
    // A block begins at its first point, so that a run without rows makes no empty block
    // (gnuplot's `index` counts blocks).
    line.block = blocks_++;
    data_ << (line.block == 0 ? "" : "\n\n") << "# run " << std::to_string(lines_.size()) << ": "
          << displayable(line.label, false) << "\n# step " << displayable(text_.column, false) << "\n";
  }
  data_ << std::to_string(step) << " " << metric_text(loss) << "\n";
  last_step_ = std::max(last_step_, step);
  if (!std::isfinite(loss)) return;
  ++line.finite_points;
  positive_ = positive_ && loss > 0;
  lo_ = std::min(lo_, loss);
  hi_ = std::max(hi_, loss);
}

void LossPlot::draw() {
  data_.close();
  const std::string script_path = path_ + ".gp";
  const bool any = std::any_of(lines_.begin(), lines_.end(), [](const Line& l) { return l.finite_points > 0; });
  {
    OutputFile gp(script_path);
    gp << "# Redraw with: gnuplot " << displayable(fs::path(script_path).filename().string(), false)
       << " (in this folder)\n"
       << "set terminal " << terminal_of(path_) << "\n"
       << "set output " << gnuplot_file(path_) << "\n"
       << "set title " << gnuplot_text(text_.title) << " noenhanced\n"
       << "set xlabel " << gnuplot_text(text_.x_label) << " noenhanced\n"
       << "set ylabel " << gnuplot_text(text_.y_label) << " noenhanced\n";
    if (!any) {
      // Nothing finite to draw: fixed ranges, as gnuplot cannot scale axes to no points.
      gp << "set xrange [0:" << std::to_string(std::max<std::int64_t>(last_step_, 1)) << "]\nset yrange [0:1]\n";
    } else if (positive_ && text_.log_y) {
      gp << "set logscale y\nset autoscale yfix\nset offsets 0, 0, graph 0.04, graph 0.04\n" << log_tics(lo_, hi_);
    }
    gp << "set grid xtics ytics mytics lc rgb '#dddddd'\n"
       << "set key top right box opaque\n"
       << "set border lw 1.2\n"
       << "plot";
    for (std::size_t i = 0; i < lines_.size(); ++i) {
      const Line& l = lines_[i];
      // A run without a finite loss keeps its entry in the key, with no line.
      const std::string source = l.finite_points > 0 ? gnuplot_file(data_.path()) + " index " +
                                                           std::to_string(l.block) + " using 1:2"
                                                     : std::string("NaN");
      gp << (i == 0 ? " " : ", \\\n     ") << source << " with lines lw 2 dt " << std::to_string(i % 4 + 1)
         << " title " << gnuplot_text(l.label) << " noenhanced";
    }
    gp << "\n";
    gp.close();
  }
  const std::string dir = fs::absolute(path_).parent_path().string();
  std::string output;
  const int status = run_gnuplot(dir, fs::path(script_path).filename().string(), output);
  if (status == 127) throw Error("plot " + path_ + ": gnuplot was not found; install the Debian package gnuplot-nox");
  if (status != 0) throw Error("plot " + path_ + ": gnuplot failed on " + script_path + ": " + output);
  if (!complete_plot(path_)) {
    throw Error(path_ + ": cannot write the plot: gnuplot left it missing or incomplete (is the disk full?)" +
                (output.empty() ? std::string() : ": " + output));
  }
}

}  // namespace optreg::train
