// The tokenizers against the reference implementations: every case of every family in
// ../shared/tokenizers (ids exact, BOS as the case file states, round trips), read from the
// original files and from GGUF copies written with our GGUF writer (tokenizer.ggml.* keys).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <piquant/tokenizer.hpp>

#include "format/gguf_writer.hpp"
#include "test_util.hpp"
#include "tokenizer/tokenizer_gguf.hpp"
#include "unicode/unicode.hpp"

namespace {

using piquant::TokenId;
using piquant::Tokenizer;

struct Family {
  const char* dir;
  const char* file;  // the tokenizer file to load
};
constexpr Family kFamilies[] = {
    {"llama2-spm", "tokenizer.model"},
    {"gpt2", "vocab.json"},
    {"cl100k", "cl100k_base.tiktoken"},
};

// Checks every case of `cases` (cases.json parsed) against `tok`; `how` labels failures.
void check_cases(const Tokenizer& tok, const nlohmann::json& cases, const std::string& how) {
  const bool add_bos = cases.at("add_bos").get<bool>();
  size_t n = 0;
  for (const auto& c : cases.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<TokenId>>();
    CAPTURE(how, text);
    // The tokenizer's own convention must be the case file's...
    CHECK(tok.encode(text) == want);
    // ...and forcing it gives the same.
    piquant::EncodeOptions eo;
    eo.add_bos = add_bos;
    const auto ids = tok.encode(text, eo);
    REQUIRE(ids == want);
    if (add_bos) {
      REQUIRE(!ids.empty());
      CHECK(ids[0] == tok.bos_id());
      CHECK(tok.encode(text, piquant::EncodeOptions{false, false}) ==
            std::vector<TokenId>(want.begin() + 1, want.end()));
    }
    // Round trip: decode skips BOS.
    if (c.value("roundtrip", true)) CHECK(tok.decode(ids) == text);
    ++n;
  }
  CHECK(n >= 10);
}

nlohmann::json load_cases(const std::string& dir) {
  return nlohmann::json::parse(piquant::test::read_file(dir + "/cases.json"));
}

}  // namespace

TEST_CASE("every reference tokenizer case is reproduced id for id", "[tokenizer][shared]") {
  for (const Family& f : kFamilies) {
    const std::string path =
        piquant::test::shared_file(std::string("tokenizers/") + f.dir + "/" + f.file);
    if (path.empty()) return;
    const std::string dir = piquant::test::shared_dir() + "/tokenizers/" + f.dir;
    const Tokenizer tok = Tokenizer::load(path);
    check_cases(tok, load_cases(dir), std::string(f.dir) + " from " + f.file);
  }
}

TEST_CASE("every reference tokenizer case is reproduced through a GGUF copy", "[tokenizer][shared]") {
  piquant::test::TempDir tmp;
  for (const Family& f : kFamilies) {
    const std::string path =
        piquant::test::shared_file(std::string("tokenizers/") + f.dir + "/" + f.file);
    if (path.empty()) return;
    const std::string dir = piquant::test::shared_dir() + "/tokenizers/" + f.dir;
    const Tokenizer orig = Tokenizer::load(path);
    piquant::GgufWriter w;
    w.add("general.architecture", piquant::GgufWriteValue::string("llama"));
    piquant::tokenizer_to_gguf(orig, w);
    const std::string gguf = tmp.file(std::string(f.dir) + ".gguf");
    w.write(gguf);
    const Tokenizer tok = Tokenizer::load(gguf);
    CHECK(tok.vocab_size() == orig.vocab_size());
    CHECK(tok.bos_id() == orig.bos_id());
    CHECK(tok.eos_id() == orig.eos_id());
    check_cases(tok, load_cases(dir), std::string(f.dir) + " through GGUF");
  }
}

TEST_CASE("streaming decode of Korean emits only whole UTF-8 characters", "[tokenizer][shared]") {
  for (const Family& f : kFamilies) {
    const std::string path =
        piquant::test::shared_file(std::string("tokenizers/") + f.dir + "/" + f.file);
    if (path.empty()) return;
    const Tokenizer tok = Tokenizer::load(path);
    const std::string text =
        "안녕하세요, 세계! 한국어 토크나이저는 글자를 여러 토큰으로 나눕니다. 뷁 똠방각하 🇰🇷";
    const auto ids = tok.encode(text);
    piquant::TokenStream stream(tok);
    std::string all;
    size_t split_chars = 0;  // characters whose bytes came from more than one token
    for (TokenId id : ids) {
      const std::string raw = tok.token_bytes(id);
      if (piquant::unicode::complete_utf8_prefix(raw) != raw.size()) ++split_chars;
      const std::string piece = stream.push(id);
      CAPTURE(f.dir, id, piece);
      // Every piece is whole, valid UTF-8.
      for (size_t i = 0; i < piece.size();) {
        char32_t cp;
        const size_t len = piquant::unicode::decode_utf8(piece, i, &cp);
        REQUIRE(cp < piquant::unicode::kInvalidBase);
        i += len;
      }
      all += piece;
    }
    all += stream.flush();
    CHECK(all == text);
    // The test means something only when some token ends mid-character.
    CHECK(split_chars > 0);
  }
}
