#pragma once
/// \file piquant/chat.hpp
/// Chat templates (Llama 2, Llama 3, ChatML, Mistral, EXAONE) and a multi-turn Conversation that
/// keeps its KV cache across turns. Templates also write OpenAI-style tool declarations, tool
/// calls and tool results in each family's format (Llama 3.1's JSON calls, Qwen 2.5's
/// <tool_call> in ChatML) and parse a model's tool calls back.
#include <string>
#include <string_view>
#include <vector>

#include "piquant/session.hpp"

namespace piquant {

/// One call of a function by the assistant (OpenAI's message.tool_calls[i]).
struct ToolCall {
  std::string id;         ///< e.g. "call_1_0"; a "tool" message answers it by this id
  std::string name;       ///< the function
  std::string arguments;  ///< JSON text (an object)
};

struct ChatMessage {
  std::string role;  ///< "system", "user", "assistant" or "tool"
  std::string content;
  std::vector<ToolCall> tool_calls = {};  ///< assistant: the calls it made
  std::string tool_call_id = {};          ///< tool: the id of the call this is the result of
  std::string name = {};                  ///< tool: the function's name (optional)
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
  /// The same with tool declarations (an OpenAI `tools` JSON array as text; empty: none) written
  /// where the family expects them: Llama 3 (3.1's JSON tool calling) in the first user message,
  /// ChatML as Qwen 2.5 does (a "# Tools" block with <tools></tools> in the system message),
  /// the other formats in the system prompt with an instruction to answer with a JSON call.
  /// Assistant messages with tool_calls and "tool" messages are rendered in the same format.
  /// Throws kInvalidArgument for malformed tools JSON.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     std::string_view tools_json) const;
  /// How this format writes one tool call (for grammar_from_tools): ChatML (Qwen 2.5)
  /// "<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>"; Llama 3
  /// {"name": ..., "parameters": ...}; others {"name": ..., "arguments": ...}.
  ToolCallFormat tool_call_format() const;
  /// Texts that begin a tool call in a reply (tool_choice "auto" constrains the reply once it
  /// starts with one, leading whitespace aside): "<tool_call>" for ChatML, "{" and
  /// "<|python_tag|>" for Llama 3, "{" for the others.
  std::vector<std::string> tool_call_triggers() const;
  /// Parses a reply written in this format's tool-call syntax (Llama 3's optionally after
  /// <|python_tag|>; ChatML's one or more <tool_call> blocks, any text before them goes to
  /// `content`). Returns false, changing nothing, when the text is not such a call. Ids are
  /// left empty (the caller assigns them); arguments become compact JSON text.
  bool parse_tool_calls(std::string_view text, std::vector<ToolCall>* calls,
                        std::string* content = nullptr) const;
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
