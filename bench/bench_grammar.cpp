// bench_grammar: what grammar-constrained decoding costs per generated token, against a decode
// step of a TinyLlama-1.1B-shaped q4 model (docs/performance.md, "Structured output").
//
// For each vocabulary (Llama 2 SentencePiece, 32000 tokens; cl100k BPE, 100277 tokens, the
// base of Llama 3's 128256; both from ../shared/tokenizers) a 256-token JSON document (the
// tokenizer's own encoding of a pretty-printed robot plan) is replayed under the any-JSON-object
// grammar (piquant-run -j): each step masks the logits and then accepts the document's next
// token, as Session::generate does. We print the median, 90th percentile and maximum of mask +
// advance per token, with one matcher for the whole document (as in a generation) and with a
// fresh matcher at every step (no state or mask seen before), and the median decode step (ms/token, 8-token prompt, 64 tokens, 1 and 2
// threads) of the model with seeded random q4 weights (q8 embeddings and classifier, as a Q4_0
// GGUF's Q6_K classifier is loaded). Usage: bench_grammar [--layers N] [--no-model]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <piquant/piquant.hpp>
#include <string>
#include <vector>

#include "model/linear.hpp"
#include "model/model_impl.hpp"
#include "bench_model.hpp"

namespace {

using clk = std::chrono::steady_clock;
namespace k = piquant::kernels;

double secs(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

// A pretty-printed JSON document with strings, numbers, nesting: what a robot planner emits.
std::string document() {
  std::string d = "{\n  \"plan\": \"tidy the kitchen table and report what was found\",\n  \"steps\": [\n";
  const char* actions[] = {"move_to", "pick", "place", "look", "say"};
  const char* targets[] = {"table", "red cup", "sink", "drawer number 2", "the user"};
  for (int i = 0; i < 12; ++i) {
    d += "    {\"id\": " + std::to_string(i + 1) + ", \"action\": \"" + actions[i % 5] +
         "\", \"target\": \"" + targets[(i * 3) % 5] + "\", \"speed\": 0." + std::to_string(3 + i % 6) +
         ", \"checked\": " + (i % 2 ? "true" : "false") + "}" + (i < 11 ? ",\n" : "\n");
  }
  d += "  ],\n  \"notes\": null\n}";
  return d;
}

void bench_vocab(const char* label, const std::string& path, double decode_ms) {
  const auto t_build = clk::now();
  const piquant::Tokenizer tok = piquant::Tokenizer::load(path);
  const auto vocab = piquant::GrammarVocab::build(tok);
  const double build_s = secs(t_build);
  const auto grammar = piquant::Grammar::json_object();
  piquant::EncodeOptions eo;
  eo.add_bos = false;
  std::vector<piquant::TokenId> ids = tok.encode(document(), eo);
  // SentencePiece adds a dummy-prefix space to the first piece: accept the text of the first
  // token as the document has it, then replay the rest token by token.
  const std::string first = tok.decode({ids[0]});
  ids.erase(ids.begin());
  if (ids.size() > 256) ids.resize(256);
  // Warm: one matcher for the whole document, as in a generation (its caches of states and
  // masks carry over from token to token). Cold: a fresh matcher brought to each step's prefix
  // (untimed), so every step computes its mask from nothing: the worst case of a state never
  // seen before in the generation.
  std::vector<double> warm, cold;
  std::vector<size_t> allowed_counts;
  std::vector<float> logits(tok.vocab_size());
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int rep = 0; rep < 5; ++rep) {
    piquant::GrammarMatcher m(grammar, vocab);
    m.accept_text(first);
    for (piquant::TokenId id : ids) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      const auto t0 = clk::now();
      const size_t n = m.mask_logits(logits.data(), logits.size());
      if (logits[static_cast<size_t>(id)] == ninf) {
        std::printf("%s: the mask refuses token %d '%s'\n", label, id, tok.piece(id).c_str());
        return;
      }
      m.accept_token(id);
      warm.push_back(secs(t0) * 1e3);
      if (rep == 0) allowed_counts.push_back(n);
    }
  }
  std::string prefix = first;
  for (piquant::TokenId id : ids) {
    piquant::GrammarMatcher m(grammar, vocab);
    if (!m.accept_text(prefix)) {
      std::printf("%s: the grammar refuses the document's prefix\n", label);
      return;
    }
    const auto t0 = clk::now();
    m.mask_logits(logits.data(), logits.size());
    m.accept_token(id);
    cold.push_back(secs(t0) * 1e3);
    prefix += tok.token_bytes(id, 1000);
  }
  std::sort(allowed_counts.begin(), allowed_counts.end());
  const double med = percentile(warm, 0.5);
  std::printf("%s: vocab %zu, trie built in %.1f ms, %zu tokens, allowed per step median %zu max %zu\n",
              label, tok.vocab_size(), build_s * 1e3, ids.size(), allowed_counts[allowed_counts.size() / 2],
              allowed_counts.back());
  std::printf("  mask+advance per token, one matcher (x5): median %.3f ms, p90 %.3f ms, max %.3f ms",
              med, percentile(warm, 0.9), percentile(warm, 1.0));
  if (decode_ms > 0) std::printf(" | median = %.2f %% of a %.1f ms decode step", 100.0 * med / decode_ms, decode_ms);
  std::printf("\n  mask+advance per token, fresh matcher each step (cold): median %.3f ms, p90 %.3f ms, max %.3f ms",
              percentile(cold, 0.5), percentile(cold, 0.9), percentile(cold, 1.0));
  if (decode_ms > 0) std::printf(" | median = %.1f %%", 100.0 * percentile(cold, 0.5) / decode_ms);
  std::printf("\n");
}

using bench_util::tinyllama_q4;  // bench_model.hpp, shared with bench_lora

double decode_ms(const std::shared_ptr<const piquant::Model>& model, int threads) {
  piquant::Session s(model, {256, threads});
  std::vector<piquant::TokenId> prompt(8);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<piquant::TokenId>(100 + 37 * i);
  s.eval(prompt);
  std::vector<double> ms;
  for (int i = 0; i < 64; ++i) {
    const auto t0 = clk::now();
    s.eval({static_cast<piquant::TokenId>(1000 + i)});
    ms.push_back(secs(t0) * 1e3);
  }
  return percentile(ms, 0.5);
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 22;
  bool with_model = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--layers") && i + 1 < argc) layers = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--no-model")) with_model = false;
    else {
      std::fprintf(stderr, "usage: bench_grammar [--layers N] [--no-model]\n");
      return 2;
    }
  }
  double step[3] = {0, 0, 0};
  if (with_model) {
    const auto t0 = clk::now();
    auto model = tinyllama_q4(layers, 1);
    std::printf("TinyLlama-shaped q4 model, %d layers, built in %.1f s\n", layers, secs(t0));
    for (int t : {1, 2}) {
      step[t] = decode_ms(model, t);
      std::printf("decode step, %d thread(s): median %.1f ms/token\n", t, step[t]);
    }
  }
  const std::string shared = PIQUANT_SHARED_DIR;
  struct V { const char* label; std::string path; };
  for (const V& v : {V{"llama2-spm (SentencePiece)", shared + "/tokenizers/llama2-spm/tokenizer.model"},
                     V{"cl100k (tiktoken BPE)", shared + "/tokenizers/cl100k/cl100k_base.tiktoken"}}) {
    try {
      bench_vocab(v.label, v.path, step[2]);
    } catch (const piquant::Error& e) {
      std::printf("%s: skipped (%s)\n", v.label, e.what());
    }
  }
  if (with_model) std::printf("(fractions against the 2-thread step; the 1-thread step is %.1f ms)\n", step[1]);
  return 0;
}
