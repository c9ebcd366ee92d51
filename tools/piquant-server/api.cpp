#include "api.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <optional>
#include <cstdio>
#include <random>
#include <sstream>

#include "chat_page.hpp"
#include "http_pool.hpp"

namespace piquant::server {

using json = nlohmann::json;

namespace {

/// JSON text; bytes that are not valid UTF-8 (a model can emit them) become U+FFFD.
std::string dumps(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// A request the client got wrong: answered with `status` and an OpenAI-shaped error.
struct ApiError {
  int status;
  std::string message;
  std::string type = "invalid_request_error";
};

void send_error(httplib::Response& res, int status, const std::string& message,
                const std::string& type) {
  res.status = status;
  const json body = {{"error", {{"message", message}, {"type", type}, {"code", status}}}};
  res.set_content(dumps(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_error(res, e.status, e.message, e.type);
}

[[noreturn]] void bad(const std::string& message) { throw ApiError{400, message}; }

json parse_body(const httplib::Request& req) {
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::parse_error& e) {
    bad(std::string("the request body is not valid JSON: ") + e.what());
  }
  return body;
}

void require_object(const json& body) {
  if (!body.is_object()) bad("the request body must be a JSON object");
}

/// The field's value if present and not null, checked to be a number.
bool get_number(const json& body, const char* key, double* out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_number()) bad(std::string("'") + key + "' must be a number");
  *out = it->get<double>();
  if (!std::isfinite(*out)) bad(std::string("'") + key + "' must be finite");
  return true;
}

bool get_int(const json& body, const char* key, int64_t* out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (d != std::floor(d) || std::fabs(d) > 9e15) {
      bad(std::string("'") + key + "' must be an integer");
    }
    *out = static_cast<int64_t>(d);
    return true;
  }
  if (!it->is_number_integer()) bad(std::string("'") + key + "' must be an integer");
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    *out = INT64_MAX;
    return true;
  }
  *out = it->get<int64_t>();
  return true;
}

bool get_bool(const json& body, const char* key, bool fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad(std::string("'") + key + "' must be true or false");
  return it->get<bool>();
}

void check_range(const char* key, double v, double lo, double hi) {
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << "'" << key << "' must be between " << lo << " and " << hi << ", got " << v;
    bad(os.str());
  }
}

/// "content": a string, or OpenAI's array of parts (the text parts are joined).
std::string message_content(const json& m, size_t i) {
  const auto it = m.find("content");
  if (it == m.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string text;
    for (const json& part : *it) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        bad("messages[" + std::to_string(i) + "].content: only text parts are supported");
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  bad("messages[" + std::to_string(i) + "].content must be a string or an array of text parts");
}

std::string now_id(const char* prefix, uint64_t n) { return std::string(prefix) + std::to_string(n); }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string sse(const json& j) { return "data: " + dumps(j) + "\n\n"; }

/// o[key] if it is a string, else "".
std::string string_field(const json& o, const char* key) {
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// OpenAI's rule for function names: ^[a-zA-Z0-9_-]{1,64}$.
bool valid_function_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

/// An assistant message's "tool_calls" (OpenAI's shape) as ToolCalls.
std::vector<ToolCall> message_tool_calls(const json& m, size_t i) {
  std::vector<ToolCall> out;
  const auto it = m.find("tool_calls");
  if (it == m.end() || it->is_null()) return out;
  const std::string at = "messages[" + std::to_string(i) + "].tool_calls";
  if (!it->is_array()) bad(at + " must be an array");
  for (size_t k = 0; k < it->size(); ++k) {
    const json& c = (*it)[k];
    const std::string where = at + "[" + std::to_string(k) + "]";
    if (!c.is_object()) bad(where + " must be an object");
    if (!c.contains("id") || !c["id"].is_string() || c["id"].get<std::string>().empty()) {
      bad(where + ".id must be a non-empty string");
    }
    if (c.contains("type") && c["type"] != "function") bad(where + ".type must be \"function\"");
    if (!c.contains("function") || !c["function"].is_object()) bad(where + ".function must be an object");
    const json& f = c["function"];
    if (!f.contains("name") || !f["name"].is_string()) bad(where + ".function.name must be a string");
    ToolCall call;
    call.id = c["id"].get<std::string>();
    call.name = f["name"].get<std::string>();
    if (f.contains("arguments") && !f["arguments"].is_null()) {
      if (f["arguments"].is_string()) {
        call.arguments = f["arguments"].get<std::string>();
      } else if (f["arguments"].is_object()) {
        call.arguments = dumps(f["arguments"]);
      } else {
        bad(where + ".function.arguments must be a string (JSON text)");
      }
    }
    out.push_back(std::move(call));
  }
  return out;
}

enum class ToolChoice { kNone, kAuto, kRequired, kNamed };

}  // namespace

Api::Api(std::shared_ptr<const Model> model, Engine& engine, std::vector<LoadedAdapter> adapters,
         ApiOptions options)
    : model_(std::move(model)), engine_(engine), opt_(std::move(options)),
      adapters_(std::move(adapters)) {
  if (opt_.max_tokens_limit <= 0) opt_.max_tokens_limit = engine_.n_ctx();
}

bool Api::authorized(const httplib::Request& req) const {
  if (opt_.api_key.empty()) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  const std::string given = h.compare(0, prefix.size(), prefix) == 0 ? h.substr(prefix.size()) : "";
  // Constant time: every byte of the key is compared whatever the given key is.
  const std::string& key = opt_.api_key;
  unsigned diff = given.size() == key.size() ? 0u : 1u;
  for (size_t i = 0; i < key.size(); ++i) {
    diff |= static_cast<unsigned char>(key[i]) ^
            static_cast<unsigned char>(i < given.size() ? given[i] : 0);
  }
  return diff == 0;
}

void Api::install(httplib::Server& server) {
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (refusing_connection()) {  // over --threads-http: refused at once, the connection closes
      res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      send_error(res, 503, "too many connections at once (--threads-http): try again", "server_error");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!opt_.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", opt_.cors_origin);
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      if (req.method == "OPTIONS") {
        res.status = 204;
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (req.path == "/health" || (req.path == "/" && req.method == "GET")) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (!authorized(req)) {
      send_error(res, 401, "invalid or missing API key (Authorization: Bearer KEY)",
                 "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 404) {
      send_error(res, 404, "unknown path: " + req.method + " " + req.path, "not_found_error");
    } else if (res.status == 413) {
      send_error(res, 413, "the request body is too large", "invalid_request_error");
    } else {
      send_error(res, res.status, "HTTP error " + std::to_string(res.status),
                 "invalid_request_error");
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  auto guard = [](auto fn) {
    return [fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const Error& e) {
        send_error(res, e.code() == ErrorCode::kInternal ? 500 : 400, e.what(),
                   e.code() == ErrorCode::kInternal ? "server_error" : "invalid_request_error");
      } catch (const std::exception& e) {
        send_error(res, 500, e.what(), "server_error");
      }
    };
  };
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPage, "text/html; charset=utf-8");
  });
  server.Post("/v1/chat/completions", guard([this](const auto& q, auto& r) { completions(q, r, true); }));
  server.Post("/chat/completions", guard([this](const auto& q, auto& r) { completions(q, r, true); }));
  server.Post("/v1/completions", guard([this](const auto& q, auto& r) { completions(q, r, false); }));
  server.Post("/completions", guard([this](const auto& q, auto& r) { completions(q, r, false); }));
  server.Post("/tokenize", guard([this](const auto& q, auto& r) { tokenize(q, r); }));
  server.Post("/detokenize", guard([this](const auto& q, auto& r) { detokenize(q, r); }));
  server.Get("/v1/models", guard([this](const auto&, auto& r) { models(r); }));
  server.Get("/models", guard([this](const auto&, auto& r) { models(r); }));
  server.Get("/health", guard([this](const auto&, auto& r) { health(r); }));
  server.Get("/metrics", guard([this](const auto&, auto& r) { metrics(r); }));
  server.Get("/lora-adapters", guard([this](const auto&, auto& r) { get_adapters(r); }));
  server.Post("/lora-adapters", guard([this](const auto& q, auto& r) { set_adapters(q, r); }));
}

void Api::completions(const httplib::Request& req, httplib::Response& res, bool chat) {
  const json body = parse_body(req);
  require_object(body);
  const Tokenizer& tok = model_->tokenizer();
  GenRequest g;
  // The body with its objects' keys in the order written (json sorts them): a schema's
  // properties are generated in their declared order, tools declared as given.
  std::optional<nlohmann::ordered_json> ordered;
  auto ordered_body = [&]() -> const nlohmann::ordered_json& {
    if (!ordered) ordered = nlohmann::ordered_json::parse(req.body);
    return *ordered;
  };
  std::string tools_text;  // the request's tools (JSON text), empty: none
  std::vector<std::string> tool_names;
  ToolChoice choice = ToolChoice::kNone;
  std::string named;

  // The prompt.
  if (chat) {
    const auto it = body.find("messages");
    if (it == body.end() || !it->is_array()) bad("'messages' must be an array of messages");
    if (it->empty()) bad("'messages' must not be empty");
    std::vector<ChatMessage> messages;
    std::vector<std::string> call_ids;  // of the earlier assistant messages' tool calls
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      if (!m.is_object()) bad("messages[" + std::to_string(i) + "] must be an object");
      const auto role = m.find("role");
      if (role == m.end() || !role->is_string()) {
        bad("messages[" + std::to_string(i) + "].role must be a string");
      }
      const std::string r = role->get<std::string>();
      if (r != "system" && r != "user" && r != "assistant" && r != "developer" && r != "tool") {
        bad("messages[" + std::to_string(i) + "].role '" + r +
            "' is not one of system, developer, user, assistant, tool");
      }
      ChatMessage cm{r == "developer" ? "system" : r, message_content(m, i)};
      if (r == "assistant") {
        cm.tool_calls = message_tool_calls(m, i);
        for (const ToolCall& c : cm.tool_calls) call_ids.push_back(c.id);
      } else if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
        bad("messages[" + std::to_string(i) + "]: only assistant messages carry 'tool_calls'");
      }
      if (r == "tool") {
        const auto id = m.find("tool_call_id");
        if (id == m.end() || !id->is_string()) {
          bad("messages[" + std::to_string(i) + "]: a tool message needs 'tool_call_id' (a string)");
        }
        cm.tool_call_id = id->get<std::string>();
        if (std::find(call_ids.begin(), call_ids.end(), cm.tool_call_id) == call_ids.end()) {
          bad("messages[" + std::to_string(i) + "].tool_call_id '" + cm.tool_call_id +
              "' matches no tool call of an earlier assistant message");
        }
        if (const auto n = m.find("name"); n != m.end() && n->is_string()) cm.name = n->get<std::string>();
        if (cm.name.empty()) {  // the function's name, from the call answered
          for (const ChatMessage& prev : messages) {
            for (const ToolCall& c : prev.tool_calls) {
              if (c.id == cm.tool_call_id) cm.name = c.name;
            }
          }
        }
      }
      messages.push_back(std::move(cm));
    }

    // Tools: declared in the prompt by the template; the call constrained by a grammar.
    if (const auto t = body.find("tools"); t != body.end() && !t->is_null()) {
      if (!t->is_array()) bad("'tools' must be an array of {\"type\": \"function\", \"function\": {...}}");
      for (size_t k = 0; k < t->size(); ++k) {
        const json& tool = (*t)[k];
        const std::string where = "tools[" + std::to_string(k) + "]";
        if (!tool.is_object() || string_field(tool, "type") != "function") {
          bad(where + " must be {\"type\": \"function\", \"function\": {...}}");
        }
        if (!tool.contains("function") || !tool["function"].is_object()) bad(where + ".function must be an object");
        const json& f = tool["function"];
        if (!f.contains("name") || !f["name"].is_string() || !valid_function_name(f["name"].get<std::string>())) {
          bad(where + ".function.name must be 1-64 letters, digits, '_' or '-'");
        }
        if (f.contains("parameters") && !f["parameters"].is_object()) {
          bad(where + ".function.parameters must be a JSON Schema object");
        }
        tool_names.push_back(f["name"].get<std::string>());
      }
      if (!t->empty()) tools_text = ordered_body()["tools"].dump();
    }
    if (const auto c = body.find("tool_choice"); c != body.end() && !c->is_null()) {
      const std::string expected =
          "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
          "\"function\": {\"name\": NAME}}";
      if (c->is_string()) {
        const std::string v = c->get<std::string>();
        if (v == "none") choice = ToolChoice::kNone;
        else if (v == "auto") choice = ToolChoice::kAuto;
        else if (v == "required") choice = ToolChoice::kRequired;
        else bad(expected + ", got \"" + v + "\"");
      } else if (c->is_object() && string_field(*c, "type") == "function" && c->contains("function") &&
                 (*c)["function"].is_object() && (*c)["function"].contains("name") &&
                 (*c)["function"]["name"].is_string()) {
        choice = ToolChoice::kNamed;
        named = (*c)["function"]["name"].get<std::string>();
      } else {
        bad(expected);
      }
      if (choice != ToolChoice::kNone && tools_text.empty()) {
        bad("'tool_choice' asks for a tool call but no 'tools' are declared");
      }
      if (choice == ToolChoice::kNamed &&
          std::find(tool_names.begin(), tool_names.end(), named) == tool_names.end()) {
        bad("'tool_choice' names the function '" + named + "', which is not among 'tools'");
      }
    } else {
      choice = tools_text.empty() ? ToolChoice::kNone : ToolChoice::kAuto;  // OpenAI's defaults
    }
    if (choice != ToolChoice::kNone) {
      try {
        g.grammar = grammar_from_tools(tools_text, opt_.chat_template.tool_call_format(),
                                       choice == ToolChoice::kNamed ? named : std::string());
      } catch (const Error& e) {
        bad(e.what());
      }
      if (choice == ToolChoice::kAuto) g.grammar_triggers = opt_.chat_template.tool_call_triggers();
    }
    const std::string text = opt_.chat_template.render(messages, true, tools_text);
    // As piquant::Conversation: formats that write BOS as text ("<s>", "<|begin_of_text|>")
    // get it from there, otherwise the tokenizer's own convention applies.
    EncodeOptions eo;
    eo.parse_special = true;
    if (tok.bos_id() >= 0 && text.rfind(tok.piece(tok.bos_id()), 0) == 0) eo.add_bos = false;
    g.prompt = tok.encode(text, eo);
    const std::string eot = opt_.chat_template.end_of_turn();
    if (!eot.empty()) g.stop.push_back(eot);
  } else {
    for (const char* key : {"tools", "tool_choice"}) {
      if (body.contains(key) && !body[key].is_null()) {
        bad(std::string("'") + key + "' is for /v1/chat/completions only");
      }
    }
    const auto it = body.find("prompt");
    if (it == body.end() || it->is_null()) bad("'prompt' is required");
    json p = *it;
    if (p.is_array() && p.size() == 1 && p[0].is_string()) p = p[0];
    if (p.is_string()) {
      g.prompt = tok.encode(p.get<std::string>());
    } else if (p.is_array()) {
      const int64_t n_vocab = model_->config().vocab_size;
      for (size_t i = 0; i < p.size(); ++i) {
        if (!p[i].is_number_integer()) {
          bad("'prompt' must be a string, or an array of token ids (integers)");
        }
        const int64_t id = p[i].get<int64_t>();
        if (id < 0 || id >= n_vocab) {
          bad("prompt token " + std::to_string(id) + " at index " + std::to_string(i) +
              " is outside the vocabulary (0.." + std::to_string(n_vocab - 1) + ")");
        }
        g.prompt.push_back(static_cast<TokenId>(id));
      }
    } else {
      bad("'prompt' must be a string, or an array of token ids (integers)");
    }
  }
  if (g.prompt.empty()) bad("the prompt is empty (no tokens)");
  const int n_ctx = engine_.n_ctx();
  if (static_cast<int64_t>(g.prompt.size()) >= n_ctx) {
    bad("the prompt is " + std::to_string(g.prompt.size()) +
        " tokens, which leaves no room for a reply in the context of " + std::to_string(n_ctx) +
        " tokens per slot (-c)");
  }

  // Sampling.
  const GenerationDefaults& d = model_->generation_defaults();
  SamplerOptions& s = g.sampler;
  if (d.has_temperature) s.temperature = d.temperature;
  if (d.has_top_p) s.top_p = d.top_p;
  if (d.has_top_k) s.top_k = d.top_k;
  if (d.has_min_p) s.min_p = d.min_p;
  double v = 0;
  int64_t n = 0;
  if (get_number(body, "temperature", &v)) {
    check_range("temperature", v, 0, 100);
    s.temperature = static_cast<float>(v);
  }
  if (get_number(body, "top_p", &v)) {
    check_range("top_p", v, 0, 1);
    s.top_p = static_cast<float>(v);
  }
  if (get_int(body, "top_k", &n)) {
    check_range("top_k", static_cast<double>(n), 0, 1e9);
    s.top_k = static_cast<int>(n);
  }
  if (get_number(body, "min_p", &v)) {
    check_range("min_p", v, 0, 1);
    s.min_p = static_cast<float>(v);
  }
  if (get_number(body, "presence_penalty", &v)) {
    check_range("presence_penalty", v, -2, 2);
    s.presence_penalty = static_cast<float>(v);
  }
  if (get_number(body, "frequency_penalty", &v)) {
    check_range("frequency_penalty", v, -2, 2);
    s.frequency_penalty = static_cast<float>(v);
  }
  if (get_number(body, "repeat_penalty", &v)) {
    check_range("repeat_penalty", v, 0, 10);
    s.repeat_penalty = static_cast<float>(v);
  }
  if (get_int(body, "seed", &n)) {
    s.seed = static_cast<uint64_t>(n);
  } else {
    s.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  if (get_int(body, "n", &n) && n != 1) bad("'n' must be 1 (one choice per request)");

  // Length and stop.
  const int64_t room = n_ctx - static_cast<int64_t>(g.prompt.size());
  int64_t max_tokens = 0;
  const char* mt_key = nullptr;
  for (const char* key : {"max_completion_tokens", "max_tokens", "n_predict"}) {
    if (!mt_key && get_int(body, key, &n)) {
      max_tokens = n;
      mt_key = key;
    }
  }
  if (!mt_key || (max_tokens == -1 && std::string(mt_key) == "n_predict")) {
    max_tokens = std::min<int64_t>(room, opt_.max_tokens_limit);  // until the end or the limit
  } else if (max_tokens < 1 || max_tokens > opt_.max_tokens_limit) {
    bad(std::string("'") + mt_key + "' must be between 1 and " +
        std::to_string(opt_.max_tokens_limit) + ", got " + std::to_string(max_tokens));
  }
  g.max_tokens = static_cast<int>(max_tokens);
  if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      g.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& x : *it) {
        if (!x.is_string()) bad("'stop' must be a string or an array of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("'stop' must be a string or an array of strings");
    }
    for (const std::string& x : g.stop) {
      if (x.empty()) bad("'stop' strings must not be empty");
      if (x.size() > 256) bad("'stop' strings must be at most 256 bytes");
    }
    if (g.stop.size() > 16) bad("at most 16 'stop' strings");
  }
  g.ignore_eos = get_bool(body, "ignore_eos", false);
  const bool stream = get_bool(body, "stream", false);
  bool include_usage = false;
  if (const auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad("'stream_options' must be an object");
    include_usage = get_bool(*it, "include_usage", false);
  }

  // response_format: the reply constrained to JSON (any object, or a schema).
  if (const auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string()) {
      bad("'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}");
    }
    const std::string type = (*it)["type"].get<std::string>();
    if (type != "text" && type != "json_object" && type != "json_schema") {
      bad("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", got \"" + type + "\"");
    }
    if (type == "json_schema") {
      const auto js = it->find("json_schema");
      if (js == it->end() || !js->is_object()) {
        bad("'response_format.json_schema' must be an object {\"name\": ..., \"schema\": {...}, \"strict\": ...}");
      }
      if (js->contains("name") && !(*js)["name"].is_string()) bad("'response_format.json_schema.name' must be a string");
      if (js->contains("strict") && !(*js)["strict"].is_null() && !(*js)["strict"].is_boolean()) {
        bad("'response_format.json_schema.strict' must be true or false");
      }
      if (js->contains("schema") && !(*js)["schema"].is_object()) {
        bad("'response_format.json_schema.schema' must be a JSON Schema object");
      }
    }
    if (type != "text") {
      if (g.grammar) {
        bad("'response_format' together with 'tools' is not supported: give tool_choice \"none\" "
            "or leave one out");
      }
      try {
        g.grammar = grammar_from_response_format(ordered_body()["response_format"].dump());
      } catch (const Error& e) {
        bad(std::string("'response_format': ") + e.what());
      }
    }
  }

  // Adapters: the request's list (unlisted adapters get scale 0), else the defaults.
  {
    std::lock_guard<std::mutex> lock(adapters_mu_);
    std::vector<float> scales;
    for (const LoadedAdapter& a : adapters_) scales.push_back(a.scale);
    if (const auto it = body.find("lora"); it != body.end() && !it->is_null()) {
      if (!it->is_array()) bad("'lora' must be an array of {\"id\": N, \"scale\": S}");
      std::fill(scales.begin(), scales.end(), 0.0f);
      for (const json& e : *it) {
        if (!e.is_object()) bad("'lora' entries must be objects {\"id\": N, \"scale\": S}");
        int64_t id = 0;
        if (!get_int(e, "id", &id)) bad("'lora' entries need an integer 'id'");
        if (id < 0 || id >= static_cast<int64_t>(adapters_.size())) {
          bad("unknown LoRA adapter id " + std::to_string(id) + " (" +
              std::to_string(adapters_.size()) + " loaded; see GET /lora-adapters)");
        }
        double sc = 1.0;
        get_number(e, "scale", &sc);
        check_range("lora scale", sc, -100, 100);
        scales[static_cast<size_t>(id)] = static_cast<float>(sc);
      }
    }
    for (size_t i = 0; i < scales.size(); ++i) {
      if (scales[i] == 0.0f) continue;
      g.adapters.push_back({adapters_[i].adapter, scales[i]});
      char buf[64];
      std::snprintf(buf, sizeof buf, "%zu:%.9g;", i, static_cast<double>(scales[i]));
      g.adapter_key += buf;
    }
  }

  auto job = std::make_shared<Job>(std::move(g));
  if (!engine_.submit(job)) {
    res.set_header("Retry-After", "1");
    send_error(res, 503, "the server is busy: every slot is taken and the queue is full",
               "server_error");
    return;
  }
  const std::string id = now_id(chat ? "chatcmpl-" : "cmpl-", next_id_++);
  const int64_t created = unix_time();
  const std::string model_name = opt_.model_name;
  auto usage = [](const Job& j) {
    return json{{"prompt_tokens", j.prompt_tokens},
                {"completion_tokens", j.completion_tokens},
                {"total_tokens", j.prompt_tokens + j.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", j.cached_tokens}}}};
  };

  // A reply that is a tool call (the grammar applied): parsed into OpenAI's tool_calls.
  const bool want_tools = chat && choice != ToolChoice::kNone;
  const ChatTemplate tmpl = opt_.chat_template;
  struct Parsed {
    bool is_call = false;
    std::string content;
    json calls = json::array();
  };
  auto parse_calls = [=](const Job& j, const std::string& text) {
    Parsed p;
    std::vector<ToolCall> calls;
    if (!want_tools || j.reply_mode() != ReplyMode::kConstrained ||
        !tmpl.parse_tool_calls(text, &calls, &p.content)) {
      return p;
    }
    p.is_call = true;
    for (size_t k = 0; k < calls.size(); ++k) {
      p.calls.push_back({{"id", "call_" + id.substr(id.find('-') + 1) + "_" + std::to_string(k)},
                         {"type", "function"},
                         {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}});
    }
    return p;
  };

  if (!stream) {
    std::string text;
    while (!job->take(&text, 200)) {
    }
    if (job->finish_reason == "error") {
      send_error(res, 500, job->error, "server_error");
      return;
    }
    json choice_out = {{"index", 0}, {"finish_reason", job->finish_reason}, {"logprobs", nullptr}};
    if (chat) {
      const Parsed p = parse_calls(*job, text);
      if (p.is_call) {
        choice_out["message"] = {{"role", "assistant"},
                                 {"content", p.content.empty() ? json(nullptr) : json(p.content)},
                                 {"tool_calls", p.calls}};
        choice_out["finish_reason"] = "tool_calls";
      } else {
        choice_out["message"] = {{"role", "assistant"}, {"content", text}};
      }
    } else {
      choice_out["text"] = text;
    }
    const json out = {{"id", id},
                      {"object", chat ? "chat.completion" : "text_completion"},
                      {"created", created},
                      {"model", model_name},
                      {"choices", json::array({choice_out})},
                      {"usage", usage(*job)}};
    res.set_content(dumps(out), "application/json");
    return;
  }

  // Streaming: one SSE event per piece of text, then the finish reason, usage, [DONE]. A reply
  // that may be a tool call is held back until it is known; a call goes out as OpenAI streams
  // one: delta.tool_calls[index] with id, type and name, then its arguments.
  auto chunk = [=](const json& delta_or_text, const json& finish) {
    json ch = {{"index", 0}, {"finish_reason", finish}, {"logprobs", nullptr}};
    if (chat) {
      ch["delta"] = delta_or_text;
    } else {
      ch["text"] = delta_or_text;
    }
    return json{{"id", id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", model_name},
                {"choices", json::array({ch})}};
  };
  auto started = std::make_shared<bool>(false);
  auto held = std::make_shared<std::string>();  // text not sent yet (a possible tool call)
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](size_t, httplib::DataSink& sink) {
        if (!sink.is_writable()) {
          job->cancel();
          return false;
        }
        std::string out;
        if (!*started) {
          *started = true;
          if (chat) out += sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
        }
        std::string text;
        const bool done = job->take(&text, 100);
        *held += text;
        const bool hold = want_tools && job->reply_mode() != ReplyMode::kText;
        auto send_text = [&](const std::string& t) {
          if (!t.empty()) out += sse(chat ? chunk({{"content", t}}, nullptr) : chunk(t, nullptr));
        };
        if (!hold) {
          send_text(*held);
          held->clear();
        }
        if (done) {
          if (job->finish_reason == "error") {
            out += sse({{"error", {{"message", job->error}, {"type", "server_error"}, {"code", 500}}}});
          } else {
            std::string finish = job->finish_reason;
            const Parsed p = parse_calls(*job, *held);
            if (p.is_call) {
              send_text(p.content);
              for (size_t k = 0; k < p.calls.size(); ++k) {
                const json& c = p.calls[k];
                out += sse(chunk({{"tool_calls", json::array({{{"index", k},
                                                               {"id", c["id"]},
                                                               {"type", "function"},
                                                               {"function", {{"name", c["function"]["name"]},
                                                                             {"arguments", ""}}}}})}},
                                 nullptr));
                out += sse(chunk({{"tool_calls", json::array({{{"index", k},
                                                               {"function", {{"arguments", c["function"]["arguments"]}}}}})}},
                                 nullptr));
              }
              finish = "tool_calls";
            } else {
              send_text(*held);
            }
            held->clear();
            json last = chat ? chunk(json::object(), finish) : chunk("", finish);
            if (!include_usage) last["usage"] = usage(*job);  // llama-server's habit
            out += sse(last);
            if (include_usage) {
              json u = chunk(json::object(), nullptr);
              u["choices"] = json::array();
              u["usage"] = usage(*job);
              out += sse(u);
            }
          }
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          job->cancel();
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancel();
      });
}

void Api::tokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  require_object(body);
  const auto it = body.find("content");
  if (it == body.end() || !it->is_string()) bad("'content' must be a string");
  const std::string text = it->get<std::string>();
  EncodeOptions eo;
  eo.add_bos = get_bool(body, "add_special", false);
  eo.parse_special = get_bool(body, "parse_special", true);
  const bool pieces = get_bool(body, "with_pieces", false);
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<TokenId> ids = tok.encode(text, eo);
  json tokens = json::array();
  TokenId prev = -1;
  for (TokenId t : ids) {
    if (pieces) {
      const std::string bytes = tok.token_bytes(t, prev);
      prev = t;
      // A piece that is not whole UTF-8 goes out as its bytes (llama-server does the same).
      json piece = bytes;
      try {
        (void)piece.dump();
      } catch (const json::exception&) {
        piece = json::array();
        for (unsigned char c : bytes) piece.push_back(c);
      }
      tokens.push_back({{"id", t}, {"piece", piece}});
    } else {
      tokens.push_back(t);
    }
  }
  res.set_content(dumps(json{{"tokens", tokens}}), "application/json");
}

void Api::detokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  require_object(body);
  const auto it = body.find("tokens");
  if (it == body.end() || !it->is_array()) bad("'tokens' must be an array of token ids");
  const int64_t n_vocab = model_->config().vocab_size;
  std::vector<TokenId> ids;
  for (size_t i = 0; i < it->size(); ++i) {
    if (!(*it)[i].is_number_integer()) bad("'tokens' must be an array of token ids (integers)");
    const int64_t id = (*it)[i].get<int64_t>();
    if (id < 0 || id >= n_vocab) {
      bad("token " + std::to_string(id) + " at index " + std::to_string(i) +
          " is outside the vocabulary (0.." + std::to_string(n_vocab - 1) + ")");
    }
    ids.push_back(static_cast<TokenId>(id));
  }
  const std::string text = model_->tokenizer().decode(ids);
  res.set_content(dumps(json{{"content", text}}), "application/json");
}

void Api::models(httplib::Response& res) {
  const ModelConfig& c = model_->config();
  const json out = {
      {"object", "list"},
      {"data", json::array({{{"id", opt_.model_name},
                             {"object", "model"},
                             {"created", unix_time()},
                             {"owned_by", "piquant"},
                             {"meta",
                              {{"n_vocab", c.vocab_size},
                               {"n_ctx_train", c.max_seq_len},
                               {"n_ctx_slot", engine_.n_ctx()},
                               {"n_embd", c.dim},
                               {"description", model_->describe()}}}}})}};
  res.set_content(dumps(out), "application/json");
}

void Api::health(httplib::Response& res) {
  const EngineStats s = engine_.stats();
  const json out = {{"status", "ok"},
                    {"slots_idle", s.n_slots - s.busy_slots},
                    {"slots_processing", s.busy_slots},
                    {"queue", s.queued}};
  res.set_content(dumps(out), "application/json");
}

void Api::metrics(httplib::Response& res) {
  const EngineStats s = engine_.stats();
  std::ostringstream os;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    os << "# HELP piquant_" << name << " " << help << "\n# TYPE piquant_" << name << " " << type
       << "\npiquant_" << name << " " << value << "\n";
  };
  metric("requests_total", "counter", "Requests accepted into the queue.",
         static_cast<double>(s.requests));
  metric("requests_rejected_total", "counter", "Requests refused with 503 (queue full).",
         static_cast<double>(s.requests_rejected));
  metric("connections_refused_total", "counter",
         "Connections refused with 503 (more than --threads-http at once).",
         static_cast<double>(g_connections_refused.load()));
  metric("requests_cancelled_total", "counter", "Requests cancelled (client gone).",
         static_cast<double>(s.requests_cancelled));
  metric("prompt_tokens_total", "counter", "Prompt tokens of accepted requests.",
         static_cast<double>(s.prompt_tokens));
  metric("prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's cache (its own or copied).",
         static_cast<double>(s.prompt_tokens_cached));
  metric("prompt_tokens_evaluated_total", "counter",
         "Prompt tokens run through the model (the rest came from caches).",
         static_cast<double>(s.prompt_tokens_evaluated));
  metric("prompt_tokens_forked_total", "counter",
         "Prompt tokens copied from another slot's cache (a shared prefix evaluated once).",
         static_cast<double>(s.prompt_tokens_forked));
  metric("tokens_generated_total", "counter", "Tokens generated.",
         static_cast<double>(s.generated_tokens));
  metric("prompt_tokens_seconds", "gauge", "Average prompt evaluation speed (tokens/s).",
         s.prompt_seconds > 0 ? static_cast<double>(s.prompt_tokens_evaluated) / s.prompt_seconds
                              : 0.0);
  metric("predicted_tokens_seconds", "gauge", "Average generation speed over decode steps (tokens/s).",
         s.decode_seconds > 0 ? static_cast<double>(s.generated_tokens) / s.decode_seconds : 0.0);
  metric("decode_steps_total", "counter", "Batched decode passes.",
         static_cast<double>(s.decode_steps));
  metric("slots_busy", "gauge", "Slots serving a request.", s.busy_slots);
  metric("slots_total", "gauge", "Slots (-np).", s.n_slots);
  metric("queue_length", "gauge", "Requests waiting for a slot.", s.queued);
  res.set_content(os.str(), "text/plain; version=0.0.4");
}

void Api::get_adapters(httplib::Response& res) {
  std::lock_guard<std::mutex> lock(adapters_mu_);
  json out = json::array();
  for (size_t i = 0; i < adapters_.size(); ++i) {
    out.push_back({{"id", i}, {"path", adapters_[i].path}, {"scale", adapters_[i].scale}});
  }
  res.set_content(dumps(out), "application/json");
}

void Api::set_adapters(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req);
  if (!body.is_array()) bad("the body must be an array of {\"id\": N, \"scale\": S}");
  std::lock_guard<std::mutex> lock(adapters_mu_);
  std::vector<float> scales(adapters_.size(), 0.0f);
  for (const json& e : body) {
    if (!e.is_object()) bad("entries must be objects {\"id\": N, \"scale\": S}");
    int64_t id = 0;
    if (!get_int(e, "id", &id)) bad("entries need an integer 'id'");
    if (id < 0 || id >= static_cast<int64_t>(adapters_.size())) {
      bad("unknown LoRA adapter id " + std::to_string(id));
    }
    double sc = 1.0;
    get_number(e, "scale", &sc);
    check_range("scale", sc, -100, 100);
    scales[static_cast<size_t>(id)] = static_cast<float>(sc);
  }
  for (size_t i = 0; i < scales.size(); ++i) adapters_[i].scale = scales[i];
  res.set_content(dumps(json{{"success", true}}), "application/json");
}

}  // namespace piquant::server
