// Chat templates and multi-turn conversations.
//
// The formats are written out by hand (no Jinja engine): a model's Jinja template is only
// inspected for the markers that identify its family, as llama.cpp does.
#include <algorithm>

#include "piquant/chat.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

bool contains(std::string_view s, std::string_view what) {
  return s.find(what) != std::string_view::npos;
}

const std::string& system_of(const std::vector<ChatMessage>& m) {
  static const std::string kNone;
  return !m.empty() && m[0].role == "system" ? m[0].content : kNone;
}

// Llama 2: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ..."
// Mistral: the same without the <<SYS>> block; a system prompt is prepended to the first user
// message, and "</s>" is not followed by another "<s>". Both end where the reply begins.
std::string render_inst(const std::vector<ChatMessage>& msgs, bool llama2) {
  std::string out;
  const std::string& sys = system_of(msgs);
  bool first_user = true;
  for (const ChatMessage& m : msgs) {
    if (m.role == "system") continue;
    if (m.role == "user") {
      if (llama2 || first_user) out += "<s>";
      out += "[INST] ";
      if (first_user && !sys.empty()) {
        out += llama2 ? "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" : sys + "\n\n";
      }
      out += m.content + " [/INST]";
      first_user = false;
    } else {
      // The model's reply usually starts with its own space: keep the text as generated.
      out += (!m.content.empty() && m.content[0] == ' ' ? "" : " ") + m.content + "</s>";
    }
  }
  return out;
}

std::string render_llama3(const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out = "<|begin_of_text|>";
  for (const ChatMessage& m : msgs) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_chatml(const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  for (const ChatMessage& m : msgs) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// EXAONE 3.x: "[|system|]{s}[|endofturn|]\n[|user|]{u}\n[|assistant|]{a}[|endofturn|]\n".
std::string render_exaone(const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  for (const ChatMessage& m : msgs) {
    if (m.role == "system") out += "[|system|]" + m.content + "[|endofturn|]\n";
    else if (m.role == "user") out += "[|user|]" + m.content + "\n";
    else out += "[|assistant|]" + m.content + "[|endofturn|]\n";
  }
  if (gen) out += "[|assistant|]";
  return out;
}

std::string render_plain(const std::vector<ChatMessage>& msgs, bool gen) {
  std::string out;
  for (const ChatMessage& m : msgs) {
    if (m.role == "system") out += m.content + "\n\n";
    else if (m.role == "user") out += "User: " + m.content + "\n";
    else out += "Assistant:" + m.content + "\n";
  }
  if (gen) out += "Assistant:";
  return out;
}

}  // namespace

ChatTemplate ChatTemplate::detect(std::string_view j, const Tokenizer* tok) {
  if (contains(j, "<|start_header_id|>")) return ChatTemplate(ChatFormat::kLlama3);
  if (contains(j, "<|im_start|>")) return ChatTemplate(ChatFormat::kChatML);
  if (contains(j, "[|system|]") || contains(j, "[|endofturn|]")) {
    return ChatTemplate(ChatFormat::kExaone);
  }
  if (contains(j, "[INST]")) {
    return ChatTemplate(contains(j, "<<SYS>>") ? ChatFormat::kLlama2 : ChatFormat::kMistral);
  }
  if (tok != nullptr) {
    if (tok->find("<|start_header_id|>") >= 0) return ChatTemplate(ChatFormat::kLlama3);
    if (tok->find("<|im_start|>") >= 0) return ChatTemplate(ChatFormat::kChatML);
    if (tok->find("[|endofturn|]") >= 0) return ChatTemplate(ChatFormat::kExaone);
  }
  return ChatTemplate(ChatFormat::kPlain);
}

ChatTemplate ChatTemplate::by_name(std::string_view name) {
  static const std::pair<const char*, ChatFormat> kNames[] = {
      {"llama2", ChatFormat::kLlama2}, {"llama3", ChatFormat::kLlama3},
      {"chatml", ChatFormat::kChatML}, {"mistral", ChatFormat::kMistral},
      {"exaone", ChatFormat::kExaone}, {"plain", ChatFormat::kPlain}};
  for (const auto& [n, f] : kNames) {
    if (name == n) return ChatTemplate(f);
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown chat template '" + std::string(name) +
                  "' (known: llama2, llama3, chatml, mistral, exaone, plain)");
}

const char* ChatTemplate::name() const {
  switch (format_) {
    case ChatFormat::kLlama2: return "llama2";
    case ChatFormat::kLlama3: return "llama3";
    case ChatFormat::kChatML: return "chatml";
    case ChatFormat::kMistral: return "mistral";
    case ChatFormat::kExaone: return "exaone";
    case ChatFormat::kPlain: return "plain";
  }
  return "?";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool gen) const {
  for (const ChatMessage& m : msgs) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      throw Error(ErrorCode::kInvalidArgument, "chat message with unknown role '" + m.role +
                                                   "' (system, user or assistant)");
    }
  }
  switch (format_) {
    case ChatFormat::kLlama2: return render_inst(msgs, true);
    case ChatFormat::kMistral: return render_inst(msgs, false);
    case ChatFormat::kLlama3: return render_llama3(msgs, gen);
    case ChatFormat::kChatML: return render_chatml(msgs, gen);
    case ChatFormat::kExaone: return render_exaone(msgs, gen);
    case ChatFormat::kPlain: return render_plain(msgs, gen);
  }
  return {};
}

std::string ChatTemplate::end_of_turn() const {
  switch (format_) {
    case ChatFormat::kLlama2:
    case ChatFormat::kMistral: return "</s>";
    case ChatFormat::kLlama3: return "<|eot_id|>";
    case ChatFormat::kChatML: return "<|im_end|>";
    case ChatFormat::kExaone: return "[|endofturn|]";
    case ChatFormat::kPlain: return "\nUser:";
  }
  return {};
}

// --- Conversation -------------------------------------------------------------------------

Conversation::Conversation(Session& session, ChatTemplate chat_template,
                           ConversationOptions options)
    : session_(session), template_(chat_template), options_(std::move(options)) {
  reset();
}

void Conversation::reset() {
  messages_.clear();
  if (!options_.system_prompt.empty()) messages_.push_back({"system", options_.system_prompt});
  rendered_.clear();  // the next send renders from the start and reuses the shared prefix
  dropped_ = 0;
}

std::vector<TokenId> Conversation::encode(const std::string& text, bool at_start) const {
  const Tokenizer& tok = session_.model().tokenizer();
  EncodeOptions eo;
  eo.parse_special = true;
  // Formats that write BOS as text ("<s>", "<|begin_of_text|>") get it from there; otherwise the
  // tokenizer's own convention applies at the start of the cache only.
  const bool text_has_bos =
      tok.bos_id() >= 0 && text.rfind(tok.piece(tok.bos_id()), 0) == 0;
  if (!at_start || text_has_bos) eo.add_bos = false;
  return tok.encode(text, eo);
}

GenerateResult Conversation::send(std::string_view user_message, const PieceCallback& on_piece,
                                  GenerateOptions options) {
  messages_.push_back({"user", std::string(user_message)});
  const int n_ctx = session_.n_ctx();
  std::vector<TokenId> ids;
  std::string full;
  for (;;) {
    full = template_.render(messages_, true);
    // (A session moved on by someone else since the last turn holds something else.)
    if (rendered_.empty() || session_.position() != static_cast<int>(cached_.size()) ||
        full.compare(0, rendered_.size(), rendered_) != 0) {
      // First turn, or the history changed (reset, dropped turns): the whole text again, but
      // the tokens it shares from the start with the cache (the system prompt at least) stay
      // there. One token at least is evaluated, for the logits of the reply's first token.
      const std::vector<TokenId> all = encode(full, true);
      if (session_.position() != static_cast<int>(cached_.size())) cached_.clear();  // not ours
      size_t keep = 0;
      while (keep < cached_.size() && keep + 1 < all.size() && cached_[keep] == all[keep]) ++keep;
      session_.rewind(static_cast<int>(keep));
      cached_.resize(keep);
      ids.assign(all.begin() + static_cast<std::ptrdiff_t>(keep), all.end());
      rendered_.clear();
    } else {
      ids = encode(full.substr(rendered_.size()), session_.position() == 0);
    }
    // Room for the new tokens and at least one reply token.
    if (session_.position() + static_cast<int>(ids.size()) < n_ctx) break;
    const size_t first = !messages_.empty() && messages_[0].role == "system" ? 1 : 0;
    // Would the new message fit on its own (with the system prompt)?
    std::vector<ChatMessage> alone(messages_.begin(), messages_.begin() + static_cast<long>(first));
    alone.push_back(messages_.back());
    const size_t alone_tokens = session_.model().tokenizer().encode(
        template_.render(alone, true), EncodeOptions{std::nullopt, true}).size();
    if (alone_tokens >= static_cast<size_t>(n_ctx) || !options_.drop_oldest_turns) {
      messages_.pop_back();
      const std::string why =
          alone_tokens >= static_cast<size_t>(n_ctx)
              ? "the message (" + std::to_string(alone_tokens) +
                    " tokens with the template) does not fit the context of " +
                    std::to_string(n_ctx) + " tokens"
              : "the conversation has reached the context length (" +
                    std::to_string(session_.position()) + " of " + std::to_string(n_ctx) +
                    " tokens in use, the new turn needs " + std::to_string(ids.size()) +
                    "): start a new conversation or enable dropping the oldest turns";
      throw Error(ErrorCode::kContextFull, why);
    }
    // Drop the oldest user turn and the reply that followed it.
    auto begin = messages_.begin() + static_cast<std::ptrdiff_t>(first);
    auto end = begin + 1;
    if (end != messages_.end() && end->role == "assistant" && end + 1 != messages_.end()) ++end;
    messages_.erase(begin, end);
    ++dropped_;
    rendered_.clear();
  }
  options.stop.push_back(template_.end_of_turn());
  options.encode.add_bos = false;
  // Streams text, holding back anything that could be the start of a stop string (the
  // template's end of turn among them). Session::generate continues the prompt's text; a reply
  // is a message of its own, so one space at its very start is dropped (as a SentencePiece
  // decode of the reply alone does: "[/INST]" is followed by "▁Hello").
  bool at_start = true;
  GenerateResult r = session_.generate(ids, [&](std::string_view piece) {
    if (at_start) {
      at_start = false;
      if (piece.front() == ' ') piece.remove_prefix(1);
      if (piece.empty()) return true;
    }
    return !on_piece || on_piece(piece);
  }, options);
  if (!r.text.empty() && r.text.front() == ' ') r.text.erase(0, 1);
  // The KV cache holds the prompt and every generated token but the last one sampled (which
  // ended the reply: end of generation, a stop string, the token limit or a full context).
  std::vector<TokenId> evaluated = r.generated_ids;
  if (!evaluated.empty()) evaluated.pop_back();
  rendered_ = full + session_.model().tokenizer().decode(evaluated);
  cached_.insert(cached_.end(), ids.begin(), ids.end());
  cached_.insert(cached_.end(), evaluated.begin(), evaluated.end());
  messages_.push_back({"assistant", r.text});
  return r;
}

}  // namespace piquant
