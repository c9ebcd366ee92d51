// piquant-convert's K-quant types and mixes: which tensor gets which type (q4_k_m / q5_k_m),
// the per-tensor fallback for rows that are not whole super-blocks, the .piq file (packed K
// blocks that unpack to the quantizer's rows) and --to gguf (the types llama.cpp reads, the
// metadata piquant's own GGUF reader accepts, values within the type's error).
#include <catch2/catch.hpp>
#include <cmath>

#include "common/pack.hpp"
#include "common/quant.hpp"
#include "convert/convert.hpp"
#include "convert/kquant_plan.hpp"
#include "format/gguf.hpp"
#include "format/piq.hpp"
#include "load/piq_model.hpp"
#include "quality_test_util.hpp"

namespace {

using namespace piquant;
namespace k = piquant::kernels;

std::unique_ptr<ModelSource> small_model(int dim, int hidden, int layers) {
  return test::small_model_source({dim, hidden, layers, /*head_dim*/ 64, /*max_seq_len*/ 64});
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = double(x[i]) - double(y[i]);
    e += r * r, s += double(x[i]) * double(x[i]);
  }
  return std::sqrt(e / s);
}

}  // namespace

TEST_CASE("K-quant mixes: which tensors get more bits", "[convert][kquant]") {
  // llama.cpp's use_more_bits layers of 8: 0 and 7 (first and last eighth), 3 and 6 (every
  // third between).
  std::vector<std::string> v;
  for (int l = 0; l < 8; ++l) {
    v.push_back(kquant_plan_type("q4_k_m", "blk." + std::to_string(l) + ".attn_v.weight", 8));
  }
  CHECK(v == std::vector<std::string>{"q6_k", "q4_k", "q4_k", "q6_k", "q4_k", "q4_k", "q6_k",
                                      "q6_k"});
  CHECK(kquant_plan_type("q4_k_m", "blk.6.ffn_down.weight", 8) == "q6_k");
  CHECK(kquant_plan_type("q4_k_m", "blk.5.ffn_up.weight", 8) == "q4_k");
  CHECK(kquant_plan_type("q5_k_m", "blk.1.attn_q.weight", 8) == "q5_k");
  CHECK(kquant_plan_type("q5_k_m", "output.weight", 8) == "q6_k");
  CHECK(kquant_plan_type("q4_k_m", "token_embd.weight", 8) == "q4_k");
  CHECK(kquant_plan_type("q6_k", "blk.1.attn_q.weight", 8) == "q6_k");
  // Names: accepted in any case; K-quants piquant does not write are refused with the nearest.
  CHECK(canonical_type_name("Q4_K_M") == "q4_k_m");
  CHECK(canonical_type_name("Q5_1") == "q5_1");
  CHECK_THROWS_WITH(canonical_type_name("Q3_K_M"), Catch::Contains("q4_k"));
}

TEST_CASE("convert --type q4_k_m: .piq with packed K blocks, fallback per tensor",
          "[convert][kquant]") {
  // FFN 320: ffn_gate / ffn_up rows hold 256 values (fine), ffn_down rows 320 (not whole
  // super-blocks): Q4_K falls back to Q5_0, Q6_K to Q8_0, as llama-quantize does.
  auto src = small_model(256, 320, 2);
  test::TempDir dir;
  ConvertOptions o;
  o.type = "Q4_K_M";
  o.progress = false;
  o.search = false;  // fast (also under qemu); the search has its own tests
  const ConvertReport rep = convert_model(*src, dir.file("m.piq"), o);
  int fallbacks = 0;
  for (const std::string& n : rep.notices) fallbacks += n.find("not a multiple of 256") != std::string::npos;
  CHECK(fallbacks == 2);
  const PiqFile f(dir.file("m.piq"));
  auto type_of = [&](const std::string& n) { return f.get(n).type; };
  CHECK(type_of("token_embd.weight") == "q4_k");
  CHECK(type_of("output.weight") == "q6_k");
  CHECK(type_of("blk.0.attn_q.weight") == "q4_k");
  CHECK(type_of("blk.0.attn_v.weight") == "q4_k");  // layer 0 of 2 is not a "more bits" layer
  CHECK(type_of("blk.1.attn_v.weight") == "q6_k");
  CHECK(type_of("blk.0.ffn_down.weight") == "q5_0");  // q4_k fallback
  CHECK(type_of("blk.1.ffn_down.weight") == "q8");    // q6_k fallback
  CHECK(type_of("blk.0.attn_norm.weight") == "f32");
  CHECK(rep.matrix_bits_per_weight > 4.5);
  CHECK(rep.matrix_bits_per_weight < 6.6);
  // The packed tensors unpack to rows whose values are the source's within Q4_K's error.
  const PiqTensorInfo& t = f.get("blk.0.attn_q.weight");
  REQUIRE(t.layout == std::string(kPiqLayoutPacked));
  std::vector<uint8_t> rows(256 * k::row_bytes(k::WeightType::kQ4K, 256));
  k::unpack(k::WeightType::kQ4K, f.data(t), 256, 256, rows.data());
  std::vector<float> got(256 * 256), want(256 * 256);
  k::dequantize_rows(k::WeightType::kQ4K, rows.data(), 256, 256, got.data());
  for (size_t i = 0; i < src->tensors().size(); ++i) {
    if (src->tensors()[i].name == "blk.0.attn_q.weight") src->read_f32(i, want.data());
  }
  CHECK(rel_rms(want, got) < 0.15);
  CHECK(rel_rms(want, got) > 0.01);  // really quantized
}

TEST_CASE("convert --to gguf writes GGUF K-quant blocks", "[convert][kquant]") {
  auto src = small_model(256, 512, 1);
  test::TempDir dir;
  ConvertOptions o;
  o.type = "q5_k_m";
  o.format = "gguf";
  o.progress = false;
  o.search = false;
  const ConvertReport rep = convert_model(*src, dir.file("m.gguf"), o);
  CHECK(rep.notices.empty());
  const GgufFile g(dir.file("m.gguf"));
  CHECK(g.get_string("general.architecture", "") == "llama");
  CHECK(g.get("general.file_type").to_uint("") == 17);  // LLAMA_FTYPE_MOSTLY_Q5_K_M
  CHECK(g.get("llama.block_count").to_uint("") == 1);
  auto ty = [&](const char* n) {
    const GgufTensorInfo* t = g.find_tensor(n);
    REQUIRE(t != nullptr);
    return t->type;
  };
  CHECK(ty("token_embd.weight") == 13);  // Q5_K
  CHECK(ty("output.weight") == 14);      // Q6_K
  CHECK(ty("blk.0.attn_v.weight") == 14);
  CHECK(ty("blk.0.ffn_gate.weight") == 13);
  CHECK(ty("blk.0.attn_norm.weight") == 0);  // F32
  const GgufTensorInfo* up = g.find_tensor("blk.0.ffn_up.weight");
  REQUIRE(up->dims == std::vector<uint64_t>{256, 512});  // ne[0] = the row length
  std::vector<float> got(512 * 256), want(512 * 256);
  k::dequantize_rows(k::WeightType::kQ5K, g.tensor_data(*up), 512, 256, got.data());
  for (size_t i = 0; i < src->tensors().size(); ++i) {
    if (src->tensors()[i].name == "blk.0.ffn_up.weight") src->read_f32(i, want.data());
  }
  CHECK(rel_rms(want, got) < 0.09);
  // piquant's own GGUF reader accepts the file (the model's shape from the metadata).
  auto back = open_model_source(dir.file("m.gguf"));
  CHECK(back->config().dim == 256);
  CHECK(back->config().hidden_dim == 512);
  CHECK(back->tokenizer().has_value());
}

TEST_CASE("convert --to gguf: clear errors", "[convert][kquant]") {
  auto src = small_model(256, 512, 1);
  test::TempDir dir;
  ConvertOptions o;
  o.progress = false;
  o.format = "safetensors";
  CHECK_THROWS_WITH(convert_model(*src, dir.file("m.x"), o), Catch::Contains("piq (default) or gguf"));
  o.format = "gguf";
  o.type = "keep";
  CHECK_THROWS_WITH(convert_model(*src, dir.file("m.gguf"), o), Catch::Contains("keep"));
  o.type = "q3_k_s";
  CHECK_THROWS_AS(convert_model(*src, dir.file("m.gguf"), o), Error);
}
