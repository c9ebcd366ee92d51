// GGUF K-quant files load natively (issue 18): Q4_K / Q5_K / Q6_K / Q5_0 / Q5_1 tensors are
// kept in their own types (no dequantize + re-quantize), piquant's dequantization of every
// tensor reproduces llama.cpp's digests (../shared/models/kquants, made by llama-quantize), the
// native kernels give the logits of the dequantized f32 weights through the reference forward
// pass, and bad K-quant tensors (row length, truncated data, non-finite scales) give clear
// errors naming the tensor.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <piquant/piquant.hpp>
#include <random>

#include "common/fp16.hpp"
#include "common/pack.hpp"
#include "format/gguf.hpp"
#include "load/gguf_model.hpp"
#include "format/gguf_writer.hpp"
#include "format/kquants.hpp"
#include "ref_forward.hpp"
#include "sha256.hpp"
#include "test_util.hpp"
#include "threads/thread_pool.hpp"

namespace {

namespace k = piquant::kernels;
using piquant::DType;
using piquant::Tensor;

// A tensor's values as f32, through piquant's own unpack + dequantization.
std::vector<float> dequant(const Tensor& t) {
  std::vector<float> out(t.numel());
  const auto wt = t.type;
  const size_t r = static_cast<size_t>(t.rows), c = static_cast<size_t>(t.cols);
  if (piquant::is_quantized(t.type) && t.layout == piquant::TensorLayout::kPacked) {
    std::vector<uint8_t> rows(r * k::row_bytes(wt, c));
    k::unpack(wt, t.data, r, c, rows.data());
    k::dequantize_rows(wt, rows.data(), r, c, out.data());
  } else {
    k::dequantize_rows(wt, t.data, r, c, out.data());
  }
  return out;
}

std::map<std::string, const Tensor*> tensors_by_name(const piquant::Model::Impl& m) {
  std::map<std::string, const Tensor*> out;
  for (const Tensor* t : {&m.tok_embd, &m.output_norm, &m.output}) out[t->name] = t;
  for (const piquant::LayerWeights& l : m.layers) {
    for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate,
                            &l.w_up, &l.w_down}) {
      out[t->name] = t;
    }
  }
  return out;
}

// The piquant type a GGUF tensor type must be kept as (no re-quantization).
DType kept_as(const std::string& ggml) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::kF32},   {"F16", DType::kF16},   {"Q8_0", DType::kQ8},   {"Q4_0", DType::kQ4},
      {"Q4_1", DType::kQ4M},  {"Q4_K", DType::kQ4K},  {"Q5_K", DType::kQ5K},  {"Q6_K", DType::kQ6K},
      {"Q5_0", DType::kQ5_0}, {"Q5_1", DType::kQ5_1}};
  const auto it = m.find(ggml);
  if (it == m.end()) FAIL("no native piquant type for " << ggml);
  return it->second;
}

// The same model with every matrix dequantized to f32 (row-major), for the reference forward.
// Norms point into `m`, which must outlive the result.
std::unique_ptr<piquant::Model::Impl> dequantized_model(const piquant::Model::Impl& m,
                                                        std::vector<std::vector<float>>& keep) {
  auto f = std::make_unique<piquant::Model::Impl>();
  f->config = m.config;
  f->rope_layout = m.rope_layout;
  f->rope_freqs = m.rope_freqs;
  auto widen = [&](const Tensor& t) {
    if (t.empty() || t.type == DType::kF32) return t;
    keep.push_back(dequant(t));
    Tensor o = t;
    o.type = DType::kF32;
    o.layout = piquant::TensorLayout::kRows;
    o.data = keep.back().data();
    return o;
  };
  f->tok_embd = widen(m.tok_embd);
  f->output_norm = m.output_norm;
  f->output = widen(m.output);
  for (const piquant::LayerWeights& l : m.layers) {
    piquant::LayerWeights w = l;
    for (Tensor* t : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) *t = widen(*t);
    f->layers.push_back(w);
  }
  return f;
}

std::vector<std::string> kquant_files() {
  std::vector<std::string> out;
  const std::string dir = piquant::test::shared_file("models/kquants");
  if (dir.empty()) return out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0) out.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

using piquant::test::load_error;

struct LogitCompare {
  double rel_rms = 0;  ///< sqrt(sum (a - b)^2 / sum b^2) over all positions
  size_t top1 = 0, positions = 0;
  /// Positions whose reference top-1 leads the runner-up by more than 4x that position's RMS
  /// logit difference (no near-tie), and how many of them agree.
  size_t clear_top1 = 0, clear_positions = 0;
};

// Runs `toks` through the native path (q8 activations, f32 KV cache) and the f32 reference
// forward on the dequantized weights.
LogitCompare native_vs_reference(const std::shared_ptr<const piquant::Model>& model,
                                 const std::vector<piquant::TokenId>& toks) {
  std::vector<std::vector<float>> keep;
  const auto f32 = dequantized_model(model->impl(), keep);
  REQUIRE(piquant::all_f32(*f32));
  piquant::SessionOptions so;
  so.n_threads = 2;
  so.kv_type = piquant::KvCacheType::kF32;
  piquant::Session s(model, so);
  std::vector<float> got;
  s.eval(toks, &got);
  const size_t vocab = static_cast<size_t>(model->config().vocab_size);
  REQUIRE(got.size() == toks.size() * vocab);
  piquant::ForwardState st(f32->config, 64);
  piquant::ThreadPool pool(2);
  LogitCompare r;
  double err2 = 0, ref2 = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    piquant::forward_token(*f32, st, toks[p], static_cast<int>(p), pool);
    const float* a = got.data() + p * vocab;
    const float* b = st.logits.data();
    const bool agree = std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b;
    r.top1 += agree;
    double e2 = 0;
    for (size_t i = 0; i < vocab; ++i) {
      REQUIRE(std::isfinite(a[i]));
      e2 += double(a[i] - b[i]) * double(a[i] - b[i]);
      ref2 += double(b[i]) * double(b[i]);
    }
    err2 += e2;
    std::vector<float> sorted(b, b + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (double(sorted[0] - sorted[1]) > 4.0 * std::sqrt(e2 / double(vocab))) {
      ++r.clear_positions;
      r.clear_top1 += agree;
    }
  }
  r.positions = toks.size();
  r.rel_rms = std::sqrt(err2 / ref2);
  return r;
}

// --- a synthetic mixed K-quant GGUF (no ../shared needed) ----------------------------------

// One random GGUF block of ggml type `type` whose values are roughly N(0, sd): random quants,
// finite scales sized for sd.
void random_block(uint32_t type, uint8_t* b, float sd, std::mt19937& rng) {
  const piquant::GgmlTypeInfo* info = piquant::ggml_type_info(type);
  for (uint32_t i = 0; i < info->type_size; ++i) b[i] = static_cast<uint8_t>(rng());
  auto put = [&](size_t off, float v) {
    const uint16_t h = k::fp16_from_f32(v);
    std::memcpy(b + off, &h, 2);
  };
  switch (static_cast<piquant::GgmlType>(type)) {
    case piquant::GgmlType::kQ4_K:  // w = d sc q - dmin m: sc, m ~ 0..63, q 0..15
      put(0, sd / 100.0f);
      put(2, sd / 100.0f);
      break;
    case piquant::GgmlType::kQ5_K: put(0, sd / 200.0f), put(2, sd / 100.0f); break;
    case piquant::GgmlType::kQ6_K:  // w = d sc (q - 32), sc int8
      for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(static_cast<int8_t>(int(rng() % 64) - 32));
      put(208, sd / 300.0f);
      break;
    case piquant::GgmlType::kQ5_0: put(0, sd / 9.0f); break;
    case piquant::GgmlType::kQ5_1: put(0, sd / 9.0f), put(2, -1.7f * sd); break;
    case piquant::GgmlType::kQ8_0: put(0, sd / 70.0f); break;
    default: FAIL("random_block: type " << type);
  }
}

constexpr uint32_t kF32 = 0, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14;

struct SynthSpec {
  uint32_t embd = kQ4_K, output = kQ6_K, q = kQ4_K, kk = kQ5_K, v = kQ6_K, o = kQ5_1;
  uint32_t gate = kQ4_K, up = kQ5_K, down = kQ5_0;  // hidden 320: not a multiple of 256
};

// dim 256, hidden 320, 2 layers, 4 heads / 2 KV heads, vocab 96: every K-quant and q5 type.
void write_synthetic(const std::string& path, const SynthSpec& s, uint32_t seed = 5) {
  piquant::GgufWriter w;
  using V = piquant::GgufWriteValue;
  const uint64_t d = 256, h = 320, hd = 64, q = 4 * hd, kv = 2 * hd, vocab = 96;
  w.add("general.architecture", V::string("llama"));
  w.add("llama.embedding_length", V::u32(d));
  w.add("llama.block_count", V::u32(2));
  w.add("llama.feed_forward_length", V::u32(h));
  w.add("llama.attention.head_count", V::u32(4));
  w.add("llama.attention.head_count_kv", V::u32(2));
  w.add("llama.context_length", V::u32(64));
  w.add("llama.attention.layer_norm_rms_epsilon", V::f32(1e-5f));
  std::mt19937 rng(seed);
  auto mat = [&](const std::string& name, uint64_t rows, uint64_t cols, uint32_t type, float sd) {
    const piquant::GgmlTypeInfo* info = piquant::ggml_type_info(type);
    std::string bytes(rows * cols / info->block_size * info->type_size, '\0');
    for (size_t b = 0; b < bytes.size() / info->type_size; ++b) {
      random_block(type, reinterpret_cast<uint8_t*>(bytes.data()) + b * info->type_size, sd, rng);
    }
    w.add_tensor(name, type, {cols, rows}, bytes);
  };
  auto vec = [&](const std::string& name, uint64_t n) {
    std::vector<float> v(n);
    std::normal_distribution<float> nd(1.0f, 0.1f);
    for (float& x : v) x = nd(rng);
    w.add_tensor(name, kF32, {n}, std::string(reinterpret_cast<const char*>(v.data()), n * 4));
  };
  mat("token_embd.weight", vocab, d, s.embd, 1.0f);
  vec("output_norm.weight", d);
  mat("output.weight", vocab, d, s.output, 1.0f / 16);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", d);
    mat(b + "attn_q.weight", q, d, s.q, 1.0f / 16);
    mat(b + "attn_k.weight", kv, d, s.kk, 1.0f / 16);
    mat(b + "attn_v.weight", kv, d, s.v, 1.0f / 16);
    mat(b + "attn_output.weight", d, q, s.o, 1.0f / 16);
    vec(b + "ffn_norm.weight", d);
    mat(b + "ffn_gate.weight", h, d, s.gate, 1.0f / 16);
    mat(b + "ffn_up.weight", h, d, s.up, 1.0f / 16);
    mat(b + "ffn_down.weight", d, h, s.down, 1.0f / 18);
  }
  w.write(path);
}

// Where tensor `name`'s data starts in the file at `path`.
size_t tensor_file_offset(const std::string& path, const std::string& name) {
  const piquant::GgufFile f(path);
  const piquant::GgufTensorInfo* t = f.find_tensor(name);
  REQUIRE(t != nullptr);
  return f.data_offset() + t->offset;
}

}  // namespace

TEST_CASE("sha256 of the test helper matches FIPS 180-4's examples", "[lib][kquant]") {
  CHECK(piquant::test::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(piquant::test::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 2 blocks
  CHECK(piquant::test::sha256_hex(m.data(), m.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("K-quant GGUF files keep their types and dequantize to llama.cpp's digests",
          "[lib][gguf][kquant]") {
  const auto files = kquant_files();
  if (files.empty()) return;  // shared_file WARNed: ../shared is absent
  for (const std::string& path : files) {
    CAPTURE(path);
    const std::string json_path = path.substr(0, path.size() - 5) + ".dequant.json";
    std::ifstream in(json_path);
    REQUIRE(in.good());
    const nlohmann::json digests = nlohmann::json::parse(in);
    const piquant::GgufFile gguf(path);
    const auto model = piquant::Model::load(path);
    CHECK(model->notices().empty());  // nothing re-quantized
    const auto by_name = tensors_by_name(model->impl());
    std::map<std::string, int> types;
    size_t checked = 0;
    for (const auto& d : digests.at("tensors")) {
      const std::string name = d.at("name");
      CAPTURE(name);
      const piquant::GgufTensorInfo* gt = gguf.find_tensor(name);
      REQUIRE(gt != nullptr);
      const std::string ggml = piquant::ggml_type_info(gt->type)->name;
      const auto it = by_name.find(name);
      REQUIRE(it != by_name.end());
      const Tensor& t = *it->second;
      CHECK(t.type == kept_as(ggml));
      ++types[ggml + "->" + piquant::to_string(t.type)];
      const std::vector<float> v = dequant(t);
      REQUIRE(v.size() == gt->n_elements);
      const std::vector<double> first = d.at("first");
      for (size_t i = 0; i < first.size(); ++i) CHECK(double(v[i]) == first[i]);
      CHECK(piquant::test::sha256_hex(v.data(), v.size() * 4) == d.at("sha256_f32").get<std::string>());
      ++checked;
    }
    CHECK(checked == gguf.tensors().size());
    std::string summary;
    for (const auto& [tt, n] : types) summary += " " + tt + " x" + std::to_string(n);
    std::printf("kquant digests: %s: %zu tensors reproduce llama.cpp's sha256;%s\n",
                path.substr(path.rfind('/') + 1).c_str(), checked, summary.c_str());
  }
}

TEST_CASE("K-quant GGUF files run with the logits of their dequantized weights",
          "[lib][gguf][kquant]") {
  const auto files = kquant_files();
  if (files.empty()) return;
  const std::vector<piquant::TokenId> toks = {1, 450, 4996, 17354, 1701, 29916, 432, 17204};
  for (const std::string& path : files) {
    CAPTURE(path);
    const auto model = piquant::Model::load(path);
    const LogitCompare c = native_vs_reference(model, toks);
    // Greedy decoding: the native path and the reference pick the same ids.
    piquant::GenerateOptions go;
    go.max_tokens = 6;
    go.sampler.temperature = 0;
    go.stop_at_end_of_generation = false;
    piquant::SessionOptions so;
    so.n_threads = 2;
    so.kv_type = piquant::KvCacheType::kF32;
    piquant::Session s(model, so);
    const auto native = s.generate_ids({1, 450}, nullptr, go).generated_ids;
    std::vector<std::vector<float>> keep;
    const auto f32 = dequantized_model(model->impl(), keep);
    piquant::ForwardState st(f32->config, 64);
    piquant::ThreadPool pool(2);
    std::vector<piquant::TokenId> ref;
    piquant::TokenId tok = 1;
    const int vocab = f32->config.vocab_size;
    for (int p = 0; p < 7; ++p) {
      piquant::forward_token(*f32, st, tok, p, pool);
      tok = p == 0 ? 450 : static_cast<piquant::TokenId>(std::max_element(st.logits.begin(), st.logits.begin() + vocab) - st.logits.begin());
      if (p >= 1) ref.push_back(tok);
    }
    std::printf("kquant logits: %s: native vs f32 reference on the dequantized weights: relative RMS "
                "error %.5f, top-1 %zu/%zu (%zu/%zu without near-ties); greedy ids %s\n",
                path.substr(path.rfind('/') + 1).c_str(), c.rel_rms, c.top1, c.positions, c.clear_top1,
                c.clear_positions, native == ref ? "agree" : "DIFFER");
    // The native path differs only by the activations' int8 quantization (per 32 values, up
    // to 0.4 % of each block's largest value, compounding over 4 layers): measured 1.2-1.4 %
    // RMS on these random-weight models, whose logits have many near-ties.
    CHECK(c.rel_rms < 0.025);
    CHECK(c.rel_rms > 0.0);
    CHECK(c.clear_top1 == c.clear_positions);
    CHECK(native == ref);
  }
}

TEST_CASE("a synthetic GGUF of every K-quant and q5 type loads natively and matches the f32 oracle",
          "[lib][gguf][kquant]") {
  piquant::test::TempDir dir;
  write_synthetic(dir.file("mix.gguf"), SynthSpec{});
  const auto model = piquant::Model::load(dir.file("mix.gguf"));
  CHECK(model->notices().empty());
  const piquant::Model::Impl& m = model->impl();
  CHECK(m.tok_embd.type == DType::kQ4K);
  CHECK(m.tok_embd.layout == piquant::TensorLayout::kRows);
  CHECK(m.output.type == DType::kQ6K);
  CHECK(m.layers[1].wk.type == DType::kQ5K);
  CHECK(m.layers[1].wo.type == DType::kQ5_1);
  CHECK(m.layers[0].w_down.type == DType::kQ5_0);
  CHECK(m.layers[0].w_down.layout == piquant::TensorLayout::kPacked);
  // Lossless: the packed tensors unpack to the file's bytes.
  const piquant::GgufFile f(dir.file("mix.gguf"));
  for (const Tensor* t : {&m.output, &m.layers[0].wq, &m.layers[0].wv, &m.layers[1].w_down}) {
    const piquant::GgufTensorInfo* gt = f.find_tensor(t->name);
    const auto wt = t->type;
    std::vector<uint8_t> rows(gt->n_bytes);
    k::unpack(wt, t->data, static_cast<size_t>(t->rows), static_cast<size_t>(t->cols), rows.data());
    CHECK(std::memcmp(rows.data(), f.tensor_data(*gt), rows.size()) == 0);
  }
  const LogitCompare c = native_vs_reference(model, {1, 7, 30, 95, 2, 2, 64});
  std::printf("kquant synthetic mix: relative RMS logit error %.5f, top-1 %zu/%zu\n", c.rel_rms, c.top1,
              c.positions);
  CHECK(c.rel_rms < 0.02);
  CHECK(c.clear_top1 == c.clear_positions);
}

TEST_CASE("bad K-quant tensors give clear errors naming the tensor", "[lib][gguf][kquant][bad-input]") {
  piquant::test::TempDir dir;
  SECTION("a K-quant row length that is not a multiple of 256") {
    piquant::GgufWriter w;
    using V = piquant::GgufWriteValue;
    w.add("general.architecture", V::string("llama"));
    // The writer refuses such a shape: write rows of 512, then patch ne0 to 320 in the file.
    w.add_tensor("blk.0.attn_q.weight", kQ4_K, {512, 4}, std::string(4 * 2 * 144, '\0'));
    w.write(dir.file("row.gguf"));
    std::string bytes = piquant::test::read_file(dir.file("row.gguf"));
    const std::string name = "blk.0.attn_q.weight";
    const size_t at = bytes.find(name) + name.size() + 4;  // after the name: n_dims (u32), ne0
    uint64_t ne0;
    std::memcpy(&ne0, &bytes[at], 8);
    REQUIRE(ne0 == 512);
    ne0 = 320;
    std::memcpy(&bytes[at], &ne0, 8);
    piquant::test::write_file(dir.file("row.gguf"), bytes);
    const std::string e = load_error(dir.file("row.gguf"));
    CHECK_THAT(e, Catch::Contains("blk.0.attn_q.weight") && Catch::Contains("320") &&
                      Catch::Contains("Q4_K block size 256"));
  }
  SECTION("tensor data cut short (truncated super-blocks)") {
    write_synthetic(dir.file("ok.gguf"), SynthSpec{});
    const std::string bytes = piquant::test::read_file(dir.file("ok.gguf"));
    const size_t down = tensor_file_offset(dir.file("ok.gguf"), "blk.1.ffn_down.weight");
    for (size_t cut : {bytes.size() - 1, bytes.size() - 100, down + 22 * 5 + 3}) {
      piquant::test::write_file(dir.file("cut.gguf"), bytes.substr(0, cut));
      const std::string e = load_error(dir.file("cut.gguf"));
      CAPTURE(cut, e);
      CHECK_THAT(e, Catch::Contains("blk.1.ffn_down.weight") && Catch::Contains("incomplete"));
    }
    const size_t q = tensor_file_offset(dir.file("ok.gguf"), "blk.1.attn_v.weight");
    piquant::test::write_file(dir.file("cut.gguf"), bytes.substr(0, q + 210 + 100));  // mid-Q6_K
    CHECK_THAT(load_error(dir.file("cut.gguf")), Catch::Contains("blk.1.attn_v.weight"));
  }
  SECTION("non-finite super-block scales") {
    write_synthetic(dir.file("ok.gguf"), SynthSpec{});
    const std::string bytes = piquant::test::read_file(dir.file("ok.gguf"));
    struct Case {
      const char* tensor;
      size_t block_bytes, block, field;  // field: byte offset of the fp16 in the block
      uint16_t value;
      const char* want;
    };
    const Case cases[] = {
        {"blk.0.attn_q.weight", 144, 5, 0, 0x7C00, "super-block 0 of row 5 has a non-finite scale d (inf)"},
        {"blk.1.ffn_gate.weight", 144, 0, 2, 0xFC00, "super-block 0 of row 0 has a non-finite scale dmin (-inf)"},
        {"blk.0.attn_v.weight", 210, 3, 208, 0x7E00, "super-block 0 of row 3 has a non-finite scale d (NaN)"},
        {"blk.1.attn_k.weight", 176, 1, 0, 0x7C01, "non-finite scale d (NaN)"},
        {"blk.0.attn_output.weight", 24, 9, 2, 0x7C00, "block 1 of row 1 has a non-finite scale m (inf)"},
        {"blk.0.ffn_down.weight", 22, 0, 0, 0x7C00, "block 0 of row 0 has a non-finite scale d"},
        {"token_embd.weight", 144, 0, 0, 0x7C00, "token_embd.weight (q4_k)"},
        {"output.weight", 210, 0, 208, 0x7C00, "output.weight (q6_k)"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.tensor);
      std::string b = bytes;
      const size_t at = tensor_file_offset(dir.file("ok.gguf"), c.tensor) + c.block * c.block_bytes + c.field;
      std::memcpy(&b[at], &c.value, 2);
      piquant::test::write_file(dir.file("bad.gguf"), b);
      const std::string e = load_error(dir.file("bad.gguf"));
      CHECK_THAT(e, Catch::Contains(c.tensor) && Catch::Contains(c.want));
    }
  }
}

namespace {

// A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1.
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string want = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.compare(0, want.size(), want) == 0) return std::strtol(line.c_str() + want.size(), nullptr, 10);
  }
  return -1;
}

}  // namespace

// Loading keeps K-quant tensors in their own type and releases the file's pages after
// repacking each chunk, so the resident set grows by about the file's size (the packed copy),
// not by the f32 expansion of the old load path (issue 18: 2.2 GB peak for a 668 MB TinyLlama
// Q4_K_M). Measured in this process: /proc/self/clear_refs "5" resets VmHWM to the current RSS.
// The file is tiny-q4_k_m.gguf's tensors and model metadata without its tokenizer: at this
// size the 32000-token vocabulary's tables (~12 MB of heap, the same for a 1B model) would
// drown the weights. A first load (then dropped) brings in the code pages and allocator pools
// any load touches once per process. piquant-run prints the absolute peak for a real-sized
// file (docs/performance.md).
TEST_CASE("loading a K-quant GGUF and running a token peaks under 1.2x the file size",
          "[lib][gguf][kquant][memory]") {
  const std::string src = piquant::test::shared_file("models/kquants/tiny-q4_k_m.gguf");
  if (src.empty()) return;
  // g++ defines __SANITIZE_ADDRESS__; clang (the CI's ASan build) says so through __has_feature.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PIQUANT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PIQUANT_TEST_SANITIZED 1
#endif
#endif
#ifdef PIQUANT_TEST_SANITIZED
  WARN("skipped under a sanitizer (its shadow memory is part of the resident set)");
  return;
#endif
  if (!std::string(PIQUANT_TEST_EMULATOR).empty()) {
    WARN("skipped under an emulator (its resident set is the emulator's)");
    return;
  }
  piquant::test::TempDir dir;
  const std::string path = dir.file("weights-only.gguf");
  {
    const piquant::GgufFile f(src);
    const piquant::ModelConfig c = piquant::read_gguf_model_info(f).config;
    piquant::GgufWriter w;
    using V = piquant::GgufWriteValue;
    w.add("general.architecture", V::string("llama"));
    w.add("llama.embedding_length", V::u32(static_cast<uint32_t>(c.dim)));
    w.add("llama.block_count", V::u32(static_cast<uint32_t>(c.n_layers)));
    w.add("llama.feed_forward_length", V::u32(static_cast<uint32_t>(c.hidden_dim)));
    w.add("llama.attention.head_count", V::u32(static_cast<uint32_t>(c.n_heads)));
    w.add("llama.attention.head_count_kv", V::u32(static_cast<uint32_t>(c.n_kv_heads)));
    w.add("llama.context_length", V::u32(static_cast<uint32_t>(c.max_seq_len)));
    for (const piquant::GgufTensorInfo& t : f.tensors()) {
      w.add_tensor(t.name, t.type, t.dims,
                   std::string(reinterpret_cast<const char*>(f.tensor_data(t)), t.n_bytes));
    }
    w.write(path);
  }
  auto load_and_run = [&] {
    const auto model = piquant::Model::load(path);
    CHECK(model->impl().output.type == DType::kQ6K);
    piquant::SessionOptions so;
    so.n_threads = 2;
    so.n_ctx = 64;
    piquant::Session s(model, so);
    std::vector<float> logits;
    s.eval({1}, &logits);
    REQUIRE(std::isfinite(logits[0]));
  };
  load_and_run();  // warm-up (see above)
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5" << std::flush;
  if (!clear.good() || status_kib("VmHWM") < 0) {
    WARN("skipped: cannot reset or read the peak resident set (/proc/self/clear_refs, VmHWM)");
    return;
  }
  const long before = status_kib("VmRSS");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  const double file_kib = static_cast<double>(f.tellg()) / 1024.0;
  load_and_run();
  const long peak = status_kib("VmHWM");
  const double growth = static_cast<double>(peak - before);
  std::printf("kquant load memory: tiny-q4_k_m.gguf's weights, %.1f MiB: peak resident growth during "
              "load + 1 token %.1f MiB (%.2fx the file)\n",
              file_kib / 1024, growth / 1024, growth / file_kib);
  CHECK(growth < 1.2 * file_kib);
}

#ifdef PIQUANT_INSPECT_PATH
TEST_CASE("piquant-inspect shows the types a K-quant GGUF keeps", "[lib][gguf][kquant]") {
  piquant::test::TempDir dir;
  write_synthetic(dir.file("mix.gguf"), SynthSpec{});
  const auto r = piquant::test::run_program(PIQUANT_INSPECT_PATH, {dir.file("mix.gguf")});
  CAPTURE(r.out, r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("blk.0.ffn_down.weight") && Catch::Contains("q5_0"));
  CHECK_THAT(r.out, Catch::Contains("piquant loads (* = converted at load, - = not supported): F32 -> f32 (5) "
                                    "Q4_K -> q4_k (5) Q5_0 -> q5_0 (2) Q5_1 -> q5_1 (2) Q5_K -> q5_k (4) "
                                    "Q6_K -> q6_k (3)"));
}
#endif

// A developer check, hidden: PIQUANT_DEV_GGUF=a file with Q2_K / Q3_K / IQ4_NL / IQ4_XS tensors,
// PIQUANT_DEV_F32=llama-quantize --allow-requantize of it to F32 (llama.cpp's dequantization):
// lib/format/kquants.cpp's dequantizers of the re-quantized-at-load types must match bit for bit.
TEST_CASE("Q2_K / Q3_K / IQ4_NL / IQ4_XS dequantize as llama.cpp does", "[.kquant_dev]") {
  const char* q = std::getenv("PIQUANT_DEV_GGUF");
  const char* f = std::getenv("PIQUANT_DEV_F32");
  if (!q || !f) FAIL("set PIQUANT_DEV_GGUF and PIQUANT_DEV_F32");
  const piquant::GgufFile gq(q), gf(f);
  size_t checked = 0;
  for (const piquant::GgufTensorInfo& t : gq.tensors()) {
    if (t.type != 10 && t.type != 11 && t.type != 20 && t.type != 23) continue;
    const piquant::GgufTensorInfo* r = gf.find_tensor(t.name);
    REQUIRE(r != nullptr);
    REQUIRE(r->type == kF32);
    std::vector<float> v(t.n_elements);
    REQUIRE(piquant::dequantize_kquant(t.type, gq.tensor_data(t), v.data(), v.size()));
    CAPTURE(t.name, t.type);
    CHECK(std::memcmp(v.data(), gf.tensor_data(*r), v.size() * 4) == 0);
    ++checked;
  }
  std::printf("kquant dev: %zu tensors of %s match llama.cpp's F32\n", checked, q);
  CHECK(checked > 0);
}
