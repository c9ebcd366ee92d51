#include "util/progress.hpp"

#include <unistd.h>

#include <cmath>

namespace piquant {

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<uint64_t>(s + 0.5);
  char buf[32];
  if (t < 60) {
    std::snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(t));
  } else if (t < 3600) {
    std::snprintf(buf, sizeof buf, "%llum%02llus", static_cast<unsigned long long>(t / 60),
                  static_cast<unsigned long long>(t % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lluh%02llum", static_cast<unsigned long long>(t / 3600),
                  static_cast<unsigned long long>((t % 3600) / 60));
  }
  return buf;
}

Progress::Progress(size_t total_items, uint64_t total_bytes, ProgressOptions options)
    : opt_(std::move(options)),
      total_items_(total_items),
      total_bytes_(total_bytes),
      start_(std::chrono::steady_clock::now()) {
  terminal_ = opt_.terminal < 0 ? ::isatty(fileno(opt_.out)) == 1 : opt_.terminal == 1;
}

Progress::~Progress() {
  if (terminal_ && !finished_ && last_draw_ >= 0) std::fputc('\n', opt_.out);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::status(const std::string& item, double secs) const {
  // ETA from bytes when sizes are known (tensors differ wildly in size), else from items.
  double frac = 0.0;
  if (total_bytes_ > 0) {
    frac = static_cast<double>(bytes_) / static_cast<double>(total_bytes_);
  } else if (total_items_ > 0) {
    frac = static_cast<double>(items_) / static_cast<double>(total_items_);
  }
  const double eta = frac > 0.0 ? secs * (1.0 - frac) / frac : -1.0;
  std::string s;
  if (terminal_) {
    const int filled = static_cast<int>(std::min(1.0, frac) * opt_.bar_width);
    s = "[" + std::string(static_cast<size_t>(filled), '#') +
        std::string(static_cast<size_t>(opt_.bar_width - filled), '.') + "] ";
    s += std::to_string(items_) + "/" + std::to_string(total_items_) + " " + opt_.unit + "  ";
    s += format_bytes(bytes_) + "/" + format_bytes(total_bytes_);
    if (secs > 0.0) {
      s += "  " + format_bytes(static_cast<uint64_t>(static_cast<double>(bytes_) / secs)) + "/s";
    }
    s += "  ETA " + format_duration(eta) + "  " + item;
  } else {
    s = "[" + std::to_string(items_) + "/" + std::to_string(total_items_) + "] " + item + " (" +
        format_bytes(bytes_) + "/" + format_bytes(total_bytes_) + ", ETA " + format_duration(eta) + ")";
  }
  return s;
}

void Progress::advance(const std::string& item, uint64_t bytes) {
  ++items_;
  bytes_ += bytes;
  const double secs = elapsed();
  if (terminal_) {
    if (last_draw_ >= 0 && secs - last_draw_ < 0.1 && items_ < total_items_) return;
    last_draw_ = secs;
    // \r to column 0, draw, clear to end of line (the previous line may have been longer).
    std::fprintf(opt_.out, "\r%s\x1b[K", status(item, secs).c_str());
  } else {
    std::fprintf(opt_.out, "%s\n", status(item, secs).c_str());
  }
  std::fflush(opt_.out);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  const double secs = elapsed();
  const std::string rate =
      secs > 0.0 ? format_bytes(static_cast<uint64_t>(static_cast<double>(bytes_) / secs)) + "/s" : "-";
  std::fprintf(opt_.out, "%sdone: %zu %s, %s in %s (%s)\n", terminal_ && last_draw_ >= 0 ? "\r\x1b[K" : "",
               items_, opt_.unit.c_str(), format_bytes(bytes_).c_str(), format_duration(secs).c_str(),
               rate.c_str());
  std::fflush(opt_.out);
}

}  // namespace piquant
