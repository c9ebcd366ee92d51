#pragma once
// Helpers shared by the tests: where ../shared is, temporary files, running a CLI tool, the
// error a model file gives.
#include <string>
#include <vector>

namespace piquant::test {

/// ../shared beside the repository, or "" when absent (a fresh clone): tests then skip.
std::string shared_dir();
/// Path of ../shared/<rel> if it exists, else "" after a WARN saying the test is skipped.
std::string shared_file(const std::string& rel);

/// A fresh temporary directory, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

/// The message of the piquant::Error that loading the model at `path` throws; "" when it loads.
std::string load_error(const std::string& path);

struct RunResult {
  int exit_code = -1;   ///< -1: killed by a signal
  int signal = 0;
  std::string out, err;
};
/// Runs a program (under the cross-compiling emulator when there is one) with a time limit;
/// standard input is `stdin_path` (empty: /dev/null).
RunResult run_program(const std::string& exe, const std::vector<std::string>& args,
                      int timeout_seconds = 120, const std::string& stdin_path = "");

/// A program running on a pseudo-terminal, driven like a person at a keyboard.
class PtyProgram {
 public:
  PtyProgram(const std::string& exe, const std::vector<std::string>& args);
  ~PtyProgram();
  void type(const std::string& text);
  /// Reads until `marker` has appeared `count` times in all output so far, or the timeout;
  /// returns whether it did.
  bool wait_for(const std::string& marker, int count = 1, int timeout_seconds = 60);
  /// Reads until the output so far is at least `bytes` long, or the timeout; returns whether.
  bool wait_for_output(size_t bytes, int timeout_seconds = 60);
  /// Waits for the program to end; returns its exit status, 128 + the signal when a signal
  /// ended it (as a shell reports it), -1 when it is still running.
  int wait_exit(int timeout_seconds = 60);
  const std::string& output() const { return out_; }

 private:
  void pump(int timeout_ms);
  int fd_ = -1;
  int pid_ = -1;
  std::string out_;
};

}  // namespace piquant::test
