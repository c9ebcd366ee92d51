#pragma once
/// \file piquant/chat.hpp
/// Chat templates (Llama 2, Llama 3, ChatML, Mistral, EXAONE) and a multi-turn Conversation that
/// keeps its KV cache across turns.
#include <string>
#include <string_view>
#include <vector>

#include "piquant/session.hpp"

namespace piquant {

struct ChatMessage {
  std::string role;  ///< "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { kLlama2, kLlama3, kChatML, kMistral, kExaone, kPlain };

class ChatTemplate {
 public:
  /// Recognises the format of a Jinja chat template (GGUF `tokenizer.chat_template`, or
  /// tokenizer_config.json's) by its markers. Empty or unrecognised: ChatML when the vocabulary
  /// has `<|im_start|>`, else kPlain ("User: ...\nAssistant:").
  static ChatTemplate detect(std::string_view jinja, const Tokenizer* tokenizer = nullptr);
  /// By name: llama2, llama3, chatml, mistral, exaone, plain. Throws kInvalidArgument otherwise.
  static ChatTemplate by_name(std::string_view name);
  explicit ChatTemplate(ChatFormat format) : format_(format) {}

  ChatFormat format() const { return format_; }
  const char* name() const;
  /// The whole conversation as the model expects it; with add_generation_prompt, ending where
  /// the assistant's reply begins. Includes the BOS text ("<s>", "<|begin_of_text|>") where the
  /// format has one: encode it with parse_special and without add_bos.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  /// Text that ends an assistant turn in this format ("<|eot_id|>", "<|im_end|>", ...): a stop
  /// string for models whose tokenizer lacks it as a special token.
  std::string end_of_turn() const;

 private:
  ChatFormat format_;
};

struct ConversationOptions {
  std::string system_prompt;  ///< empty: none
  /// When a turn would overflow the context: drop the oldest turns (keeping the system prompt)
  /// and re-evaluate what is left. false: throw Error(kContextFull).
  bool drop_oldest_turns = false;
};

/// A chat on one Session: each send() renders the new turn with the template, evaluates only
/// the new tokens (the KV cache keeps the earlier turns), and generates the reply.
class Conversation {
 public:
  Conversation(Session& session, ChatTemplate chat_template, ConversationOptions options = {});

  /// Adds a user message, generates the assistant's reply (streamed through on_piece) and adds
  /// it to the history. Throws Error(kContextFull) with a clear message when the turn does not
  /// fit and drop_oldest_turns is off.
  GenerateResult send(std::string_view user_message, const PieceCallback& on_piece,
                      GenerateOptions options = {});
  const std::vector<ChatMessage>& messages() const { return messages_; }
  /// Turns dropped so far to make room (drop_oldest_turns).
  int dropped_turns() const { return dropped_; }
  /// Forgets the turns (the system prompt stays). The session keeps its cache: the next send
  /// evaluates again only what follows the tokens it shares with it (the system prompt).
  void reset();

 private:
  /// Tokens of `text` rendered at the start of the cache (at_start) or after it.
  std::vector<TokenId> encode(const std::string& text, bool at_start) const;

  Session& session_;
  ChatTemplate template_;
  ConversationOptions options_;
  std::vector<ChatMessage> messages_;
  std::string rendered_;  ///< the text whose tokens are in the KV cache
  std::vector<TokenId> cached_;  ///< those tokens (session_ positions 0 .. size)
  int dropped_ = 0;
};

}  // namespace piquant
