#include "chat_loop.hpp"

#include "interrupt.hpp"

#include <cstdio>
#include <string>
#include <iostream>

namespace {

const char* kChatHelp =
    "chat commands (alone on a line):\n"
    "  /help    this list\n"
    "  /reset   start the conversation over (the system prompt stays)\n"
    "  /exit    quit (also /quit, Ctrl-D, or Ctrl-C at this prompt)\n"
    "end a line with \\ to continue the message on the next line; Ctrl-C stops a reply\n";

// Reads one user message: a line, or several joined when a line ends with '\'.
bool read_message(std::string& msg) {
  msg.clear();
  std::string line;
  for (;;) {
    if (!std::getline(std::cin, line)) return !msg.empty();
    if (!line.empty() && line.back() == '\\') {
      line.pop_back();
      msg += line + "\n";
      continue;
    }
    msg += line;
    return true;
  }
}

}  // namespace

int run_chat(piquant::Session& session, const ChatArgs& a, piquant::GenerateOptions go) {
  const piquant::Model& model = session.model();
  const piquant::ChatTemplate tmpl =
      a.template_name.empty()
          ? piquant::ChatTemplate::detect(model.chat_template(), &model.tokenizer())
          : piquant::ChatTemplate::by_name(a.template_name);
  piquant::ConversationOptions co;
  co.system_prompt = a.system_prompt;
  co.drop_oldest_turns = a.drop_old_turns;
  piquant::Conversation chat(session, tmpl, co);
  std::fprintf(stderr,
               "piquant-run: chat (template %s, context %d tokens). Type a message and press "
               "Enter; end a line with \\ to continue it; Ctrl-C stops a reply; /help lists "
               "the commands, /reset starts over, /exit or Ctrl-D quits.\n",
               tmpl.name(), session.n_ctx());

  std::string msg = a.first_message;
  bool have = !msg.empty();
  for (;;) {
    if (!have) {
      std::cout << "\n> " << std::flush;
      if (!read_message(msg)) {
        std::cout << std::endl;  // Ctrl-D: end the prompt's line before the shell's
        break;
      }
    }
    have = false;
    if (msg == "/exit" || msg == "/quit") break;
    if (msg == "/help" || msg == "/?") {
      std::cout << kChatHelp << std::flush;
      continue;
    }
    if (msg == "/reset") {
      chat.reset();
      std::cout << "[conversation reset]" << std::endl;
      continue;
    }
    if (msg.empty()) continue;
    try {
      const int dropped = chat.dropped_turns();
      clear_interrupted();
      piquant::GenerateResult r;
      {
        const GeneratingScope generating;  // Ctrl-C ends the reply, not the chat
        r = chat.send(msg, [](std::string_view piece) {
          std::cout << piece << std::flush;
          return !interrupted();
        }, go);
      }
      std::cout << std::endl;
      if (interrupted()) std::cout << "[interrupted]" << std::endl;
      if (chat.dropped_turns() > dropped) {
        std::fprintf(stderr, "piquant-run: context full: dropped the %d oldest turn(s)\n",
                     chat.dropped_turns() - dropped);
      }
      if (r.stop == piquant::GenerateResult::StopReason::kContextFull) {
        std::fprintf(stderr, "piquant-run: the reply was cut: the context (%d tokens) is full; "
                             "%s\n", session.n_ctx(),
                     a.drop_old_turns ? "the next message drops the oldest turns, or /reset "
                                        "starts over"
                                      : "/reset starts over, or run with --drop-old-turns");
      }
      if (a.verbose) {
        std::fprintf(stderr, "[%zu prompt tokens, %zu generated, %d in context]\n",
                     r.prompt_ids.size(), r.generated_ids.size(), session.position());
      }
    } catch (const piquant::Error& e) {
      if (e.code() != piquant::ErrorCode::kContextFull) throw;
      // The message alone is too long (-c), or the conversation is full (/reset).
      const bool full = std::string(e.what()).find("does not fit") == std::string::npos;
      std::fprintf(stderr, "piquant-run: %s%s\n", e.what(),
                   !full ? "; -c sets the context size"
                   : a.drop_old_turns ? "; /reset starts the conversation over"
                                      : "; /reset starts the conversation over (or run with "
                                        "--drop-old-turns)");
    }
  }
  return 0;
}
