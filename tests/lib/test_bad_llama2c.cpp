// Truncated and corrupted llama2.c checkpoints and tokenizer.bin files: every one must give a
// piquant::Error naming the problem (in-process, at many offsets), and piquant-run must exit
// non-zero with that message (out of process, a sample of them): no crash, hang or UB.
#include <catch2/catch.hpp>
#include <cstring>
#include <piquant/piquant.hpp>

#include "load/llama2c_model.hpp"
#include "test_util.hpp"

namespace {

piquant::ModelConfig tiny_config() {
  piquant::ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 40;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.vocab_size = 300;
  c.max_seq_len = 16;
  c.tied_classifier = false;
  return c;
}

// A llama2.c tokenizer.bin: <unk>, <s>, </s>, 256 byte tokens, then short pieces.
std::string tokenizer_bin(int vocab) {
  std::string out;
  auto put_i32 = [&](int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_f32 = [&](float v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put_i32(8);
  for (int i = 0; i < vocab; ++i) {
    std::string piece;
    if (i == 0) piece = "<unk>";
    else if (i == 1) piece = "<s>";
    else if (i == 2) piece = "</s>";
    else if (i < 259) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", i - 3);
      piece = buf;
    } else {
      piece = std::string(1, static_cast<char>('a' + (i - 259) % 26)) +
              std::string(static_cast<size_t>((i - 259) / 26), 'b');
    }
    put_f32(-static_cast<float>(i));
    put_i32(static_cast<int32_t>(piece.size()));
    out += piece;
  }
  return out;
}

std::string with_i32_at(std::string bytes, size_t offset, int32_t v) {
  std::memcpy(&bytes[offset], &v, 4);
  return bytes;
}

// Offsets to cut at: the first 64 bytes one by one, then a spread, then the last few.
std::vector<size_t> cut_points(size_t size) {
  std::vector<size_t> cuts;
  for (size_t i = 0; i < std::min<size_t>(size, 64); ++i) cuts.push_back(i);
  for (size_t i = 64; i < size; i += size / 97 + 1) cuts.push_back(i);
  for (size_t i = size > 4 ? size - 4 : 0; i < size; ++i) cuts.push_back(i);
  return cuts;
}

struct Fixture {
  piquant::test::TempDir dir;
  std::string model_bytes, tok_bytes;
  Fixture() {
    piquant::write_llama2c(dir.file("good.bin"),
                           piquant::random_llama2c_weights(tiny_config(), 7));
    model_bytes = piquant::test::read_file(dir.file("good.bin"));
    tok_bytes = tokenizer_bin(300);
    piquant::test::write_file(dir.file("good.tok"), tok_bytes);
  }
};

// Loads and expects a piquant::Error whose message contains `want`; returns the message.
std::string load_error(const std::string& model, const std::string& tok) {
  piquant::LoadOptions lo;
  lo.tokenizer_path = tok;
  try {
    auto m = piquant::Model::load(model, lo);
  } catch (const piquant::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the fixture itself loads and runs", "[lib][llama2c][bad-input]") {
  Fixture f;
  CHECK(load_error(f.dir.file("good.bin"), f.dir.file("good.tok")).empty());
}

TEST_CASE("a llama2.c checkpoint cut at any offset is refused with a clear error",
          "[lib][llama2c][bad-input]") {
  Fixture f;
  for (size_t cut : cut_points(f.model_bytes.size())) {
    CAPTURE(cut);
    piquant::test::write_file(f.dir.file("cut.bin"), f.model_bytes.substr(0, cut));
    const std::string err = load_error(f.dir.file("cut.bin"), "");
    REQUIRE_FALSE(err.empty());
    CHECK(err.find("cut.bin") != std::string::npos);
    if (cut >= 28) CHECK(err.find("truncated") != std::string::npos);
  }
  piquant::test::write_file(f.dir.file("long.bin"), f.model_bytes + "junk");
  CHECK(load_error(f.dir.file("long.bin"), "").find("trailing data") != std::string::npos);
}

TEST_CASE("llama2.c header fields set to huge, zero or negative values are refused",
          "[lib][llama2c][bad-input]") {
  Fixture f;
  const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                         "seq_len"};
  const int32_t values[] = {0, -1, -2147483647 - 1, 2147483647, 1 << 20, 3};
  for (int field = 0; field < 7; ++field) {
    for (int32_t v : values) {
      CAPTURE(names[field], v);
      piquant::test::write_file(f.dir.file("bad.bin"),
                                with_i32_at(f.model_bytes, static_cast<size_t>(field) * 4, v));
      const std::string err = load_error(f.dir.file("bad.bin"), "");
      REQUIRE_FALSE(err.empty());
      CHECK(err.find("bad.bin") != std::string::npos);
    }
  }
  // GQA that does not divide, and heads that do not divide dim, are named.
  piquant::test::write_file(f.dir.file("gqa.bin"), with_i32_at(f.model_bytes, 16, 3));
  CHECK(load_error(f.dir.file("gqa.bin"), "").find("n_kv_heads") != std::string::npos);
}

TEST_CASE("a tokenizer.bin cut at any offset or with bad lengths is refused",
          "[lib][llama2c][bad-input]") {
  Fixture f;
  for (size_t cut : cut_points(f.tok_bytes.size())) {
    CAPTURE(cut);
    piquant::test::write_file(f.dir.file("cut.tok"), f.tok_bytes.substr(0, cut));
    const std::string err = load_error(f.dir.file("good.bin"), f.dir.file("cut.tok"));
    REQUIRE_FALSE(err.empty());
    CHECK(err.find("cut.tok") != std::string::npos);
  }
  // max_token_length and the first token's length set to nonsense.
  for (int32_t v : {0, -1, -2147483647 - 1, 2147483647, 1 << 24}) {
    CAPTURE(v);
    piquant::test::write_file(f.dir.file("bad.tok"), with_i32_at(f.tok_bytes, 0, v));
    CHECK_FALSE(load_error(f.dir.file("good.bin"), f.dir.file("bad.tok")).empty());
    piquant::test::write_file(f.dir.file("bad.tok"), with_i32_at(f.tok_bytes, 8, v));
    CHECK_FALSE(load_error(f.dir.file("good.bin"), f.dir.file("bad.tok")).empty());
  }
  // A tokenizer for another vocabulary size names both sizes.
  piquant::test::write_file(f.dir.file("small.tok"), tokenizer_bin(280));
  const std::string err = load_error(f.dir.file("good.bin"), f.dir.file("small.tok"));
  CHECK(err.find("280") != std::string::npos);
  CHECK(err.find("300") != std::string::npos);
}

TEST_CASE("piquant-run exits non-zero with a message on bad checkpoints and tokenizers",
          "[e2e][bad-input]") {
#ifndef PIQUANT_RUN_PATH
  WARN("skipped: piquant-run is not built (PIQUANT_BUILD_EXAMPLES=OFF)");
#else
  Fixture f;
  struct Case {
    std::string name, model_bytes, tok_bytes, want;
  };
  const std::string& m = f.model_bytes;
  const std::string& t = f.tok_bytes;
  const std::vector<Case> cases = {
      {"empty model", "", t, "too small"},
      {"model cut in the header", m.substr(0, 13), t, "too small"},
      {"model cut in the weights", m.substr(0, m.size() / 2), t, "truncated"},
      {"model missing its last byte", m.substr(0, m.size() - 1), t, "truncated"},
      {"negative dim", with_i32_at(m, 0, -64), t, "dim"},
      {"huge n_layers", with_i32_at(m, 8, 2147483647), t, "n_layers"},
      {"huge vocab", with_i32_at(m, 20, 1 << 20), t, "bytes"},
      {"tokenizer cut", m, t.substr(0, t.size() / 3), "token"},
      {"tokenizer bad max length", m, with_i32_at(t, 0, -5), "max_token_length"},
      {"tokenizer bad piece length", m, with_i32_at(t, 8, 1 << 30), "length"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    piquant::test::write_file(f.dir.file("m.bin"), c.model_bytes);
    piquant::test::write_file(f.dir.file("t.bin"), c.tok_bytes);
    const auto r = piquant::test::run_program(
        PIQUANT_RUN_PATH, {"-m", f.dir.file("m.bin"), "-z", f.dir.file("t.bin"), "-n", "4"}, 60);
    CAPTURE(r.exit_code, r.signal, r.err);
    CHECK(r.signal == 0);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code != -1);
    CHECK(r.err.find(c.want) != std::string::npos);
    CHECK(r.err.find("error") != std::string::npos);
  }
  // A missing file is an error too, and the good pair runs.
  auto r = piquant::test::run_program(PIQUANT_RUN_PATH, {"-m", f.dir.file("none.bin")}, 60);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("none.bin") != std::string::npos);
  r = piquant::test::run_program(
      PIQUANT_RUN_PATH,
      {"-m", f.dir.file("good.bin"), "-z", f.dir.file("good.tok"), "-n", "4", "--temp", "0"}, 60);
  CAPTURE(r.err);
  CHECK(r.exit_code == 0);
#endif
}
