#include "convert/calibrate.hpp"

#include <chrono>
#include <map>
#include <thread>

#include "model/graph.hpp"
#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

std::unique_ptr<Model::Impl> load_f32_model(const ModelSource& src, const PreQuantizeHook& hook) {
  auto m = std::make_unique<Model::Impl>();
  m->config = src.config();
  m->rope_layout = src.rope_layout();
  m->tokenizer = src.tokenizer();
  m->source = "f32 copy for calibration";
  std::map<std::string, Tensor> by_name;
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const SourceTensor& st = src.tensors()[i];
    auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(st.rows * st.cols));
    src.read_f32(i, buf->data());
    if (hook) hook(st.name, st.rows, st.cols, buf->data());
    Tensor t;
    t.name = st.name;
    t.rows = st.rows;
    t.cols = st.cols;
    t.data = buf->data();
    m->storage.push_back(buf);
    by_name[st.name] = t;
  }
  auto get = [&](const std::string& n) {
    const auto it = by_name.find(n);
    return it == by_name.end() ? Tensor{} : it->second;
  };
  m->tok_embd = get("token_embd.weight");
  m->output_norm = get("output_norm.weight");
  m->output = m->config.tied_classifier ? m->tok_embd : get("output.weight");
  m->output.name = "output.weight";
  m->layers.resize(static_cast<size_t>(m->config.n_layers));
  for (int l = 0; l < m->config.n_layers; ++l) {
    LayerWeights& w = m->layers[static_cast<size_t>(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    w.attn_norm = get(b + "attn_norm.weight");
    w.wq = get(b + "attn_q.weight");
    w.wk = get(b + "attn_k.weight");
    w.wv = get(b + "attn_v.weight");
    w.wo = get(b + "attn_output.weight");
    w.bq = get(b + "attn_q.bias");
    w.bk = get(b + "attn_k.bias");
    w.bv = get(b + "attn_v.bias");
    w.q_norm = get(b + "attn_q_norm.weight");
    w.k_norm = get(b + "attn_k_norm.weight");
    w.ffn_norm = get(b + "ffn_norm.weight");
    w.w_gate = get(b + "ffn_gate.weight");
    w.w_up = get(b + "ffn_up.weight");
    w.w_down = get(b + "ffn_down.weight");
  }
  const Tensor freqs = get("rope_freqs.weight");
  finish_model(*m, freqs.empty() ? nullptr : freqs.f32());
  return m;
}

Calibration calibrate(const ModelSource& src, const std::vector<TokenId>& tokens, int window,
                      int threads, const PreQuantizeHook& hook) {
  const auto t0 = std::chrono::steady_clock::now();
  if (tokens.empty()) throw Error(ErrorCode::kInvalidArgument, "calibration: no tokens");
  const auto model = load_f32_model(src, hook);
  const ModelConfig& c = model->config;
  for (TokenId t : tokens) {
    if (t < 0 || t >= c.vocab_size) {
      throw Error(ErrorCode::kOutOfRange,
                  "calibration: token id " + std::to_string(t) + " is outside the vocabulary");
    }
  }
  window = std::max(2, std::min(window, c.max_seq_len));
  std::map<std::string, std::vector<double>> sums;
  ThreadPool pool(
      threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  Calibration out;
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  for (size_t start = 0; start < tokens.size(); start += static_cast<size_t>(window)) {
    const size_t n = std::min(tokens.size() - start, static_cast<size_t>(window));
    Forward fwd(*model, static_cast<int>(n), KvType::kF32, pool);
    fwd.on_matmul_input = [&](const Tensor& w, const float* x, int rows) {
      std::vector<double>& s = sums[w.name];
      const size_t cols = static_cast<size_t>(w.cols);
      s.resize(cols, 0.0);
      for (int r = 0; r < rows; ++r) {
        const float* xr = x + static_cast<size_t>(r) * cols;
        for (size_t i = 0; i < cols; ++i) s[i] += double(xr[i]) * double(xr[i]);
      }
    };
    std::vector<float> all;  // every token's logits, so the classifier sees every token too
    fwd.eval(tokens.data() + start, static_cast<int>(n), 0, logits.data(), &all);
    out.tokens += n;
  }
  for (auto& [name, s] : sums) {
    std::vector<float> imp(s.size());
    double mean = 0;
    for (size_t i = 0; i < s.size(); ++i) mean += s[i] / double(out.tokens);
    mean /= double(s.size());
    // A small floor keeps channels that never fired from being ignored entirely.
    for (size_t i = 0; i < s.size(); ++i) {
      imp[i] = static_cast<float>(std::max(s[i] / double(out.tokens), 1e-3 * mean));
    }
    out.importance[name] = std::move(imp);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace piquant
