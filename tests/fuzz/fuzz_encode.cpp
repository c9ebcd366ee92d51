// libFuzzer: arbitrary text through the pre-tokenizers and both BPE flavours (tiny built-in
// vocabularies). Checks, not just "no crash": pre-tokenizer chunks tile the text in order, and
// decode(encode(text)) == text for byte-level BPE and SentencePiece with byte fallback (there
// with U+2581 read as a space).
#include "fuzz_util.hpp"
#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer_fixtures.hpp"

namespace {

struct Tokenizers {
  piquant::Tokenizer spm, tiktoken;
  Tokenizers()
      : spm(piquant::parse_sentencepiece_model(piquant::test::tiny_spm_model(), "spm")),
        tiktoken(piquant::parse_tiktoken(piquant::test::tiny_tiktoken(), "tiktoken")) {}
};

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_encode: %s\n", what);
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers tok;
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (auto p : {piquant::PreTokenizer::kGpt2, piquant::PreTokenizer::kLlama3,
                 piquant::PreTokenizer::kQwen2, piquant::PreTokenizer::kSmolLM}) {
    std::vector<std::pair<size_t, size_t>> chunks;
    piquant::pretokenize(p, text, chunks);
    size_t at = 0;
    for (const auto& [b, e] : chunks) {
      require(b == at && e > b && e <= text.size(), "pre-tokenizer chunks do not tile the text");
      at = e;
    }
    require(at == text.size(), "pre-tokenizer chunks do not cover the text");
  }
  for (const bool special : {false, true}) {
    piquant::EncodeOptions eo;
    eo.parse_special = special;
    eo.add_bos = false;
    require(tok.tiktoken.decode(tok.tiktoken.encode(text, eo)) == text,
            "tiktoken round trip differs");
    piquant::DecodeOptions show;
    show.show_special = true;
    // SentencePiece writes spaces as U+2581 inside pieces, so a U+2581 in the text comes back
    // as a space (sentencepiece itself does the same).
    std::string want;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        want += ' ';
        i += 3;
      } else {
        want += text[i++];
      }
    }
    require(tok.spm.decode(tok.spm.encode(text, eo), show) == want,
            "SentencePiece round trip differs");
  }
  return 0;
}
