// Chat templates render what each model family expects; Conversation reuses its KV cache across
// turns and handles a full context.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

namespace {

const std::vector<piquant::ChatMessage> kTwoTurns = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", " Hello!"}, {"user", "Bye"}};

// Greedy replies of `n` tokens that run past end-of-generation tokens.
piquant::GenerateOptions greedy_tokens(int n) {
  piquant::GenerateOptions go;
  go.max_tokens = n;
  go.sampler.temperature = 0;
  go.stop_at_end_of_generation = false;
  return go;
}

}  // namespace

TEST_CASE("chat templates render each family's format", "[lib][chat]") {
  using piquant::ChatFormat;
  using piquant::ChatTemplate;
  CHECK(ChatTemplate(ChatFormat::kLlama3).render(kTwoTurns, true) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n Hello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(ChatTemplate(ChatFormat::kChatML).render(kTwoTurns, true) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n Hello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(ChatTemplate(ChatFormat::kLlama2).render(kTwoTurns, true) ==
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s><s>[INST] Bye [/INST]");
  CHECK(ChatTemplate(ChatFormat::kMistral).render(kTwoTurns, true) ==
        "<s>[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] Bye [/INST]");
  CHECK(ChatTemplate(ChatFormat::kExaone).render(kTwoTurns, true) ==
        "[|system|]Be brief.[|endofturn|]\n[|user|]Hi\n[|assistant|] Hello![|endofturn|]\n"
        "[|user|]Bye\n[|assistant|]");
  CHECK(ChatTemplate(ChatFormat::kChatML).render({{"user", "x"}}, false) ==
        "<|im_start|>user\nx<|im_end|>\n");
  CHECK_THROWS_AS(ChatTemplate(ChatFormat::kChatML).render({{"robot", "x"}}, true),
                  piquant::Error);
}

TEST_CASE("chat templates write tool declarations, calls and results in each family's format",
          "[lib][chat]") {
  using piquant::ChatFormat;
  using piquant::ChatTemplate;
  const std::string tools =
      R"([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", )"
      R"("properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";
  std::vector<piquant::ChatMessage> turns = {{"system", "Be brief."}, {"user", "Weather in Oslo?"}};
  piquant::ChatMessage call{"assistant", ""};
  call.tool_calls.push_back({"call_1", "get_weather", R"({"city":"Oslo"})"});
  piquant::ChatMessage result{"tool", "3 C"};
  result.tool_call_id = "call_1";
  result.name = "get_weather";
  turns.push_back(call);
  turns.push_back(result);
  // Qwen 2.5 (ChatML): the # Tools block in the system message, <tool_call> and <tool_response>.
  CHECK(ChatTemplate(ChatFormat::kChatML).render(turns, true, tools) ==
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist "
        "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
        "XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, "
        "\"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with "
        "function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nWeather in Oslo?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
        "{\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n3 C\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
  // Llama 3.1: declarations (indented JSON) head the first user message; results are ipython turns.
  CHECK(ChatTemplate(ChatFormat::kLlama3).render(turns, true, tools) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
        "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGiven the following "
        "functions, please respond with a JSON for a function call with its proper arguments that "
        "best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
        "\"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n{\n"
        "    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
        "        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n"
        "                \"city\": {\n                    \"type\": \"string\"\n                }\n"
        "            },\n            \"required\": [\n                \"city\"\n            ]\n"
        "        }\n    }\n}\n\nWeather in Oslo?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", "
        "\"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\n3 C<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Formats without a tool syntax: the declarations in the system prompt, results as user turns.
  const std::string plain = ChatTemplate(ChatFormat::kPlain).render(turns, true, tools);
  CHECK(plain.find("You can call these functions:\n{\"type\": \"function\"") != std::string::npos);
  CHECK(plain.find("Assistant:{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n") !=
        std::string::npos);
  CHECK(plain.find("User: Result of get_weather (call_1): 3 C\n") != std::string::npos);
  // Without tools nothing changes.
  CHECK(ChatTemplate(ChatFormat::kChatML).render(kTwoTurns, true, "") ==
        ChatTemplate(ChatFormat::kChatML).render(kTwoTurns, true));
  CHECK_THROWS_WITH(ChatTemplate(ChatFormat::kChatML).render(kTwoTurns, true, "[{"),
                    Catch::Contains("tools are not valid JSON"));

  // Parsing a reply back.
  std::vector<piquant::ToolCall> calls;
  std::string content;
  const ChatTemplate qwen(ChatFormat::kChatML), llama(ChatFormat::kLlama3);
  REQUIRE(qwen.parse_tool_calls("Checking.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n"
                                "</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
                                &calls, &content));
  CHECK(content == "Checking.");
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].name == "a");
  CHECK(calls[0].arguments == R"({"x":1})");
  CHECK(calls[1].arguments == "{}");
  CHECK_FALSE(qwen.parse_tool_calls("no call here", &calls));
  CHECK_FALSE(qwen.parse_tool_calls("<tool_call>\n{\"name\": \"a\", \"arguments\": {}}", &calls));  // unclosed
  CHECK_FALSE(qwen.parse_tool_calls("<tool_call>{\"name\": \"a\"}</tool_call> and more", &calls));
  REQUIRE(llama.parse_tool_calls(" {\"name\": \"move\", \"parameters\": {\"cm\": 20}}", &calls));
  CHECK(calls.size() == 1);
  CHECK(calls[0].name == "move");
  CHECK(calls[0].arguments == R"({"cm":20})");
  REQUIRE(llama.parse_tool_calls("<|python_tag|>{\"name\": \"m\", \"parameters\": {}}", &calls));
  CHECK(calls[0].name == "m");
  CHECK_FALSE(llama.parse_tool_calls("{\"name\": \"m\", \"parameters\": [1]}", &calls));
  CHECK_FALSE(llama.parse_tool_calls("{\"parameters\": {}}", &calls));
  CHECK(qwen.tool_call_format().prefix == "<tool_call>\n");
  CHECK(llama.tool_call_format().arguments_key == "parameters");
}

TEST_CASE("chat templates are recognised from Jinja text and by name", "[lib][chat]") {
  using piquant::ChatFormat;
  using piquant::ChatTemplate;
  CHECK(ChatTemplate::detect("{{ '<|start_header_id|>' + message['role'] }}").format() ==
        ChatFormat::kLlama3);
  CHECK(ChatTemplate::detect("{{'<|im_start|>' + message['role'] + '\\n'}}").format() ==
        ChatFormat::kChatML);
  CHECK(ChatTemplate::detect("[INST] <<SYS>>\\n' + system_message").format() ==
        ChatFormat::kLlama2);
  CHECK(ChatTemplate::detect("{{ bos_token }}{% for m in messages %}[INST] {{ m }} [/INST]")
            .format() == ChatFormat::kMistral);
  CHECK(ChatTemplate::detect("{{ '[|system|]' }}...[|endofturn|]").format() ==
        ChatFormat::kExaone);
  CHECK(ChatTemplate::detect("").format() == ChatFormat::kPlain);
  CHECK(ChatTemplate::by_name("exaone").format() == ChatFormat::kExaone);
  CHECK_THROWS_WITH(ChatTemplate::by_name("vicuna"), Catch::Contains("unknown chat template"));
}

TEST_CASE("a conversation evaluates only each new turn and keeps earlier turns cached",
          "[lib][chat]") {
  auto model = piquant::Model::synthetic();
  piquant::Session session(model, piquant::SessionOptions{256, 1});
  piquant::ConversationOptions co;
  co.system_prompt = "You are terse.";
  piquant::Conversation chat(session, piquant::ChatTemplate::by_name("plain"), co);
  piquant::GenerateOptions go;
  go.max_tokens = 8;
  go.sampler.temperature = 0;
  const auto r1 = chat.send("Hello", nullptr, go);
  const int after1 = session.position();
  CHECK(after1 > 0);
  const auto r2 = chat.send("More", nullptr, go);
  // Turn 2 evaluated only the new text, far less than the whole rendered conversation.
  const std::string full = piquant::ChatTemplate::by_name("plain").render(chat.messages(), false);
  const size_t full_tokens = model->tokenizer().encode(full).size();
  CHECK(r2.prompt_ids.size() < full_tokens / 2);
  CHECK(session.position() > after1);
  CHECK(chat.messages().size() == 5);  // system, user, assistant, user, assistant
  CHECK(chat.messages()[2].content == r1.text);
}

TEST_CASE("a conversation that outgrows the context errors or drops its oldest turns",
          "[lib][chat]") {
  auto model = piquant::Model::synthetic();
  const piquant::GenerateOptions go = greedy_tokens(6);
  const std::string msg(60, 'a');  // ~60 tokens with the demo tokenizer
  {
    piquant::Session session(model, piquant::SessionOptions{128, 1});
    piquant::Conversation chat(session, piquant::ChatTemplate::by_name("plain"));
    chat.send(msg, nullptr, go);
    CHECK_THROWS_WITH(chat.send(msg, nullptr, go), Catch::Contains("context length"));
    // A message that cannot fit even alone says so.
    CHECK_THROWS_WITH(chat.send(std::string(400, 'b'), nullptr, go),
                      Catch::Contains("does not fit the context"));
  }
  {
    piquant::Session session(model, piquant::SessionOptions{128, 1});
    piquant::ConversationOptions co;
    co.drop_oldest_turns = true;
    co.system_prompt = "sys";
    piquant::Conversation chat(session, piquant::ChatTemplate::by_name("plain"), co);
    for (int turn = 0; turn < 4; ++turn) chat.send(msg, nullptr, go);
    CHECK(chat.dropped_turns() >= 2);
    CHECK(chat.messages().front().role == "system");
    CHECK(session.position() < 128);
  }
}

TEST_CASE("after reset or dropped turns a conversation reuses the cached system prompt",
          "[lib][chat]") {
  auto model = piquant::Model::synthetic();
  const piquant::GenerateOptions go = greedy_tokens(6);
  piquant::ConversationOptions co;
  co.system_prompt = std::string(40, 's');  // ~40 tokens with the demo tokenizer
  const auto tmpl = piquant::ChatTemplate::by_name("chatml");

  piquant::Session session(model, piquant::SessionOptions{256, 1});
  piquant::Conversation chat(session, tmpl, co);
  const auto first = chat.send("Hello", nullptr, go);
  chat.send("More", nullptr, go);
  chat.reset();
  const auto again = chat.send("Hello", nullptr, go);
  // The same reply as the first time, from far fewer evaluated tokens: the system prompt (and
  // the turn's start that matches the cache) was not evaluated again.
  CHECK(again.text == first.text);
  CHECK(again.generated_ids == first.generated_ids);
  CHECK(again.prompt_ids.size() + 30 < first.prompt_ids.size());
  CHECK(session.position() ==
        static_cast<int>(first.prompt_ids.size() + first.generated_ids.size() - 1));

  // A conversation on a session someone else moved on starts over (no stale cache is trusted):
  // afterwards the cache holds exactly this conversation's prompt and reply.
  const auto& tok = model->tokenizer();
  auto prompt_tokens = [&](const piquant::Conversation& c) {  // the history before the reply
    const std::vector<piquant::ChatMessage> h(c.messages().begin(), c.messages().end() - 1);
    return tok.encode(tmpl.render(h, true), piquant::EncodeOptions{std::nullopt, true}).size();
  };
  session.eval({1, 2, 3});
  const auto after_other_use = chat.send("Hi", nullptr, go);
  CHECK(session.position() ==
        static_cast<int>(prompt_tokens(chat) + after_other_use.generated_ids.size() - 1));

  // Dropping the oldest turns keeps the system prompt's tokens: the turn that dropped evaluates
  // less than its whole prompt.
  piquant::Session small(model, piquant::SessionOptions{200, 1});
  co.drop_oldest_turns = true;
  piquant::Conversation dropping(small, tmpl, co);
  const std::string msg(30, 'a');
  bool checked = false;
  for (int turn = 0; turn < 8 && !checked; ++turn) {
    const int dropped = dropping.dropped_turns();
    const auto r = dropping.send(msg, nullptr, go);
    if (dropping.dropped_turns() == dropped) continue;
    CHECK(r.prompt_ids.size() + 30 < prompt_tokens(dropping));
    CHECK(small.position() ==
          static_cast<int>(prompt_tokens(dropping) + r.generated_ids.size() - 1));
    checked = true;
  }
  CHECK(checked);
}

TEST_CASE("rewind keeps a prefix of the cache and evaluates on from there", "[lib][session]") {
  auto model = piquant::Model::synthetic();
  const size_t vocab = static_cast<size_t>(model->config().vocab_size);
  piquant::Session a(model, piquant::SessionOptions{64, 1});
  a.eval({1, 20, 30, 40, 50});
  a.rewind(3);
  CHECK(a.position() == 3);
  const float* l = a.eval({60});
  const std::vector<float> rewound(l, l + vocab);
  piquant::Session b(model, piquant::SessionOptions{64, 1});
  const float* direct = b.eval({1, 20, 30, 60});
  CHECK(std::equal(rewound.begin(), rewound.end(), direct));
  CHECK_THROWS_AS(a.rewind(-1), piquant::Error);
  CHECK_THROWS_WITH(a.rewind(10), Catch::Contains("holds 4 tokens"));
}
