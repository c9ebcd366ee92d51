#include "test_util.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <piquant/piquant.hpp>
#include <sstream>

namespace piquant::test {

std::string shared_dir() {
  const std::string d = PIQUANT_SHARED_DIR;
  struct stat st {};
  return stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? d : std::string();
}

std::string shared_file(const std::string& rel) {
  const std::string d = shared_dir();
  const std::string p = d + "/" + rel;
  struct stat st {};
  if (d.empty() || stat(p.c_str(), &st) != 0) {
    WARN("skipped: " << rel << " not found (../shared is absent in a fresh clone)");
    return "";
  }
  return p;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "piquant-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

RunResult run_program(const std::string& exe, const std::vector<std::string>& args,
                      int timeout_seconds, const std::string& stdin_path) {
  std::vector<std::string> argv_s;
  const std::string emu = PIQUANT_TEST_EMULATOR;
  if (!emu.empty()) argv_s.push_back(emu);
  argv_s.push_back(exe);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    const int devnull = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  RunResult r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  int open_fds = 2;
  bool killed = false;
  while (open_fds > 0) {
    if (std::chrono::steady_clock::now() > deadline && !killed) {
      kill(pid, SIGKILL);
      killed = true;
    }
    if (poll(fds, 2, 200) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  if (killed) r.err += "\n[killed: timeout]";
  return r;
}

PtyProgram::PtyProgram(const std::string& exe, const std::vector<std::string>& args) {
  std::vector<std::string> argv_s;
  const std::string emu = PIQUANT_TEST_EMULATOR;
  if (!emu.empty()) argv_s.push_back(emu);
  argv_s.push_back(exe);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = forkpty(&fd_, nullptr, nullptr, nullptr);
  if (pid < 0) throw std::runtime_error("forkpty failed");
  if (pid == 0) {
    execvp(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
}

PtyProgram::~PtyProgram() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (fd_ >= 0) close(fd_);
}

void PtyProgram::type(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd_, text.data() + done, text.size() - done);
    if (n <= 0) throw std::runtime_error("write to pty failed");
    done += static_cast<size_t>(n);
  }
}

void PtyProgram::pump(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return;
  char buf[4096];
  const ssize_t n = read(fd_, buf, sizeof(buf));  // EIO once the child has gone
  if (n > 0) out_.append(buf, static_cast<size_t>(n));
}

bool PtyProgram::wait_for(const std::string& marker, int count, int timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  auto occurrences = [&] {
    int c = 0;
    for (size_t at = out_.find(marker); at != std::string::npos; at = out_.find(marker, at + 1)) ++c;
    return c;
  };
  while (occurrences() < count) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    pump(100);
  }
  return true;
}

bool PtyProgram::wait_for_output(size_t bytes, int timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (out_.size() < bytes) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    pump(100);
  }
  return true;
}

int PtyProgram::wait_exit(int timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    pump(50);
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      for (int i = 0; i < 5; ++i) pump(10);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  return -1;
}

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace piquant::test
