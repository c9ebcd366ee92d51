// Tokenizers over tiny built-in vocabularies (no ../shared needed): every file form, the merge
// rules worked out by hand, pre-tokenizer splits, special tokens, streaming decode, serialization.
#include <catch2/catch.hpp>
#include <piquant/error.hpp>
#include <piquant/tokenizer.hpp>

#include "format/gguf_writer.hpp"
#include "test_util.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "tokenizer/tokenizer_json.hpp"
#include "tokenizer_fixtures.hpp"
#include "unicode/unicode.hpp"

namespace {

using piquant::EncodeOptions;
using piquant::TokenId;
using piquant::Tokenizer;
using Ids = std::vector<TokenId>;

Tokenizer load_bytes(const piquant::test::TempDir& dir, const std::string& name,
                     const std::string& bytes) {
  piquant::test::write_file(dir.file(name), bytes);
  return Tokenizer::load(dir.file(name));
}

std::vector<std::string> split(piquant::PreTokenizer p, const std::string& text) {
  std::vector<std::pair<size_t, size_t>> chunks;
  piquant::pretokenize(p, text, chunks);
  std::vector<std::string> out;
  for (auto [b, e] : chunks) out.push_back(text.substr(b, e - b));
  return out;
}

Tokenizer via_gguf(const piquant::test::TempDir& dir, const Tokenizer& t) {
  piquant::GgufWriter w;
  w.add("general.architecture", piquant::GgufWriteValue::string("llama"));
  piquant::tokenizer_to_gguf(t, w);
  w.write(dir.file("t.gguf"));
  return Tokenizer::load(dir.file("t.gguf"));
}

}  // namespace

TEST_CASE("SentencePiece BPE merges the highest-scoring pair first and falls back to bytes",
          "[tokenizer]") {
  piquant::test::TempDir dir;
  const Tokenizer t = load_bytes(dir, "tokenizer.model", piquant::test::tiny_spm_model());
  CHECK(t.kind_name() == "sentencepiece");
  CHECK(t.vocab_size() == 271);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  // ▁ h e l l o: ll (-6), ▁h (-7), llo (-9), ▁he (-10), ▁hello (-11).
  CHECK(t.encode("hello") == Ids{1, 269});
  // "i" is no piece: byte fallback <0x69> = 3 + 0x69.
  CHECK(t.encode("hello hi") == Ids{1, 269, 265, 3 + 0x69});
  // Korean 한 = ED 95 9C: three byte tokens after the dummy-prefix ▁.
  CHECK(t.encode("한") == Ids{1, 259, 3 + 0xED, 3 + 0x95, 3 + 0x9C});
  CHECK(t.encode("hello", EncodeOptions{false, false}) == Ids{269});
  CHECK(t.decode({1, 269, 265, 3 + 0x69}) == "hello hi");
  CHECK(t.decode({1, 259, 3 + 0xED, 3 + 0x95, 3 + 0x9C}) == "한");
  // Control tokens are plain text unless asked for; user-defined ones always match.
  CHECK(t.encode("<s>", EncodeOptions{false, false}).size() > 1);
  CHECK(t.encode("<s>hello", EncodeOptions{false, true}) == Ids{1, 269});
  // After a user-defined piece the text goes on without a new dummy prefix (as sentencepiece):
  // h e l l o -> ll (-6), he (-8), llo (-9).
  CHECK(t.encode("hi<|user|>hello", EncodeOptions{false, false}) == Ids{265, 3 + 'i', 270, 266, 267});
  CHECK(t.decode({265, 3 + 'i', 270, 266, 267}) == "hi<|user|>hello");
  CHECK(t.decode({1, 269, 2}) == "hello");
  CHECK(t.decode({1, 269, 2}, piquant::DecodeOptions{true}) == "<s>hello</s>");
  for (const std::string s : {"", " ", "  hello  ", "hello\nhi\t", "é한🇰🇷\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9"}) {
    CAPTURE(s);
    CHECK(t.decode(t.encode(s)) == s);
  }
  CHECK_THROWS_AS(t.decode({271}), piquant::Error);
  CHECK_THROWS_AS(t.decode({-1}), piquant::Error);
}

TEST_CASE("llama2.c tokenizer.bin encodes with real spaces and BOS", "[tokenizer]") {
  piquant::test::TempDir dir;
  const Tokenizer t = load_bytes(dir, "tokenizer.bin", piquant::test::tiny_llama2c_tokenizer());
  CHECK(t.kind_name() == "llama2c");
  CHECK(t.encode("hi") == Ids{1, 264});      // " " "h" "i" -> " h" (-4) -> " hi" (-6)
  CHECK(t.encode("hi hi") == Ids{1, 264, 264});
  CHECK(t.encode("x") == Ids{1, 259, 3 + 'x'});
  CHECK(t.decode(t.encode("hi hix")) == "hi hix");
  // The same tokenizer through GGUF (spaces become U+2581 there).
  const Tokenizer g = via_gguf(dir, t);
  CHECK(g.encode("hi hi") == Ids{1, 264, 264});
  CHECK(g.decode({1, 264, 264}) == "hi hi");
}

TEST_CASE("GPT-2 vocab.json and merges.txt merge by rank", "[tokenizer]") {
  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("merges.txt"), piquant::test::tiny_merges_txt());
  const Tokenizer t = load_bytes(dir, "vocab.json", piquant::test::tiny_vocab_json());
  CHECK(t.kind_name() == "bpe-bytelevel");
  CHECK(t.bos_id() == -1);
  CHECK(t.eos_id() == 261);
  CHECK(t.encode("the hello") == Ids{'t', 257, ' ', 257, 260});
  CHECK(t.encode(" the the") == Ids{258, 258});
  CHECK(t.encode("the<|endoftext|>", EncodeOptions{std::nullopt, true}) == Ids{'t', 257, 261});
  CHECK(t.encode("<|endoftext|>").size() > 1);
  CHECK(t.is_end_of_generation(261));
  for (const std::string s : {"the hello", " the the  ", "안녕 🇰🇷 x\r\n\ty", "\xFF\xFE"}) {
    CAPTURE(s);
    CHECK(t.decode(t.encode(s)) == s);
  }
  // Through GGUF.
  const Tokenizer g = via_gguf(dir, t);
  CHECK(g.encode("the hello") == Ids{'t', 257, ' ', 257, 260});
  CHECK(g.encode(" the the") == Ids{258, 258});
}

TEST_CASE("tiktoken ranks merge the lowest-rank pair and keep whole-token chunks", "[tokenizer]") {
  piquant::test::TempDir dir;
  const Tokenizer t = load_bytes(dir, "tokenizer.model", piquant::test::tiny_tiktoken());
  CHECK(t.kind_name() == "bpe-bytelevel");
  CHECK(t.encode("hello") == Ids{259});
  CHECK(t.encode("hello hello") == Ids{259, 260});
  CHECK(t.encode("hellx") == Ids{256, 257, 'x'});  // he (256) before ll (257); "hell" is no token
  CHECK(t.decode(t.encode("hello, 세상!")) == "hello, 세상!");
  const Tokenizer g = via_gguf(dir, t);
  CHECK(g.encode("hello hello") == Ids{259, 260});
  CHECK(g.encode("hellx") == Ids{256, 257, 'x'});
}

TEST_CASE("tokenizer.json with a Llama 3 Split regex and added tokens", "[tokenizer]") {
  piquant::test::TempDir dir;
  const Tokenizer t = load_bytes(dir, "tokenizer.json", piquant::test::tiny_tokenizer_json());
  CHECK(t.kind_name() == "bpe-bytelevel");
  CHECK(t.encode("the hello") == Ids{'t', 257, ' ', 257, 260});
  CHECK(t.encode("hello<|endoftext|>", EncodeOptions{false, true}).back() == 261);
  CHECK(t.decode({257, 261}) == "he");
  CHECK(t.decode({257, 261}, piquant::DecodeOptions{true}) == "he<|endoftext|>");
}

TEST_CASE("tokenizers survive a JSON serialization round trip", "[tokenizer]") {
  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("merges.txt"), piquant::test::tiny_merges_txt());
  const Tokenizer a = load_bytes(dir, "tokenizer.model", piquant::test::tiny_spm_model());
  const Tokenizer b = load_bytes(dir, "vocab.json", piquant::test::tiny_vocab_json());
  for (const Tokenizer* t : {&a, &b}) {
    const Tokenizer back = piquant::tokenizer_from_json(piquant::tokenizer_to_json(*t));
    CHECK(back.kind_name() == t->kind_name());
    for (const std::string s : {"hello hi", "the hello 한", " the the"}) {
      CHECK(back.encode(s) == t->encode(s));
    }
  }
  auto j = piquant::tokenizer_to_json(a);
  j.erase("pieces");
  CHECK_THROWS_AS(piquant::tokenizer_from_json(j), piquant::Error);
}

TEST_CASE("pre-tokenizers split as the Llama 3 and GPT-2 regexes do", "[tokenizer]") {
  using P = piquant::PreTokenizer;
  using S = std::vector<std::string>;
  CHECK(split(P::kLlama3, "Hello world's 1234567 don't   x\n\n y") ==
        S{"Hello", " world", "'s", " ", "123", "456", "7", " don", "'t", "  ", " x", "\n\n", " y"});
  CHECK(split(P::kLlama3, "I'M ok!!\n\nyes  ") == S{"I", "'M", " ok", "!!\n\n", "yes", "  "});
  CHECK(split(P::kQwen2, "x 123") == S{"x", " ", "1", "2", "3"});
  CHECK(split(P::kGpt2, "Hello world's 1234 I'M   x!!") ==
        S{"Hello", " world", "'s", " 1234", " I", "'", "M", "  ", " x", "!!"});
  // Unicode classes: Korean and CJK are letters, Arabic-Indic digits numbers, marks are not L.
  CHECK(split(P::kLlama3, "안녕 世界 ٣٤٥٦") == S{"안녕", " 世界", " ", "٣٤٥", "٦"});
  CHECK(split(P::kGpt2, "e\xCC\x81t\xC3\xA9") == S{"e", "\xCC\x81", "t\xC3\xA9"});
  CHECK(split(P::kSmolLM, "ab12 c") == S{"ab", "1", "2", " c"});
  // Invalid UTF-8 is kept byte for byte.
  std::string all;
  for (const auto& c : split(P::kLlama3, "a\xFF\xC3 b\x80")) all += c;
  CHECK(all == "a\xFF\xC3 b\x80");
}

TEST_CASE("streaming decode holds back split UTF-8 characters", "[tokenizer]") {
  piquant::test::TempDir dir;
  const Tokenizer t = load_bytes(dir, "tokenizer.model", piquant::test::tiny_spm_model());
  const std::string text = "hello 한국어 hi";
  piquant::TokenStream s(t);
  std::vector<std::string> pieces;
  for (TokenId id : t.encode(text)) pieces.push_back(s.push(id));
  std::string all;
  for (const auto& p : pieces) {
    CHECK(piquant::unicode::complete_utf8_prefix(p) == p.size());
    all += p;
  }
  CHECK(all + s.flush() == text);
  // A character that never completes is flushed as U+FFFD.
  piquant::TokenStream u(t);
  CHECK(u.push(3 + 0xED).empty());
  CHECK(u.flush() == "\xEF\xBF\xBD");
}

TEST_CASE("malformed tokenizer files give clear errors", "[tokenizer]") {
  piquant::test::TempDir dir;
  auto error_of = [&](const std::string& name, const std::string& bytes) -> std::string {
    piquant::test::write_file(dir.file(name), bytes);
    try {
      Tokenizer::load(dir.file(name));
    } catch (const piquant::Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  auto has = [](const std::string& msg, const char* what) {
    CAPTURE(msg, what);
    CHECK(msg.find(what) != std::string::npos);
  };
  const std::string spm = piquant::test::tiny_spm_model();
  has(error_of("tokenizer.model", spm.substr(0, spm.size() / 2)), "truncated");
  has(error_of("tokenizer.model", spm.substr(0, spm.size() / 2)), "tokenizer.model");
  {
    std::string bad_type = spm;
    std::string piece;
    piquant::test::pb_bytes(piece, 1, "x");
    piquant::test::pb_uint(piece, 3, 9);
    piquant::test::pb_bytes(bad_type, 1, piece);
    has(error_of("tokenizer.model", bad_type), "unknown piece type 9");
  }
  has(error_of("tokenizer.json", R"({"model": {"type": "BPE", "merges": []}})"),
      "missing field \"vocab\"");
  has(error_of("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {}, "merges": [)"),
      "invalid JSON");
  piquant::test::write_file(dir.file("merges.txt"), "#version: 0.2\nh e\nzz q\n");
  has(error_of("vocab.json", piquant::test::tiny_vocab_json()), "names unknown token");
  piquant::test::write_file(dir.file("merges.txt"), piquant::test::tiny_merges_txt());
  has(error_of("vocab.json", R"({"a": 0, "b": "x"})"), "no integer id");
  has(error_of("cl.tiktoken", "aGVsbG8= 0\n!!!! 1\n"), "line 2: invalid base64");
  has(error_of("cl.tiktoken", "aGVsbG8= 0\naGVsbG8= 0\n"), "repeats");
  const std::string bin = piquant::test::tiny_llama2c_tokenizer();
  has(error_of("tokenizer.bin", bin.substr(0, bin.size() - 3)), "tokenizer.bin");
  has(error_of("junk.bin", "\x7F" "ELF this is not a tokenizer"), "unrecognised tokenizer format");
  has(error_of("empty", ""), "empty");
  {
    piquant::GgufWriter w;
    w.add("tokenizer.ggml.model", piquant::GgufWriteValue::string("llama"));
    w.add("tokenizer.ggml.tokens", piquant::GgufWriteValue::strings({"<unk>", "<s>", "</s>", "a"}));
    w.add("tokenizer.ggml.token_type", piquant::GgufWriteValue::int32s({2, 3, 3}));
    has(error_of("t.gguf", w.to_bytes()), "token_type has 3 entries for 4 tokens");
  }
  {
    piquant::GgufWriter w;
    w.add("tokenizer.ggml.model", piquant::GgufWriteValue::string("gpt2"));
    w.add("tokenizer.ggml.tokens", piquant::GgufWriteValue::strings({"a", "b"}));
    w.add("tokenizer.ggml.merges", piquant::GgufWriteValue::strings({"a c"}));
    has(error_of("t.gguf", w.to_bytes()), "names a token not in the vocabulary");
  }
  CHECK_THROWS_AS(Tokenizer::load(dir.file("does-not-exist.model")), piquant::Error);
}
