// Tokenizer throughput: encoding 1 MB (and 100 KB, to show linear scaling) of mixed English and
// Korean text with the tiktoken-format cl100k ranks and Llama 3's pre-tokenizer (../shared), plus
// GPT-2 and the Llama 2 SentencePiece model for comparison, and a pathological one-word input.
// Counters: bytes_per_second (MB/s of input text), tokens.  Needs ../shared/tokenizers; without
// it every benchmark reports "skipped".
#include <benchmark/benchmark.h>
#include <piquant/error.hpp>
#include <piquant/tokenizer.hpp>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <sys/stat.h>

namespace {

// Deterministic mixed text: English and Korean sentences (with numbers, code-ish bits and
// punctuation) drawn by a seeded generator until `bytes` long; cut on a character boundary.
std::string mixed_text(size_t bytes) {
  static const char* const kSentences[] = {
      "The quick brown fox jumps over the lazy dog. ",
      "It's 2024, and the Raspberry Pi 5 runs a 1.1B model at 12.5 tokens/s! ",
      "We'll measure throughput in MB/s; don't forget the newline.\n",
      "    for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
      "Visit https://example.org/path?q=tokenizer&lang=ko for details. ",
      "안녕하세요, 세계! 오늘은 날씨가 정말 좋네요. ",
      "한국어 토크나이저는 글자를 여러 바이트 토큰으로 나눌 수 있습니다. ",
      "서울의 인구는 약 9,400,000명이며, 2023년 기준입니다.\n",
      "라즈베리 파이에서 언어 모델을 실행하는 것은 재미있는 일입니다. ",
      "\n\n",
  };
  std::mt19937 rng(12345);
  std::string s;
  s.reserve(bytes + 256);
  while (s.size() < bytes) s += kSentences[rng() % (sizeof(kSentences) / sizeof(*kSentences))];
  size_t cut = bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  s.resize(cut);
  return s;
}

// Tokenizers load once per process; nullptr (benchmark skipped) when ../shared is absent.
const piquant::Tokenizer* tokenizer(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<piquant::Tokenizer>> cache;
  auto it = cache.find(rel);
  if (it != cache.end()) return it->second.get();
  const std::string path = std::string(PIQUANT_SHARED_DIR) + "/tokenizers/" + rel;
  struct stat st {};
  std::unique_ptr<piquant::Tokenizer> t;
  if (::stat(path.c_str(), &st) == 0) t = std::make_unique<piquant::Tokenizer>(piquant::Tokenizer::load(path));
  return (cache[rel] = std::move(t)).get();
}

void encode_bench(benchmark::State& state, const std::string& rel, const std::string& text) {
  const piquant::Tokenizer* t = tokenizer(rel);
  if (t == nullptr) {
    state.SkipWithError(("skipped: ../shared/tokenizers/" + rel + " not found").c_str());
    return;
  }
  size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = t->encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["MB"] = static_cast<double>(text.size()) / 1e6;
}

void BM_encode_cl100k_llama3_pre(benchmark::State& state) {
  encode_bench(state, "cl100k/cl100k_base.tiktoken", mixed_text(static_cast<size_t>(state.range(0))));
}
void BM_encode_gpt2(benchmark::State& state) {
  encode_bench(state, "gpt2/vocab.json", mixed_text(static_cast<size_t>(state.range(0))));
}
void BM_encode_llama2_spm(benchmark::State& state) {
  encode_bench(state, "llama2-spm/tokenizer.model", mixed_text(static_cast<size_t>(state.range(0))));
}
// Worst case for chunk-level BPE: one 100 KB "word" (no pre-tokenizer split at all).
void BM_encode_cl100k_one_word(benchmark::State& state) {
  std::string s;
  while (s.size() < static_cast<size_t>(state.range(0))) s += "abcdefghij한국";
  encode_bench(state, "cl100k/cl100k_base.tiktoken", s);
}

void BM_decode_cl100k(benchmark::State& state) {
  const piquant::Tokenizer* t = tokenizer("cl100k/cl100k_base.tiktoken");
  if (t == nullptr) {
    state.SkipWithError("skipped: ../shared/tokenizers/cl100k not found");
    return;
  }
  const std::string text = mixed_text(static_cast<size_t>(state.range(0)));
  const auto ids = t->encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(t->decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

constexpr int64_t kMB = 1 << 20;
BENCHMARK(BM_encode_cl100k_llama3_pre)->ArgName("bytes")->Arg(100 << 10)->Arg(kMB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_gpt2)->ArgName("bytes")->Arg(kMB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_llama2_spm)->ArgName("bytes")->Arg(kMB)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_cl100k_one_word)->ArgName("bytes")->Arg(100 << 10)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_cl100k)->ArgName("bytes")->Arg(kMB)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
