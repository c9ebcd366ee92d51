#pragma once
// Progress of a long job over items with byte sizes (a conversion: tensors and bytes).
// On a terminal (isatty): one self-redrawing line, at most ~10 redraws a second:
//   [#########...........]  57/201 tensors  3.1/13.0 GiB  41 MiB/s  ETA 4m02s  blk.9.ffn_up.weight
// Otherwise (a log file, a pipe, CI): one plain line per item, no control characters:
//   [57/201] blk.9.ffn_up.weight 86.0 MiB (3.1/13.0 GiB, ETA 4m02s)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace piquant {

struct ProgressOptions {
  std::FILE* out = stderr;
  /// -1: detect with isatty(fileno(out)); 0: plain lines; 1: terminal line.
  int terminal = -1;
  int bar_width = 20;
  std::string unit = "tensors";
};

class Progress {
 public:
  Progress(size_t total_items, uint64_t total_bytes, ProgressOptions options = {});
  ~Progress();  ///< ends the terminal line if finish() was not called
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// One more item done (its name and bytes).
  void advance(const std::string& item, uint64_t bytes);
  /// Final line: "done: 201 tensors, 13.0 GiB in 5m10s (43 MiB/s)".
  void finish();
  bool is_terminal() const { return terminal_; }

 private:
  double elapsed() const;
  std::string status(const std::string& item, double secs) const;
  ProgressOptions opt_;
  bool terminal_;
  bool finished_ = false;
  size_t total_items_, items_ = 0;
  uint64_t total_bytes_, bytes_ = 0;
  std::chrono::steady_clock::time_point start_;
  double last_draw_ = -1.0;
};

/// "13.0 GiB", "86.0 MiB", "512 B"
std::string format_bytes(uint64_t bytes);
/// "4m02s", "1h05m", "12s"; "?" for negative / non-finite
std::string format_duration(double seconds);

}  // namespace piquant
