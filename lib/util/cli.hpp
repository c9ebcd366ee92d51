#pragma once
// Command-line helpers for the programs (piquant-run, piquant-convert, piquant-bench): they walk
// argv the same way and report a bad command line as one line "<prog>: error: <message>" on
// stderr, exit status 1. Header-only and not part of the library, which never exits on input.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "piquant/version.hpp"

namespace piquant::cli {

/// Prints "<prog>: error: <msg>" to stderr and exits with status 1.
[[noreturn]] inline void die(const char* prog, const std::string& msg) {
  std::fprintf(stderr, "%s: error: %s\n", prog, msg.c_str());
  std::exit(1);
}

/// "<prog> (piquant 0.1.0)" on stdout, exit status 0.
[[noreturn]] inline void print_version_and_exit(const char* prog) {
  std::printf("%s (piquant %s)\n", prog, piquant::version());
  std::exit(0);
}

/// Warns on stderr, once per process, when `threads` is more than the machine's cores: the
/// threads then take turns on the cores and every step waits for the slowest (on 2 cores, -t 8
/// ran 16x slower than -t 2). Returns whether it warned.
inline bool warn_if_more_threads_than_cores(const char* prog, int threads) {
  static bool warned = false;
  const unsigned cores = std::thread::hardware_concurrency();
  if (warned || cores == 0 || threads <= static_cast<int>(cores)) return false;
  warned = true;
  std::fprintf(stderr,
               "%s: warning: %d threads on %u cores: threads beyond the core count wait for each "
               "other and run much slower (use -t %u or less)\n",
               prog, threads, cores, cores);
  return true;
}

/// One program's arguments, one at a time: `while (args.next()) { ... args.arg() ... }`.
/// A long flag may carry its value after '=' (`--ctx-size=64`, as llama.cpp and getopt allow):
/// arg() is then the flag and value() the text after '='; a flag that takes no value but was
/// given one is refused.
class ArgReader {
 public:
  /// `usage` is what -h / --help print.
  ArgReader(const char* prog, const char* usage, int argc, char** argv)
      : prog_(prog), usage_(usage), argc_(argc), argv_(argv) {}

  /// Moves to the next argument; false after the last. -h / --help print the usage, --version
  /// the program's and the library's version, to stdout and exit with status 0.
  bool next() {
    if (has_inline_value_) die(arg_ + " takes no value (got '" + arg_ + "=" + inline_value_ + "')");
    if (++i_ >= argc_) return false;
    arg_ = argv_[i_];
    const size_t eq = arg_.find('=');
    if (arg_.size() > 2 && arg_.compare(0, 2, "--") == 0 && eq != std::string::npos && eq > 2) {
      inline_value_ = arg_.substr(eq + 1);
      arg_.resize(eq);
      has_inline_value_ = true;
    }
    if (arg_ == "-h" || arg_ == "--help") {
      std::fputs(usage_, stdout);
      std::exit(0);
    }
    if (arg_ == "--version") print_version_and_exit(prog_);
    return true;
  }
  /// The current argument.
  const std::string& arg() const { return arg_; }
  /// The argument after the current one (a flag's value, consumed), or dies "<flag> needs a value".
  std::string value() {
    if (has_inline_value_) {
      has_inline_value_ = false;
      return inline_value_;
    }
    if (i_ + 1 >= argc_) die(arg_ + " needs a value");
    return argv_[++i_];
  }

  [[noreturn]] void die(const std::string& msg) const { cli::die(prog_, msg); }
  /// All of `v` as an integer (strtol base 0: 0x1f and 017 too), or dies
  /// "<flag> expects an integer, got '<v>'".
  long parse_int(const std::string& flag, const std::string& v) const {
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v.c_str(), &end, 0);
    if (v.empty() || *end != '\0' || errno != 0) die(flag + " expects an integer, got '" + v + "'");
    return x;
  }
  /// All of `v` as an unsigned 64-bit integer (strtoull base 0), or dies
  /// "<flag> expects a non-negative integer, got '<v>'".
  unsigned long long parse_u64(const std::string& flag, const std::string& v) const {
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = std::strtoull(v.c_str(), &end, 0);
    if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0) {
      die(flag + " expects a non-negative integer, got '" + v + "'");
    }
    return x;
  }
  /// All of `v` as a decimal integer in [0, 2^30], or dies
  /// "<flag> expects a non-negative integer, got '<v>'".
  int parse_count(const std::string& flag, const std::string& v) const {
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < 0 || x > (1L << 30)) {
      die(flag + " expects a non-negative integer, got '" + v + "'");
    }
    return static_cast<int>(x);
  }
  /// All of `v` as a number (strtof: inf and nan too), or dies
  /// "<flag> expects a number, got '<v>'".
  float parse_float(const std::string& flag, const std::string& v) const {
    return to_float(flag, v, false);
  }
  /// parse_float, for finite numbers within float's range only.
  float parse_finite_float(const std::string& flag, const std::string& v) const {
    return to_float(flag, v, true);
  }

 private:
  float to_float(const std::string& flag, const std::string& v, bool finite) const {
    char* end = nullptr;
    errno = 0;
    const float x = std::strtof(v.c_str(), &end);
    if (v.empty() || *end != '\0' || (finite && (errno != 0 || !std::isfinite(x)))) {
      die(flag + " expects a number, got '" + v + "'");
    }
    return x;
  }

  const char* prog_;
  const char* usage_;
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string arg_;
  std::string inline_value_;       // the text after '=' in --flag=value
  bool has_inline_value_ = false;  // ... not yet taken by value()
};

}  // namespace piquant::cli
