// .piq: write -> mmap -> read round trip (alignment, bytes, zero copy), XXH64 against the
// reference library's values, verify() finding corruption, and every malformed file we can
// think of giving a clear Error.
#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "format/piq.hpp"
#include "test_util.hpp"

using namespace piquant;
using nlohmann::json;
using piquant::test::TempDir;

namespace {

PiqMetadata sample_meta() {
  PiqMetadata m;
  m.config.arch = "llama";
  m.config.dim = 64;
  m.config.hidden_dim = 172;
  m.config.n_layers = 2;
  m.config.n_heads = 4;
  m.config.n_kv_heads = 2;
  m.config.head_dim = 16;
  m.config.vocab_size = 100;
  m.config.max_seq_len = 128;
  m.config.rope_theta = 500000.0f;
  m.config.norm_eps = 1e-5f;
  m.config.tied_classifier = false;
  m.config.rope_scaling.type = RopeScalingType::kLlama3;
  m.config.rope_scaling.factor = 32.0f;
  m.config.rope_scaling.original_max_position = 8192;
  m.config.qk_norm = true;
  m.rope_layout = "halves";
  m.tokenizer = {{"kind", "bpe"}, {"vocab", {"a", "b", "<|eot|>"}}};
  m.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";
  m.generation.has_temperature = true;
  m.generation.temperature = 0.6f;
  m.generation.has_top_p = true;
  m.generation.top_p = 0.9f;
  m.generation.eos_token_ids = {2, 7};
  m.provenance = {{"source", "hf:/models/tiny"}, {"quantization", {{"type", "q8"}}},
                  {"converter_version", "0.1.0"}, {"date", "2026-11-22"}};
  return m;
}

std::string bytes_of(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

// Writes a small valid file with three tensors; returns the raw payloads.
std::vector<std::string> write_sample(const std::string& path, size_t alignment = 64) {
  std::vector<std::string> data = {bytes_of(4 * 6, 1), bytes_of(2 * 5, 2), bytes_of(1000, 3)};
  PiqWriterOptions o;
  o.alignment = alignment;
  PiqWriter w(path, o);
  w.add_tensor("a.f32", "f32", "", {2, 3}, data[0].data(), data[0].size());
  w.add_tensor("b.f16", "f16", "", {5}, data[1].data(), data[1].size());
  w.begin_tensor("c.q8", "q8", "q8_rows4", {10, 100});
  w.append(data[2].data(), 300);
  w.append(data[2].data() + 300, 700);
  w.end_tensor();
  w.finish(sample_meta());
  return data;
}

// Rewrites the JSON header of a .piq file (kept at the end) through `edit`.
void edit_header(const std::string& path, const std::function<void(json&)>& edit) {
  std::string f = test::read_file(path);
  uint64_t off = 0, len = 0;
  std::memcpy(&off, &f[16], 8);
  std::memcpy(&len, &f[24], 8);
  json j = json::parse(f.substr(off, len));
  edit(j);
  const std::string h = j.dump();
  f = f.substr(0, off) + h;
  len = h.size();
  std::memcpy(&f[24], &len, 8);
  test::write_file(path, f);
}

std::string open_error(const std::string& path, ErrorCode* code = nullptr) {
  try {
    PiqFile f(path);
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  FAIL("expected an Error opening " << path);
  return "";
}

}  // namespace

TEST_CASE("xxh64 matches the reference xxHash values", "[lib][format][piq]") {
  // Values from libxxhash 0.8.1 (XXH64) over the same inputs.
  CHECK(xxh64("", 0) == 0xef46db3751d8e999ull);
  CHECK(xxh64("a", 1) == 0xd24ec4f1a98c6e5bull);
  CHECK(xxh64("abc", 3) == 0x44bc2cf5ad770999ull);
  CHECK(xxh64("piquant", 7) == 0xfc8c420717b63494ull);
  CHECK(xxh64("", 0, 12345) == 0x95584af7701f808dull);
  CHECK(xxh64("abc", 3, 12345) == 0x1700e64f6f23509ull);
  std::string r100(100, '\0'), r1000(1000, '\0');
  for (int i = 0; i < 100; ++i) r100[i] = static_cast<char>(i);
  for (int i = 0; i < 1000; ++i) r1000[i] = static_cast<char>((i * 7 + 3) & 255);
  CHECK(xxh64(r100.data(), 100) == 0x6ac1e58032166597ull);
  CHECK(xxh64(r100.data(), 100, 12345) == 0x28ba1ae2de4de27ull);
  CHECK(xxh64(r1000.data(), 1000) == 0x5f235fa033f1a3fbull);
  CHECK(xxh64(r1000.data(), 1000, 12345) == 0x365c39a0c5a4c88eull);
  // Streaming in uneven pieces gives the one-shot value.
  for (size_t piece : {1, 3, 31, 32, 33, 100}) {
    Xxh64 h;
    for (size_t i = 0; i < r1000.size(); i += piece) h.update(r1000.data() + i, std::min(piece, r1000.size() - i));
    CAPTURE(piece);
    CHECK(h.digest() == 0x5f235fa033f1a3fbull);
  }
}

TEST_CASE(".piq round trip: metadata, aligned zero-copy tensors, checksums", "[lib][format][piq]") {
  TempDir dir;
  const std::string path = dir.file("m.piq");
  const auto data = write_sample(path);
  PiqFile f(path);
  const PiqMetadata want = sample_meta();
  const PiqMetadata& m = f.meta();
  CHECK(f.header().version == kPiqVersion);
  CHECK(m.config.arch == "llama");
  CHECK(m.config.dim == 64);
  CHECK(m.config.n_kv_heads == 2);
  CHECK(m.config.rope_theta == 500000.0f);
  CHECK(m.config.tied_classifier == false);
  CHECK(m.config.qk_norm == true);
  CHECK(m.config.qkv_bias == false);
  CHECK(m.config.rope_scaling.type == RopeScalingType::kLlama3);
  CHECK(m.config.rope_scaling.factor == 32.0f);
  CHECK(m.config.rope_scaling.original_max_position == 8192);
  CHECK(m.rope_layout == "halves");
  CHECK(m.tokenizer == want.tokenizer);
  CHECK(m.chat_template == want.chat_template);
  CHECK(m.generation.has_temperature);
  CHECK(m.generation.temperature == 0.6f);
  CHECK_FALSE(m.generation.has_top_k);
  CHECK(m.generation.eos_token_ids == std::vector<TokenId>{2, 7});
  CHECK(m.provenance == want.provenance);

  REQUIRE(f.tensors().size() == 3);
  const uint8_t* base = f.mapping()->data();
  const size_t size = f.mapping()->size();
  const char* names[] = {"a.f32", "b.f16", "c.q8"};
  for (size_t i = 0; i < 3; ++i) {
    const PiqTensorInfo& t = f.get(names[i]);
    CAPTURE(t.name);
    const uint8_t* p = f.data(t);
    CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);  // aligned in memory, not just in the file
    CHECK(p >= base);                                 // zero copy: inside the mapping
    CHECK(p + t.size <= base + size);
    REQUIRE(t.size == data[i].size());
    CHECK(std::memcmp(p, data[i].data(), t.size) == 0);
    CHECK(t.checksum == xxh64(data[i].data(), data[i].size()));
  }
  CHECK(f.get("c.q8").layout == "q8_rows4");
  CHECK(f.get("c.q8").shape == std::vector<int64_t>{10, 100});
  CHECK(f.find("missing") == nullptr);
  CHECK_THROWS_WITH(f.get("missing"), Catch::Contains("missing") && Catch::Contains("not found"));
  const auto v = f.verify();
  CHECK(v.ok());
  CHECK(v.checked == 3);
}

TEST_CASE(".piq honours a larger alignment", "[lib][format][piq]") {
  TempDir dir;
  write_sample(dir.file("p.piq"), 4096);
  PiqFile f(dir.file("p.piq"));
  CHECK(f.header().alignment == 4096);
  for (const auto& t : f.tensors()) CHECK(reinterpret_cast<uintptr_t>(f.data(t)) % 4096 == 0);
}

TEST_CASE(".piq verify names the tensor whose bytes changed", "[lib][format][piq]") {
  TempDir dir;
  const std::string path = dir.file("m.piq");
  write_sample(path);
  uint64_t off;
  {
    PiqFile f(path);
    off = f.get("b.f16").offset;
  }
  std::string bytes = test::read_file(path);
  bytes[off + 3] = static_cast<char>(bytes[off + 3] ^ 0x10);
  test::write_file(path, bytes);
  PiqFile f(path);  // opening does not hash (loading must stay instant)
  const auto v = f.verify();
  REQUIRE(v.mismatched.size() == 1);
  CHECK_THAT(v.mismatched[0], Catch::StartsWith("b.f16: checksum"));
}

TEST_CASE(".piq files from a newer piquant are refused with an upgrade hint", "[lib][format][piq]") {
  TempDir dir;
  const std::string path = dir.file("m.piq");
  write_sample(path);
  std::string bytes = test::read_file(path);
  const uint32_t v = kPiqVersion + 1;
  std::memcpy(&bytes[8], &v, 4);
  bytes.resize(40);  // a newer format may change everything after the version: not read
  test::write_file(path, bytes);
  ErrorCode code{};
  const std::string msg = open_error(path, &code);
  CHECK(code == ErrorCode::kUnsupported);
  CHECK_THAT(msg, Catch::Contains("file format version " + std::to_string(v) +
                                  " is newer than this piquant (supports <= " +
                                  std::to_string(kPiqVersion) + "); update piquant"));
}

TEST_CASE("every truncation of a .piq file is a clean error", "[lib][format][piq]") {
  TempDir dir;
  write_sample(dir.file("m.piq"));
  const std::string bytes = test::read_file(dir.file("m.piq"));
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    CAPTURE(cut);
    REQUIRE_THROWS_AS(parse_piq(reinterpret_cast<const uint8_t*>(bytes.data()), cut, "m.piq"), Error);
  }
  test::write_file(dir.file("t.piq"), bytes.substr(0, 2000));
  CHECK_THAT(open_error(dir.file("t.piq")), Catch::Contains("truncated"));
  test::write_file(dir.file("t.piq"), bytes.substr(0, 10));
  CHECK_THAT(open_error(dir.file("t.piq")), Catch::Contains("too small"));
}

TEST_CASE("malformed .piq headers give clear errors", "[lib][format][piq]") {
  TempDir dir;
  const std::string path = dir.file("m.piq");
  auto with = [&](const std::function<void(json&)>& edit) {
    write_sample(path);
    edit_header(path, edit);
    return open_error(path);
  };
  CHECK_THAT(with([](json& j) { j["tensors"][1]["offset"] = j["tensors"][0]["offset"]; }),
             Catch::Contains("a.f32") && Catch::Contains("b.f16") && Catch::Contains("overlap"));
  CHECK_THAT(with([](json& j) { j["tensors"][2]["size"] = 1u << 30; }),
             Catch::Contains("tensor c.q8") && Catch::Contains("outside the data area"));
  CHECK_THAT(with([](json& j) { j["tensors"][2]["offset"] = 0; }),
             Catch::Contains("tensor c.q8") && Catch::Contains("outside the data area"));
  CHECK_THAT(with([](json& j) { j["tensors"][2]["offset"] = j["tensors"][2]["offset"].get<uint64_t>() + 4; }),
             Catch::Contains("tensor c.q8") && Catch::Contains("alignment"));
  CHECK_THAT(with([](json& j) { j["tensors"][1]["name"] = "a.f32"; }),
             Catch::Contains("duplicate tensor name a.f32"));
  CHECK_THAT(with([](json& j) { j["tensors"][0]["shape"] = {2, 4}; }),
             Catch::Contains("tensor a.f32") && Catch::Contains("needs 32 bytes"));
  CHECK_THAT(with([](json& j) { j["tensors"][0]["checksum"] = "crc:12"; }),
             Catch::Contains("checksum"));
  CHECK_THAT(with([](json& j) { j["tensors"][0].erase("offset"); }),
             Catch::Contains("tensor a.f32") && Catch::Contains("\"offset\""));
  CHECK_THAT(with([](json& j) { j["config"]["dim"] = "wide"; }), Catch::Contains("config.dim"));
  CHECK_THAT(with([](json& j) { j["config"].erase("n_layers"); }), Catch::Contains("n_layers"));
  CHECK_THAT(with([](json& j) { j["config"]["rope_scaling"]["type"] = "yarn"; }),
             Catch::Contains("yarn"));
  CHECK_THAT(with([](json& j) { j["rope_layout"] = "sideways"; }), Catch::Contains("rope_layout"));
  CHECK_THAT(with([](json& j) { j["alignment"] = 48; }), Catch::Contains("alignment 48"));
  CHECK_THAT(with([](json& j) { j["generation"]["eos_token_ids"] = {-3}; }),
             Catch::Contains("eos_token_ids"));
  CHECK_THAT(with([](json& j) { j = json::array(); }), Catch::Contains("JSON object"));

  // Broken JSON text: the parser's own message is passed on.
  write_sample(path);
  std::string bytes = test::read_file(path);
  uint64_t off;
  std::memcpy(&off, &bytes[16], 8);
  bytes[off] = '#';
  test::write_file(path, bytes);
  CHECK_THAT(open_error(path), Catch::Contains("not valid JSON") && Catch::Contains("parse error"));
  // Bad magic.
  bytes[0] = 'X';
  test::write_file(path, bytes);
  CHECK_THAT(open_error(path), Catch::Contains("bad magic"));
}

TEST_CASE("the .piq writer is atomic and rejects misuse", "[lib][format][piq]") {
  TempDir dir;
  const std::string path = dir.file("w.piq");
  {
    PiqWriter w(path);
    const float x = 1.0f;
    w.add_tensor("x", "f32", "", {1}, &x, 4);
    CHECK_THROWS_AS(w.add_tensor("x", "f32", "", {1}, &x, 4), Error);  // duplicate
    CHECK_THROWS_AS(w.append(&x, 4), Error);                           // outside a tensor
    CHECK_THROWS_AS(w.end_tensor(), Error);
  }  // destroyed without finish(): nothing left behind
  CHECK_THROWS_AS(PiqFile(path), Error);
  CHECK_THROWS(test::read_file(path + ".tmp").size());
  CHECK_THROWS_AS(PiqWriter(path, PiqWriterOptions{100}), Error);
  CHECK_THROWS_AS(PiqWriter(dir.file("no/such/dir.piq")), Error);
  // Writing an invalid config is refused before the file appears.
  PiqWriter w(path);
  PiqMetadata bad;
  bad.config.arch = "llama";
  bad.config.rope_scaling.type = RopeScalingType::kLinear;
  w.finish(bad);  // arch-independent fields are only type-checked here; the loader validates sizes
  PiqFile f(path);
  CHECK(f.tensors().empty());
  CHECK(f.meta().config.rope_scaling.type == RopeScalingType::kLinear);
}
