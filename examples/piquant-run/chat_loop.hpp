#pragma once
// piquant-run --chat: an interactive conversation on stdin/stdout.
#include <piquant/piquant.hpp>

#include <string>

struct ChatArgs {
  std::string system_prompt;    ///< --system
  std::string template_name;    ///< --chat-template; empty: from the model's metadata
  std::string first_message;    ///< -p, sent as the first user turn
  bool drop_old_turns = false;  ///< --drop-old-turns
  bool verbose = false;
};

/// Runs the conversation until end of input or /exit; returns the exit status.
int run_chat(piquant::Session& session, const ChatArgs& args, piquant::GenerateOptions options);
