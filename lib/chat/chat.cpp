// Chat templates and multi-turn conversations.
//
// The formats are written out by hand (no Jinja engine): a model's Jinja template is only
// inspected for the markers that identify its family, as llama.cpp does.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "piquant/chat.hpp"
#include "piquant/error.hpp"

namespace piquant {
namespace {

using Json = nlohmann::ordered_json;

/// JSON as Python's json.dumps writes it (what Jinja's tojson gives in the models' templates):
/// ", " and ": " separators, or `indent` spaces per level; non-ASCII characters kept.
std::string py_json(const Json& j, int indent = -1, int level = 0) {
  const std::string nl = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent * (level + 1)), ' ');
  const std::string close = indent < 0 ? "" : "\n" + std::string(static_cast<size_t>(indent * level), ' ');
  const char* sep = indent < 0 ? ", " : ",";
  if (j.is_object()) {
    if (j.empty()) return "{}";
    std::string out = "{";
    bool first = true;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!first) out += sep;
      first = false;
      out += nl + Json(it.key()).dump() + ": " + py_json(it.value(), indent, level + 1);
    }
    return out + close + "}";
  }
  if (j.is_array()) {
    if (j.empty()) return "[]";
    std::string out = "[";
    for (size_t i = 0; i < j.size(); ++i) {
      if (i) out += sep;
      out += nl + py_json(j[i], indent, level + 1);
    }
    return out + close + "]";
  }
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json parse_tools(std::string_view tools_json) {
  Json tools;
  try {
    tools = Json::parse(tools_json);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kInvalidArgument, std::string("tools are not valid JSON: ") + e.what());
  }
  if (!tools.is_array()) throw Error(ErrorCode::kInvalidArgument, "tools: expected a JSON array");
  return tools;
}

/// A call's arguments as the templates write them: the JSON value (Python style), or the text
/// itself when it is not JSON.
std::string arguments_text(const std::string& arguments) {
  try {
    return py_json(Json::parse(arguments.empty() ? std::string("{}") : arguments));
  } catch (const nlohmann::json::parse_error&) {
    return arguments;
  }
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\n' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

/// {"name": "...", "<key>": {...}} (or "arguments" / "parameters" either way) as a ToolCall.
bool call_from_json(const std::string& text, ToolCall* call) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    return false;
  }
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  Json args = j.contains("arguments") ? j["arguments"] : j.contains("parameters") ? j["parameters"] : Json::object();
  if (args.is_string()) {  // some models write the arguments as a JSON string
    try {
      args = Json::parse(args.get<std::string>());
    } catch (const nlohmann::json::parse_error&) {
      return false;
    }
  }
  if (!args.is_object()) return false;
  call->name = j["name"].get<std::string>();
  call->arguments = args.dump(-1, ' ', false, Json::error_handler_t::replace);
  return true;
}

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

// Llama 3.1's JSON tool calling (its template with tools_in_user_message, the default): the
// declarations head the first user message, a call is {"name": ..., "parameters": ...}, tool
// results come back as "ipython" messages.
std::string render_llama3_tools(const std::vector<ChatMessage>& msgs, bool gen, const Json& tools) {
  std::string decl =
      "Given the following functions, please respond with a JSON for a function call with its "
      "proper arguments that best answers the given prompt.\n\nRespond in the format "
      "{\"name\": function name, \"parameters\": dictionary of argument name and its value}."
      "Do not use variables.\n\n";
  for (const Json& t : tools) decl += py_json(t, 4) + "\n\n";
  const bool has_user = std::any_of(msgs.begin(), msgs.end(), [](const ChatMessage& m) { return m.role == "user"; });
  std::string out = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n";
  if (!has_user) out += "\n" + decl;
  if (!msgs.empty() && msgs[0].role == "system") out += msgs[0].content;
  out += "<|eot_id|>";
  bool first_user = true;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (i == 0 && m.role == "system") continue;
    if (m.role == "tool") {
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        if (k) out += "\n";
        out += "{\"name\": " + Json(m.tool_calls[k].name).dump() +
               ", \"parameters\": " + arguments_text(m.tool_calls[k].arguments) + "}";
      }
      out += "<|eot_id|>";
    } else {
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
      if (m.role == "user" && first_user) {
        out += decl;
        first_user = false;
      }
      out += m.content + "<|eot_id|>";
    }
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Qwen 2.5's template: ChatML with a "# Tools" block in the system message, calls in
// <tool_call></tool_call>, tool results as <tool_response> blocks in a user turn.
std::string render_qwen_tools(const std::vector<ChatMessage>& msgs, bool gen, const Json& tools) {
  std::string out = "<|im_start|>system\n";
  if (!msgs.empty() && msgs[0].role == "system") out += msgs[0].content + "\n\n";
  out += "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
         "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
  for (const Json& t : tools) out += "\n" + py_json(t);
  out += "\n</tools>\n\nFor each function call, return a json object with function name and "
         "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
         "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (i == 0 && m.role == "system") continue;
    if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "<|im_start|>assistant";
      if (!m.content.empty()) out += "\n" + m.content;
      for (const ToolCall& c : m.tool_calls) {
        out += "\n<tool_call>\n{\"name\": " + Json(c.name).dump() +
               ", \"arguments\": " + arguments_text(c.arguments) + "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// Formats without a tool syntax of their own: the declarations and the answer format go into
// the system prompt, calls are written as their JSON, results as user messages.
std::vector<ChatMessage> generic_tools(const std::vector<ChatMessage>& msgs, const Json& tools) {
  std::vector<ChatMessage> out;
  std::string sys;
  size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    sys = msgs[0].content + "\n\n";
    first = 1;
  }
  if (!tools.empty()) {
    sys += "You can call these functions:\n";
    for (const Json& t : tools) sys += py_json(t) + "\n";
    sys += "To call one, answer with only a JSON object {\"name\": function name, \"arguments\": "
           "an object of its arguments}.";
  }
  if (!sys.empty()) out.push_back({"system", sys});
  for (size_t i = first; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "tool") {
      out.push_back({"user", "Result of " + (m.name.empty() ? std::string("the call") : m.name) +
                                 " (" + m.tool_call_id + "): " + m.content});
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      std::string text = m.content;
      for (const ToolCall& c : m.tool_calls) {
        if (!text.empty()) text += "\n";
        text += "{\"name\": " + Json(c.name).dump() + ", \"arguments\": " + arguments_text(c.arguments) + "}";
      }
      out.push_back({"assistant", text});
    } else {
      out.push_back({m.role, m.content});
    }
  }
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
  return render(msgs, gen, {});
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& in, bool gen,
                                 std::string_view tools_json) const {
  bool tool_turns = false;
  for (const ChatMessage& m : in) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      throw Error(ErrorCode::kInvalidArgument, "chat message with unknown role '" + m.role +
                                                   "' (system, user, assistant or tool)");
    }
    tool_turns = tool_turns || m.role == "tool" || !m.tool_calls.empty();
  }
  const Json tools = tools_json.empty() ? Json::array() : parse_tools(tools_json);
  if (format_ == ChatFormat::kLlama3 && (!tools.empty() || tool_turns)) {
    return render_llama3_tools(in, gen, tools);
  }
  if (format_ == ChatFormat::kChatML && (!tools.empty() || tool_turns)) {
    return render_qwen_tools(in, gen, tools);
  }
  std::vector<ChatMessage> generic;
  if (!tools.empty() || tool_turns) generic = generic_tools(in, tools);
  const std::vector<ChatMessage>& msgs = !tools.empty() || tool_turns ? generic : in;
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

ToolCallFormat ChatTemplate::tool_call_format() const {
  ToolCallFormat f;
  if (format_ == ChatFormat::kChatML) {
    f.prefix = "<tool_call>\n";
    f.suffix = "\n</tool_call>";
  } else if (format_ == ChatFormat::kLlama3) {
    f.arguments_key = "parameters";
  }
  return f;
}

std::vector<std::string> ChatTemplate::tool_call_triggers() const {
  if (format_ == ChatFormat::kChatML) return {"<tool_call>"};
  if (format_ == ChatFormat::kLlama3) return {"{", "<|python_tag|>"};
  return {"{"};
}

bool ChatTemplate::parse_tool_calls(std::string_view text, std::vector<ToolCall>* calls,
                                    std::string* content) const {
  std::vector<ToolCall> found;
  std::string before;
  if (format_ == ChatFormat::kChatML) {
    const std::string_view open = "<tool_call>", close = "</tool_call>";
    size_t at = text.find(open);
    if (at == std::string_view::npos) return false;
    before = trim(text.substr(0, at));
    while (at != std::string_view::npos) {
      const size_t b = at + open.size();
      const size_t e = text.find(close, b);
      if (e == std::string_view::npos) return false;
      ToolCall c;
      if (!call_from_json(trim(text.substr(b, e - b)), &c)) return false;
      found.push_back(std::move(c));
      const std::string rest = trim(text.substr(e + close.size()));
      if (rest.empty()) break;
      at = text.find(open, e + close.size());
      if (at == std::string_view::npos || !trim(text.substr(e + close.size(), at - e - close.size())).empty()) {
        return false;  // text between or after the calls
      }
    }
  } else {
    std::string t = trim(text);
    const std::string tag = "<|python_tag|>";
    if (format_ == ChatFormat::kLlama3 && t.rfind(tag, 0) == 0) t = trim(t.substr(tag.size()));
    ToolCall c;
    if (!call_from_json(t, &c)) return false;
    found.push_back(std::move(c));
  }
  *calls = std::move(found);
  if (content) *content = before;
  return true;
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
