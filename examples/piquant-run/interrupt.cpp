#include "interrupt.hpp"

#include <signal.h>

#include <csignal>

namespace {

volatile std::sig_atomic_t g_generating = 0;
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int sig) {
  if (g_generating != 0 && g_interrupted == 0) {
    g_interrupted = 1;  // the generation callbacks see it and stop
    return;
  }
  // At a prompt, or a second Ctrl-C: the default action (the program ends by SIGINT).
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
}

GeneratingScope::GeneratingScope() { g_generating = 1; }
GeneratingScope::~GeneratingScope() { g_generating = 0; }

bool interrupted() { return g_interrupted != 0; }
void clear_interrupted() { g_interrupted = 0; }
