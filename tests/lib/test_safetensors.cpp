// safetensors: writer -> reader round trips (single file, sharded), zero copy, and every way a
// header can lie about its data.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>

#include "format/safetensors.hpp"
#include "test_util.hpp"

using namespace piquant;
using piquant::test::TempDir;

namespace {

// A safetensors file from raw header text and data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

ErrorCode parse_error(const std::string& bytes, std::string* message = nullptr) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.safetensors");
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  FAIL("expected an Error");
  return ErrorCode::kInternal;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("safetensors writer and reader round trip F32, F16 and BF16 without copying",
          "[lib][format][safetensors]") {
  TempDir dir;
  const auto a = random_floats(6 * 4, 1), b = random_floats(10, 2), c = random_floats(3 * 2 * 2, 3);
  SafetensorsWriter w;
  w.add_f32("a", {6, 4}, a.data(), FileDType::kF32);
  w.add_f32("b", {10}, b.data(), FileDType::kF16);
  w.add_f32("c", {3, 2, 2}, c.data(), FileDType::kBF16);
  const float scalar = 42.0f;
  w.add_f32("s", {}, &scalar);
  w.set_metadata("format", "pt");
  w.write(dir.file("m.safetensors"));

  SafetensorsFile f(dir.file("m.safetensors"));
  REQUIRE(f.tensors().size() == 4);
  CHECK(f.metadata().at("format") == "pt");
  const TensorView* ta = f.find("a");
  REQUIRE(ta != nullptr);
  CHECK(ta->shape == std::vector<int64_t>{6, 4});
  CHECK(ta->dtype == FileDType::kF32);
  std::vector<float> out(24);
  ta->to_f32(out.data());
  CHECK(out == a);
  // Zero copy: the view points into the file's bytes (the data follows the header verbatim).
  const std::string bytes = test::read_file(dir.file("m.safetensors"));
  const size_t off = bytes.find(std::string(reinterpret_cast<const char*>(a.data()), 96));
  REQUIRE(off != std::string::npos);
  const TensorView* tb = f.find("b");
  REQUIRE(tb->dtype == FileDType::kF16);
  tb->to_f32(out.data());
  for (size_t i = 0; i < 10; ++i) CHECK(out[i] == f16_to_f32(f32_to_f16(b[i])));
  const TensorView* tc = f.find("c");
  REQUIRE(tc->dtype_name == "BF16");
  float row[2];
  tc->to_f32(4, 2, row);  // elements 4, 5
  CHECK(row[0] == bf16_to_f32(f32_to_bf16(c[4])));
  CHECK(row[1] == bf16_to_f32(f32_to_bf16(c[5])));
  CHECK_THROWS_AS(tc->to_f32(11, 2, row), Error);
  const TensorView* ts = f.find("s");
  CHECK(ts->shape.empty());
  CHECK(ts->numel == 1);
  float sv = 0;
  ts->to_f32(&sv);
  CHECK(sv == 42.0f);
  CHECK(f.find("nope") == nullptr);
}

TEST_CASE("safetensors data need not be sorted or contiguous", "[lib][format][safetensors]") {
  std::string data(64, '\0');
  const float x = 3.0f, y = -1.0f;
  std::memcpy(&data[40], &x, 4);
  std::memcpy(&data[8], &y, 4);
  const std::string bytes = raw_file(
      R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[40,44]},)"
      R"("y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})",
      data);
  const auto h = parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t");
  REQUIRE(h.tensors.size() == 3);
}

TEST_CASE("safetensors headers that lie about their data give clear errors",
          "[lib][format][safetensors]") {
  std::string msg;
  const std::string data(16, '\0');
  const auto one = [&](const std::string& entry) { return raw_file("{" + entry + "}", data); };

  SECTION("too small / truncated") {
    CHECK(parse_error("abc", &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("too small"));
    std::string f = one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})");
    for (size_t cut = 0; cut < f.size(); ++cut) {
      CAPTURE(cut);
      CHECK_THROWS_AS(parse_safetensors(reinterpret_cast<const uint8_t*>(f.data()), cut, "t"), Error);
    }
    CHECK(parse_error(f.substr(0, f.size() - 1), &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("tensor a") && Catch::Contains("beyond the data area"));
  }
  SECTION("header length beyond the file") {
    std::string f = one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})");
    f[0] = '\xFF';
    f[5] = '\x01';
    CHECK(parse_error(f, &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("header length"));
  }
  SECTION("not JSON, not an object") {
    CHECK(parse_error(raw_file("{\"a\": [", data), &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("not valid JSON") && Catch::Contains("parse error"));
    CHECK(parse_error(raw_file("[1,2]", data), &msg) == ErrorCode::kFormat);
    CHECK(parse_error(one(R"("a":[1])"), &msg) == ErrorCode::kFormat);
  }
  SECTION("offsets out of range or reversed") {
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[4],"data_offsets":[4,20]})"), &msg) ==
          ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("tensor a") && Catch::Contains("[4, 20]"));
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]})"), &msg) ==
          ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("end before begin"));
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), &msg) ==
          ErrorCode::kFormat);
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551615,3]})"),
                      &msg) == ErrorCode::kFormat);
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0]})"), &msg) ==
          ErrorCode::kFormat);
  }
  SECTION("overlapping tensors") {
    CHECK(parse_error(one(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})"),
                      &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("overlap") && Catch::Contains("a [0, 12)") &&
                        Catch::Contains("b [8, 16)"));
  }
  SECTION("shape x dtype does not match the byte range") {
    CHECK(parse_error(one(R"("w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,16]})"), &msg) ==
          ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("tensor w") && Catch::Contains("needs 12 bytes") &&
                        Catch::Contains("span 16"));
    CHECK(parse_error(one(R"("w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]})"),
                      &msg) == ErrorCode::kFormat);
    CHECK(parse_error(one(R"("w":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]})"), &msg) ==
          ErrorCode::kFormat);
  }
  SECTION("unknown and unsupported dtypes") {
    CHECK(parse_error(one(R"("w":{"dtype":"Q4","shape":[16],"data_offsets":[0,16]})"), &msg) ==
          ErrorCode::kUnsupported);
    CHECK_THAT(msg, Catch::Contains("tensor w") && Catch::Contains("Q4"));
    // I64 is a real safetensors dtype: the file parses, and using the tensor names it.
    const std::string f = one(R"("position_ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]})");
    const auto h = parse_safetensors(reinterpret_cast<const uint8_t*>(f.data()), f.size(), "t");
    REQUIRE(h.tensors[0].dtype == FileDType::kUnsupported);
    TensorView v;
    v.name = "position_ids";
    v.dtype_name = "I64";
    v.file = "t";
    v.numel = 2;
    try {
      v.require_supported();
      FAIL("expected kUnsupported");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kUnsupported);
      CHECK_THAT(e.what(), Catch::Contains("position_ids") && Catch::Contains("I64"));
    }
  }
  SECTION("malformed entries") {
    CHECK(parse_error(one(R"("w":{"shape":[4],"data_offsets":[0,16]})"), &msg) == ErrorCode::kFormat);
    CHECK_THAT(msg, Catch::Contains("missing dtype"));
    CHECK(parse_error(one(R"("w":{"dtype":"F32","data_offsets":[0,16]})"), &msg) == ErrorCode::kFormat);
    CHECK(parse_error(one(R"("w":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]})"), &msg) ==
          ErrorCode::kFormat);
    CHECK(parse_error(one(R"("__metadata__":[1])"), &msg) == ErrorCode::kFormat);
  }
}

TEST_CASE("sharded safetensors checkpoints look like one file", "[lib][format][safetensors]") {
  TempDir dir;
  const auto a = random_floats(8, 4), b = random_floats(12, 5);
  SafetensorsWriter s1, s2;
  s1.add_f32("layer.0.w", {2, 4}, a.data(), FileDType::kBF16);
  s2.add_f32("layer.1.w", {3, 4}, b.data(), FileDType::kF32);
  s1.write(dir.file("model-00001-of-00002.safetensors"));
  s2.write(dir.file("model-00002-of-00002.safetensors"));
  nlohmann::json idx = {{"metadata", {{"total_size", 64}}},
                        {"weight_map",
                         {{"layer.0.w", "model-00001-of-00002.safetensors"},
                          {"layer.1.w", "model-00002-of-00002.safetensors"}}}};
  test::write_file(dir.file("model.safetensors.index.json"), idx.dump());
  const auto m = SafetensorsModel::open(dir.path());
  CHECK(m.size() == 2);
  CHECK(m.files().size() == 2);
  CHECK(m.names() == std::vector<std::string>{"layer.0.w", "layer.1.w"});
  CHECK(m.total_bytes() == 16 + 48);
  std::vector<float> out(12);
  m.get("layer.1.w").to_f32(out.data());
  CHECK(out == b);
  m.get("layer.0.w").to_f32(out.data());
  CHECK(out[3] == bf16_to_f32(f32_to_bf16(a[3])));
  CHECK_THROWS_WITH(m.get("layer.2.w"), Catch::Contains("layer.2.w") && Catch::Contains("not found"));

  SECTION("the index names a tensor its shard lacks") {
    idx["weight_map"]["layer.9.w"] = "model-00001-of-00002.safetensors";
    test::write_file(dir.file("model.safetensors.index.json"), idx.dump());
    CHECK_THROWS_WITH(SafetensorsModel::open(dir.path()),
                      Catch::Contains("layer.9.w") && Catch::Contains("does not contain"));
  }
  SECTION("the index points outside its directory or to a missing shard") {
    idx["weight_map"]["layer.0.w"] = "../evil.safetensors";
    test::write_file(dir.file("model.safetensors.index.json"), idx.dump());
    CHECK_THROWS_WITH(SafetensorsModel::open(dir.path()), Catch::Contains("expected a file name"));
    idx["weight_map"]["layer.0.w"] = "model-00003-of-00002.safetensors";
    test::write_file(dir.file("model.safetensors.index.json"), idx.dump());
    try {
      SafetensorsModel::open(dir.path());
      FAIL("expected kIo");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kIo);
      CHECK_THAT(e.what(), Catch::Contains("model-00003-of-00002.safetensors"));
    }
  }
  SECTION("a broken index") {
    test::write_file(dir.file("model.safetensors.index.json"), "{\"weight_map\": 3}");
    CHECK_THROWS_WITH(SafetensorsModel::open(dir.path()), Catch::Contains("weight_map"));
    test::write_file(dir.file("model.safetensors.index.json"), "{oops");
    CHECK_THROWS_WITH(SafetensorsModel::open(dir.path()), Catch::Contains("not valid JSON"));
  }
}

TEST_CASE("a directory without weights is reported", "[lib][format][safetensors]") {
  TempDir dir;
  CHECK_THROWS_WITH(SafetensorsModel::open(dir.path()), Catch::Contains("no model.safetensors"));
}
