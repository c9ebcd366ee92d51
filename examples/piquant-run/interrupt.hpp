#pragma once
// Ctrl-C as in llama.cpp's CLI: while text is being generated it stops the generation (in --chat
// the reply ends and the conversation goes on; otherwise the run ends after its timing line);
// anywhere else, or pressed twice, it ends the program as usual.

/// Installs the SIGINT handler (once, at start).
void install_interrupt_handler();

/// Marks the span in which Ctrl-C stops generation instead of ending the program.
class GeneratingScope {
 public:
  GeneratingScope();
  ~GeneratingScope();
  GeneratingScope(const GeneratingScope&) = delete;
  GeneratingScope& operator=(const GeneratingScope&) = delete;
};

/// Ctrl-C was pressed during the current (or last) GeneratingScope.
bool interrupted();
/// Forgets an interruption (before the next turn).
void clear_interrupted();
