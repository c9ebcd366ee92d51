// The grammar engine (lib/grammar): GBNF parsing and its errors, the matcher on text, the token
// mask against a brute-force check of every token, JSON Schema conversion errors.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

#include <cstring>
#include <random>

#include "test_util.hpp"

using piquant::Grammar;
using piquant::GrammarMatcher;
using piquant::GrammarVocab;

namespace {

std::shared_ptr<const piquant::Model> small_model() {
  piquant::SyntheticModelOptions so;
  so.config.dim = 32;
  so.config.hidden_dim = 64;
  so.config.n_layers = 1;
  so.config.n_heads = 2;
  so.config.max_seq_len = 64;
  static auto m = piquant::Model::synthetic(so);
  return m;
}

std::shared_ptr<const GrammarVocab> demo_vocab() {
  static auto v = GrammarVocab::build(small_model()->tokenizer());
  return v;
}

bool accepts(const std::string& gbnf, const std::string& text) {
  GrammarMatcher m(Grammar::parse(gbnf), demo_vocab());
  return m.accept_text(text) && m.can_end();
}

std::string parse_error(const std::string& gbnf) {
  try {
    Grammar::parse(gbnf);
  } catch (const piquant::Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string schema_error(const std::string& schema) {
  try {
    Grammar::from_json_schema(schema);
  } catch (const piquant::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("gbnf grammars accept exactly their language", "[grammar]") {
  const std::string g = R"(
root ::= greeting " " name ("!" | "?")? # a comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]{1,3}
)";
  CHECK(accepts(g, "hi Bob"));
  CHECK(accepts(g, "hello Anna!"));
  CHECK(accepts(g, "hi Al?"));
  CHECK_FALSE(accepts(g, "hi B"));        // {1,3}: at least one lower-case letter
  CHECK_FALSE(accepts(g, "hi Bobby"));    // at most three
  CHECK_FALSE(accepts(g, "hey Bob"));
  CHECK_FALSE(accepts(g, "hi Bob!!"));
  CHECK(accepts(R"(root ::= [^a-c]+)", "xyz"));
  CHECK_FALSE(accepts(R"(root ::= [^a-c]+)", "xbz"));
  CHECK(accepts(R"(root ::= "\x41\u00e9\t" [\n])", "A\xC3\xA9\t\n"));
  CHECK(accepts(R"(root ::= [가-힣]{2} .)", "한국!"));
  CHECK_FALSE(accepts(R"(root ::= [가-힣]{2} .)", "한a!"));
  CHECK(accepts("root ::= (\n  \"a\" |\n  \"b\"\n)*", "abba"));
  CHECK(accepts("root ::= \"x\"{3,}", "xxxxx"));
  CHECK_FALSE(accepts("root ::= \"x\"{3,}", "xx"));
  CHECK(accepts("root ::= \"ab\"? \"c\"", "c"));
  // A UTF-8 character may arrive a byte at a time; the wrong second byte is refused.
  GrammarMatcher m(Grammar::parse("root ::= \"é\""), demo_vocab());
  CHECK(m.accept_text("\xC3"));
  CHECK_FALSE(m.can_end());
  CHECK_FALSE(m.accept_text("\xA8"));  // è
  CHECK(m.accept_text("\xA9"));
  CHECK(m.is_complete());
}

TEST_CASE("gbnf errors name the place", "[grammar]") {
  CHECK_THAT(parse_error("root ::= \"a\" b ::= \"x\"\n"),
             Catch::Contains("1:14") && Catch::Contains("missing newline"));
  CHECK_THAT(parse_error("root ::= item\nitem ::= \"x\" missing\n"),
             Catch::Contains("2:14") && Catch::Contains("undefined rule 'missing'"));
  CHECK_THAT(parse_error("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]\n"),
             Catch::Contains("left recursion") && Catch::Contains("expr -> expr"));
  CHECK_THAT(parse_error("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"\n"),
             Catch::Contains("left recursion"));
  CHECK_THAT(parse_error("root ::= \"a\" root\n"), Catch::Contains("can never end"));
  CHECK_THAT(parse_error("root ::= \"a\" [b-z\n"),
             Catch::Contains("1:14") && Catch::Contains("unterminated character class"));
  CHECK_THAT(parse_error("root ::= \"ab\n"), Catch::Contains("unterminated literal"));
  CHECK_THAT(parse_error("root ::= \"a\"\nx ::= \"\xC3\x28\"\n"),
             Catch::Contains("2:8") && Catch::Contains("invalid UTF-8"));
  CHECK_THAT(parse_error("root ::= [z-a]"), Catch::Contains("range end below"));
  CHECK_THAT(parse_error("root ::= \"a\"{3,1}"), Catch::Contains("n < m"));
  CHECK_THAT(parse_error("root ::= * \"a\""), Catch::Contains("follows nothing"));
  CHECK_THAT(parse_error("root ::= (\"a\""), Catch::Contains("unclosed group"));
  CHECK_THAT(parse_error("start ::= \"a\""), Catch::Contains("no rule named 'root'"));
  CHECK_THAT(parse_error("root ::= \"a\"\nroot ::= \"b\""), Catch::Contains("defined twice"));
  CHECK_THAT(parse_error("root ::= \"\\q\""), Catch::Contains("unknown escape"));
}

TEST_CASE("json schema errors name the keyword and its JSON pointer", "[grammar]") {
  CHECK_THAT(schema_error(R"({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}})"),
             Catch::Contains("#/properties/a/minimum") && Catch::Contains("'minimum' is not supported"));
  CHECK_THAT(schema_error(R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}})"),
             Catch::Contains("#/properties/a/$ref") && Catch::Contains("refers to nowhere"));
  CHECK_THAT(schema_error(R"({"type": "strin"})"), Catch::Contains("#/type") && Catch::Contains("unknown type"));
  CHECK_THAT(schema_error(R"({"type": "array", "minItems": -1})"), Catch::Contains("#/minItems"));
  CHECK_THAT(schema_error(R"({"type": "object", "required": ["x"], "properties": {}})"),
             Catch::Contains("'x' is required but not among the properties"));
  CHECK_THAT(schema_error(R"({"type": "string", "pattern": "^[a-z"})"), Catch::Contains("unterminated"));
  CHECK_THAT(schema_error(R"({"type": "object",)"), Catch::Contains("not valid JSON"));
  CHECK_THAT(schema_error(R"({"items": {"anyOf": [{"type": "string"}, {"not": {}}]}})"),
             Catch::Contains("#/items/anyOf/1/not"));
}

TEST_CASE("json schema grammars accept valid documents and refuse invalid ones", "[grammar]") {
  const std::string schema = R"({
    "type": "object",
    "properties": {
      "action": {"enum": ["move", "stop"]},
      "speed": {"type": "number"},
      "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
      "id": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"}
    },
    "required": ["action"],
    "additionalProperties": false
  })";
  auto g = Grammar::from_json_schema(schema);
  auto ok = [&](const std::string& text) {
    GrammarMatcher m(g, demo_vocab());
    return m.accept_text(text) && m.can_end();
  };
  CHECK(ok(R"({"action": "move"})"));
  CHECK(ok(R"({"action":"stop","speed":-1.5e3})"));
  CHECK(ok("{\n  \"action\": \"move\",\n  \"tags\": [\"ab\", \"c\"],\n  \"id\": \"AB-12\"\n}"));
  CHECK(ok(R"({"action": "move", "speed": 0.25, "id": "XY-7"})"));
  CHECK_FALSE(ok(R"({"speed": 1})"));                         // required
  CHECK_FALSE(ok(R"({"action": "jump"})"));                   // enum
  CHECK_FALSE(ok(R"({"action": "move", "tags": ["abcd"]})"));  // maxLength
  CHECK_FALSE(ok(R"({"action": "move", "tags": ["a", "b", "c"]})"));  // maxItems
  CHECK_FALSE(ok(R"({"action": "move", "id": "A-1"})"));       // pattern
  CHECK_FALSE(ok(R"({"action": "move", "color": 1})"));        // additionalProperties
  CHECK_FALSE(ok(R"({"action": "move", "speed": 01})"));       // JSON numbers
}

namespace {
// Brute force: a token is allowed iff the matcher accepts the text so far plus its bytes.
void check_mask_against_brute_force(const std::shared_ptr<const Grammar>& g, const piquant::Tokenizer& tok,
                                    const std::shared_ptr<const GrammarVocab>& vocab, const std::string& prefix,
                                    size_t stride) {
  GrammarMatcher m(g, vocab);
  REQUIRE(m.accept_text(prefix));
  std::vector<uint8_t> allowed;
  m.compute_mask(allowed);
  piquant::TokenId normal = 0;
  while (tok.kind(normal) != piquant::TokenKind::kNormal) ++normal;
  size_t n_allowed = 0;
  for (size_t id = 0; id < tok.vocab_size(); id += stride) {
    const auto t = static_cast<piquant::TokenId>(id);
    const piquant::TokenKind k = tok.kind(t);
    bool expect = false;
    if (tok.is_end_of_generation(t)) {
      expect = m.can_end();
    } else if (k != piquant::TokenKind::kControl && k != piquant::TokenKind::kUnused &&
               k != piquant::TokenKind::kUnknown) {
      const std::string bytes = tok.token_bytes(t, normal);
      GrammarMatcher fresh(g, vocab);
      expect = !bytes.empty() && fresh.accept_text(prefix) && fresh.accept_text(bytes);
    }
    n_allowed += expect;
    if (allowed[id] != expect) {
      FAIL("token " << id << " '" << tok.piece(t) << "' after '" << prefix << "': mask " << int(allowed[id])
                    << ", brute force " << expect);
    }
  }
  CAPTURE(prefix, n_allowed);
}
}  // namespace

TEST_CASE("the token mask matches a brute-force check of every token", "[grammar]") {
  const auto g = Grammar::parse(R"(
root ::= "{" ws "\"name\":" ws "\"" [^"]{0,20} "\"" ws "," ws "\"n\":" ws [0-9]{1,4} ws "}" | "€" [α-ω]+
ws ::= [ \n]{0,3}
)");
  auto model = small_model();
  for (const std::string prefix : {"", "{", "{ \"na", "{\"name\": \"ab", "{\"name\":\"x\" ,\"n\": 12",
                                   "\xE2", "\xE2\x82", "€α"}) {
    check_mask_against_brute_force(g, model->tokenizer(), demo_vocab(), prefix, 1);
  }
  // Real vocabularies: multi-byte pieces, leading spaces (SentencePiece), byte-level BPE.
  for (const char* rel : {"tokenizers/llama2-spm/tokenizer.model", "tokenizers/gpt2/vocab.json"}) {
    const std::string path = piquant::test::shared_file(rel);
    if (path.empty()) continue;
    const auto tok = piquant::Tokenizer::load(path);
    const auto vocab = GrammarVocab::build(tok);
    for (const std::string prefix : {"{", "{\"name\": \"ab", "{\"name\":\"x\" ,\"n\": 1", "\xE2"}) {
      // Every 7th token natively; fewer under an emulator (qemu), where this is slow.
      check_mask_against_brute_force(g, tok, vocab, prefix, std::string(PIQUANT_TEST_EMULATOR).empty() ? 7 : 97);
    }
  }
}

TEST_CASE("a grammar no token can continue ends the generation with a reason", "[grammar]") {
  piquant::SyntheticModelOptions so;
  so.config.dim = 64;
  so.config.hidden_dim = 128;
  so.config.n_layers = 2;
  so.config.n_heads = 4;
  so.config.max_seq_len = 256;
  so.seed = 3;
  auto model = piquant::Model::synthetic(so);
  piquant::Session s(model);
  piquant::GenerateOptions o;
  o.max_tokens = 50;
  o.sampler.temperature = 1.0f;
  o.grammar = Grammar::parse(R"(root ::= "yes" | "no")");
  auto r = s.generate("Answer:", nullptr, o);
  CAPTURE(r.text);
  CHECK((r.text == "yes" || r.text == "no"));
  CHECK(r.stop == piquant::GenerateResult::StopReason::kGrammarComplete);
  // The matcher itself: a vocabulary without the character the grammar needs.
  piquant::test::TempDir dir;
  // A llama2.c tokenizer.bin with <unk> <s> </s> a b ab and no byte tokens.
  std::string bin;
  auto put32 = [&](int32_t v) { bin.append(reinterpret_cast<const char*>(&v), 4); };
  put32(8);
  for (const char* piece : {"<unk>", "<s>", "</s>", "a", "b", "ab"}) {
    const float score = 0;
    bin.append(reinterpret_cast<const char*>(&score), 4);
    put32(static_cast<int32_t>(std::strlen(piece)));
    bin += piece;
  }
  piquant::test::write_file(dir.file("tokenizer.bin"), bin);
  const auto tok = piquant::Tokenizer::load(dir.file("tokenizer.bin"));
  GrammarMatcher m(Grammar::parse(R"(root ::= "a" "c")"), GrammarVocab::build(tok));
  std::vector<uint8_t> allowed;
  CHECK(m.compute_mask(allowed) == 1);  // "a" ("ab" leaves the grammar)
  CHECK(allowed[3] == 1);
  m.accept_token(3);
  CHECK(m.compute_mask(allowed) == 0);
  CHECK_FALSE(m.can_end());
  CHECK_THROWS_WITH(m.accept_token(4), Catch::Contains("does not fit the grammar"));
}

TEST_CASE("deep nesting outgrows the state cache and the matcher starts it over", "[grammar]") {
  GrammarMatcher m(Grammar::parse(R"(root ::= "[" root "]" | "x")"), demo_vocab());
  const size_t depth = 5000;  // more states than the cache keeps (4096)
  std::vector<uint8_t> allowed;
  REQUIRE(m.accept_text(std::string(depth, '[')));
  CHECK(m.compute_mask(allowed) > 0);  // starts the caches over from the current state
  REQUIRE(m.accept_text("x"));
  REQUIRE(m.accept_text(std::string(depth - 1, ']')));
  CHECK_FALSE(m.can_end());
  CHECK_FALSE(m.accept_text("]]"));
  REQUIRE(m.accept_text("]"));
  CHECK(m.is_complete());
}

TEST_CASE("mangled grammars and schemas give errors, never crashes or hangs", "[grammar]") {
  const std::vector<std::string> grammars = {
      "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term){0,3}\nterm ::= [0-9]{1,3} | \"(\" expr \")\"\n",
      "root ::= \"- \" item (\"\\n- \" item)*\nitem ::= [^\\n\\x00-\\x1F]{1,12} # comment\n",
      "root ::= [가-힣]+ \" \" [\\u0041-\\U0000005A]? .* \"end\"\n"};
  const std::vector<std::string> schemas = {
      R"({"type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#/$defs/n"}, "maxItems": 2},
         "b": {"anyOf": [{"type": "string", "pattern": "^[a-z]{1,3}(x|y)?$"}, {"enum": [1, "two"]}]}},
         "required": ["a"], "$defs": {"n": {"type": "integer"}}})"};
  const std::string alphabet = "()[]{}|*+?\"\\:=-^.,0123456789abxyz \n\t\xC3\xE2\x80#";
  std::mt19937 rng(20261204);
  CAPTURE(rng());
  auto mangle = [&](std::string s) {
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0: s.erase(at, 1 + rng() % 3); break;
        case 1: s.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        default: s[at] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    return s;
  };
  int parsed = 0, refused = 0;
  std::vector<uint8_t> allowed;
  for (int i = 0; i < 1500; ++i) {
    const bool schema = i % 3 == 2;
    const std::string text = mangle(schema ? schemas[0] : grammars[static_cast<size_t>(i) % grammars.size()]);
    CAPTURE(text);
    try {
      auto g = schema ? Grammar::from_json_schema(text) : Grammar::parse(text);
      GrammarMatcher m(g, demo_vocab());
      m.compute_mask(allowed);
      m.accept_text("12+(3");
      m.compute_mask(allowed);
      ++parsed;
    } catch (const piquant::Error&) {
      ++refused;
    }
  }
  CHECK(parsed > 0);
  CHECK(refused > 0);
  CHECK_THAT(parse_error("root ::= " + std::string(300, '(') + "\"a\"" + std::string(300, ')')),
             Catch::Contains("nested more than 200 deep"));
}

TEST_CASE("response_format objects map to grammars for a server", "[grammar]") {
  CHECK(piquant::grammar_from_response_format(R"({"type": "text"})") == nullptr);
  auto obj = piquant::grammar_from_response_format(R"({"type": "json_object"})");
  REQUIRE(obj);
  GrammarMatcher m1(obj, demo_vocab());
  CHECK((m1.accept_text(R"({"a": [1, {"b": null}]})") && m1.can_end()));
  auto schema = piquant::grammar_from_response_format(
      R"({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "array", "items": {"type": "boolean"}}}})");
  GrammarMatcher m2(schema, demo_vocab());
  CHECK((m2.accept_text("[true, false]") && m2.can_end()));
  GrammarMatcher m3(schema, demo_vocab());
  CHECK_FALSE(m3.accept_text("[1"));
  CHECK_THROWS_WITH(piquant::grammar_from_response_format(R"({"type": "xml"})"), Catch::Contains("unknown type 'xml'"));
  CHECK_THROWS_WITH(piquant::grammar_from_tools(R"([{"type": "function"}])"), Catch::Contains("tools[0]"));
  piquant::ToolCallFormat llama;
  llama.arguments_key = "parameters";
  auto tools = piquant::grammar_from_tools(
      R"([{"type": "function", "function": {"name": "stop", "parameters": {"type": "object", "properties": {}}}}])", llama);
  GrammarMatcher m4(tools, demo_vocab());
  CHECK((m4.accept_text(R"({"name": "stop", "parameters": {}})") && m4.can_end()));
}
