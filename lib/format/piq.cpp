#include "format/piq.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace piquant {

using json = nlohmann::json;

// ---- XXH64 ---------------------------------------------------------------------------------
namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full,
                   kP3 = 0x165667B19E3779F9ull, kP4 = 0x85EBCA77C2B2AE63ull,
                   kP5 = 0x27D4EB2F165667C5ull;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t load32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
uint64_t round64(uint64_t acc, uint64_t input) { return rotl(acc + input * kP2, 31) * kP1; }
uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * kP1 + kP4; }

}  // namespace

Xxh64::Xxh64(uint64_t seed) : v_{seed + kP1 + kP2, seed + kP2, seed, seed - kP1}, seed_(seed) {}

void Xxh64::update(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (buffered_ + n < 32) {
    std::memcpy(buf_ + buffered_, p, n);
    buffered_ += n;
    return;
  }
  if (buffered_ > 0) {
    const size_t fill = 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, fill);
    for (int i = 0; i < 4; ++i) v_[i] = round64(v_[i], load64(buf_ + 8 * i));
    p += fill;
    n -= fill;
    buffered_ = 0;
  }
  uint64_t v0 = v_[0], v1 = v_[1], v2 = v_[2], v3 = v_[3];
  for (; n >= 32; p += 32, n -= 32) {
    v0 = round64(v0, load64(p));
    v1 = round64(v1, load64(p + 8));
    v2 = round64(v2, load64(p + 16));
    v3 = round64(v3, load64(p + 24));
  }
  v_[0] = v0, v_[1] = v1, v_[2] = v2, v_[3] = v3;
  std::memcpy(buf_, p, n);
  buffered_ = n;
}

uint64_t Xxh64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (uint64_t v : v_) h = merge64(h, v);
  } else {
    h = seed_ + kP5;
  }
  h += total_;
  const uint8_t* p = buf_;
  size_t n = buffered_;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round64(0, load64(p)), 27) * kP1 + kP4;
  if (n >= 4) {
    h = rotl(h ^ (static_cast<uint64_t>(load32(p)) * kP1), 23) * kP2 + kP3;
    p += 4;
    n -= 4;
  }
  for (; n > 0; ++p, --n) h = rotl(h ^ (*p * kP5), 11) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

uint64_t xxh64(const void* data, size_t n, uint64_t seed) {
  Xxh64 h(seed);
  h.update(data, n);
  return h.digest();
}

// ---- config JSON ---------------------------------------------------------------------------
namespace {

std::string hex64(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = d[v & 15];
  return s;
}

[[noreturn]] void bad(const std::string& source, const std::string& msg) {
  throw Error(ErrorCode::kFormat, source + ": " + msg);
}

const json& field(const json& j, const char* key, const std::string& source, const char* where) {
  if (!j.contains(key)) bad(source, std::string(where) + ": missing field \"" + key + "\"");
  return j[key];
}
int get_int(const json& j, const char* key, const std::string& src, const char* where) {
  const json& v = field(j, key, src, where);
  if (!v.is_number_integer() || v.get<int64_t>() < -(int64_t{1} << 31) ||
      v.get<int64_t>() >= (int64_t{1} << 31)) {
    bad(src, std::string(where) + "." + key + " must be a 32-bit integer, got " + v.dump());
  }
  return v.get<int>();
}
float get_float(const json& j, const char* key, const std::string& src, const char* where) {
  const json& v = field(j, key, src, where);
  if (!v.is_number()) bad(src, std::string(where) + "." + key + " must be a number, got " + v.dump());
  return v.get<float>();
}
bool get_bool(const json& j, const char* key, const std::string& src, const char* where) {
  const json& v = field(j, key, src, where);
  if (!v.is_boolean()) bad(src, std::string(where) + "." + key + " must be true/false, got " + v.dump());
  return v.get<bool>();
}
std::string get_string(const json& j, const char* key, const std::string& src, const char* where) {
  const json& v = field(j, key, src, where);
  if (!v.is_string()) bad(src, std::string(where) + "." + key + " must be a string, got " + v.dump());
  return v.get<std::string>();
}
uint64_t get_u64(const json& j, const char* key, const std::string& src, const std::string& where) {
  const json& v = field(j, key, src, where.c_str());
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
    bad(src, where + "." + key + " must be a non-negative integer, got " + v.dump());
  }
  return v.get<uint64_t>();
}

const char* rope_scaling_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kLinear: return "linear";
    case RopeScalingType::kLlama3: return "llama3";
    case RopeScalingType::kNone: break;
  }
  return "none";
}

}  // namespace

json config_to_json(const ModelConfig& c) {
  return {{"arch", c.arch},
          {"dim", c.dim},
          {"hidden_dim", c.hidden_dim},
          {"n_layers", c.n_layers},
          {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_seq_len", c.max_seq_len},
          {"rope_theta", c.rope_theta},
          {"norm_eps", c.norm_eps},
          {"tied_classifier", c.tied_classifier},
          {"rope_scaling",
           {{"type", rope_scaling_name(c.rope_scaling.type)},
            {"factor", c.rope_scaling.factor},
            {"low_freq_factor", c.rope_scaling.low_freq_factor},
            {"high_freq_factor", c.rope_scaling.high_freq_factor},
            {"original_max_position", c.rope_scaling.original_max_position}}},
          {"qkv_bias", c.qkv_bias},
          {"qk_norm", c.qk_norm},
          {"activation", c.activation}};
}

ModelConfig config_from_json(const json& j, const std::string& src) {
  if (!j.is_object()) bad(src, "config must be an object");
  const char* w = "config";
  ModelConfig c;
  c.arch = get_string(j, "arch", src, w);
  c.dim = get_int(j, "dim", src, w);
  c.hidden_dim = get_int(j, "hidden_dim", src, w);
  c.n_layers = get_int(j, "n_layers", src, w);
  c.n_heads = get_int(j, "n_heads", src, w);
  c.n_kv_heads = get_int(j, "n_kv_heads", src, w);
  c.head_dim = get_int(j, "head_dim", src, w);
  c.vocab_size = get_int(j, "vocab_size", src, w);
  c.max_seq_len = get_int(j, "max_seq_len", src, w);
  c.rope_theta = get_float(j, "rope_theta", src, w);
  c.norm_eps = get_float(j, "norm_eps", src, w);
  c.tied_classifier = get_bool(j, "tied_classifier", src, w);
  c.qkv_bias = get_bool(j, "qkv_bias", src, w);
  c.qk_norm = get_bool(j, "qk_norm", src, w);
  c.activation = get_string(j, "activation", src, w);
  const json& rs = field(j, "rope_scaling", src, w);
  if (!rs.is_object()) bad(src, "config.rope_scaling must be an object");
  const char* rw = "config.rope_scaling";
  const std::string type = get_string(rs, "type", src, rw);
  if (type == "none") {
    c.rope_scaling.type = RopeScalingType::kNone;
  } else if (type == "linear") {
    c.rope_scaling.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    c.rope_scaling.type = RopeScalingType::kLlama3;
  } else {
    throw Error(ErrorCode::kUnsupported, src + ": config.rope_scaling.type \"" + type +
                                             "\" is not supported (none, linear, llama3)");
  }
  c.rope_scaling.factor = get_float(rs, "factor", src, rw);
  c.rope_scaling.low_freq_factor = get_float(rs, "low_freq_factor", src, rw);
  c.rope_scaling.high_freq_factor = get_float(rs, "high_freq_factor", src, rw);
  c.rope_scaling.original_max_position = get_int(rs, "original_max_position", src, rw);
  return c;
}

json generation_to_json(const GenerationDefaults& g) {
  json j = json::object();
  if (g.has_temperature) j["temperature"] = g.temperature;
  if (g.has_top_p) j["top_p"] = g.top_p;
  if (g.has_top_k) j["top_k"] = g.top_k;
  if (g.has_min_p) j["min_p"] = g.min_p;
  if (g.has_repetition_penalty) j["repetition_penalty"] = g.repetition_penalty;
  j["do_sample"] = g.do_sample;
  if (g.max_new_tokens > 0) j["max_new_tokens"] = g.max_new_tokens;
  j["eos_token_ids"] = g.eos_token_ids;
  return j;
}

GenerationDefaults generation_from_json(const json& j, const std::string& src) {
  if (!j.is_object()) bad(src, "generation must be an object");
  const char* w = "generation";
  GenerationDefaults g;
  if ((g.has_temperature = j.contains("temperature"))) g.temperature = get_float(j, "temperature", src, w);
  if ((g.has_top_p = j.contains("top_p"))) g.top_p = get_float(j, "top_p", src, w);
  if ((g.has_top_k = j.contains("top_k"))) g.top_k = get_int(j, "top_k", src, w);
  if ((g.has_min_p = j.contains("min_p"))) g.min_p = get_float(j, "min_p", src, w);
  if ((g.has_repetition_penalty = j.contains("repetition_penalty"))) {
    g.repetition_penalty = get_float(j, "repetition_penalty", src, w);
  }
  if (j.contains("do_sample")) g.do_sample = get_bool(j, "do_sample", src, w);
  if (j.contains("max_new_tokens")) g.max_new_tokens = get_int(j, "max_new_tokens", src, w);
  if (j.contains("eos_token_ids")) {
    const json& e = j["eos_token_ids"];
    if (!e.is_array()) bad(src, "generation.eos_token_ids must be an array");
    for (const json& id : e) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        bad(src, "generation.eos_token_ids entry " + id.dump() + " is not a token id");
      }
      g.eos_token_ids.push_back(id.get<TokenId>());
    }
  }
  return g;
}

// ---- reader --------------------------------------------------------------------------------
namespace {

constexpr char kMagic[8] = {'P', 'I', 'Q', 'U', 'A', 'N', 'T', '\0'};
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 30;  // tokenizers of 256k tokens fit easily

size_t float_type_size(const std::string& type) {
  if (type == "f32") return 4;
  if (type == "f16" || type == "bf16") return 2;
  return 0;  // quantized: the layout owner checks the size
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

PiqTensorInfo tensor_from_json(const json& t, const std::string& src, size_t index) {
  const std::string w0 = "tensors[" + std::to_string(index) + "]";
  if (!t.is_object()) bad(src, w0 + " must be an object");
  PiqTensorInfo info;
  info.name = get_string(t, "name", src, w0.c_str());
  if (info.name.empty()) bad(src, w0 + ": empty tensor name");
  const std::string w = "tensor " + info.name;
  info.type = get_string(t, "type", src, w.c_str());
  info.layout = t.contains("layout") ? get_string(t, "layout", src, w.c_str()) : "";
  const json& shape = field(t, "shape", src, w.c_str());
  if (!shape.is_array() || shape.size() > 8) bad(src, w + ": shape must be an array of <= 8 sizes");
  for (const json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (int64_t{1} << 40)) {
      bad(src, w + ": bad shape entry " + d.dump());
    }
    info.shape.push_back(d.get<int64_t>());
  }
  info.offset = get_u64(t, "offset", src, w);
  info.size = get_u64(t, "size", src, w);
  const std::string sum = get_string(t, "checksum", src, w.c_str());
  if (sum.size() != 22 || sum.compare(0, 6, "xxh64:") != 0 ||
      sum.find_first_not_of("0123456789abcdef", 6) != std::string::npos) {
    bad(src, w + ": checksum \"" + sum + "\" is not \"xxh64:\" + 16 hex digits");
  }
  info.checksum = std::stoull(sum.substr(6), nullptr, 16);
  return info;
}

}  // namespace

PiqHeader parse_piq(const uint8_t* data, size_t size, const std::string& src) {
  const auto too_small = [&] {
    bad(src, "file of " + std::to_string(size) + " bytes is too small for a piquant header (" +
                 std::to_string(kPiqPreludeSize) + " bytes; truncated?)");
  };
  if (size < 12) too_small();
  if (std::memcmp(data, kMagic, 8) != 0) bad(src, "not a piquant file (bad magic)");
  ByteReader r(data, size, src);
  r.seek(8, "version");
  PiqHeader h;
  h.version = r.read<uint32_t>("format version");
  // The version comes first: a newer file may lay out everything after it differently.
  if (h.version > kPiqVersion) {
    throw Error(ErrorCode::kUnsupported,
                src + ": file format version " + std::to_string(h.version) +
                    " is newer than this piquant (supports <= " + std::to_string(kPiqVersion) +
                    "); update piquant");
  }
  if (h.version == 0) bad(src, "file format version 0 is invalid");
  if (size < kPiqPreludeSize) too_small();
  r.read<uint32_t>("reserved");
  h.header_offset = r.read<uint64_t>("header offset");
  h.header_size = r.read<uint64_t>("header length");
  if (h.header_offset < kPiqPreludeSize || h.header_offset > size ||
      h.header_size > size - h.header_offset) {
    bad(src, "header at offset " + std::to_string(h.header_offset) + " + " +
                 std::to_string(h.header_size) + " bytes lies outside the file of " +
                 std::to_string(size) + " bytes (truncated?)");
  }
  if (h.header_size > kMaxHeaderBytes) bad(src, "header length is implausibly large");
  json j;
  try {
    j = json::parse(data + h.header_offset, data + h.header_offset + h.header_size);
  } catch (const json::exception& e) {
    bad(src, std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad(src, "header must be a JSON object");
  const char* w = "header";
  h.alignment = get_u64(j, "alignment", src, w);
  if (h.alignment < 16 || h.alignment > 65536 || (h.alignment & (h.alignment - 1)) != 0) {
    bad(src, "alignment " + std::to_string(h.alignment) + " is not a power of two in 16..65536");
  }
  h.meta.config = config_from_json(field(j, "config", src, w), src);
  h.meta.rope_layout = get_string(j, "rope_layout", src, w);
  if (h.meta.rope_layout != "pairs" && h.meta.rope_layout != "halves") {
    bad(src, "rope_layout \"" + h.meta.rope_layout + "\" is neither \"pairs\" nor \"halves\"");
  }
  h.meta.tokenizer = j.contains("tokenizer") ? j["tokenizer"] : json();
  h.meta.chat_template = j.contains("chat_template") ? get_string(j, "chat_template", src, w) : "";
  if (j.contains("generation")) h.meta.generation = generation_from_json(j["generation"], src);
  if (j.contains("provenance")) h.meta.provenance = j["provenance"];
  if (j.contains("extra")) h.meta.extra = j["extra"];

  const json& ts = field(j, "tensors", src, w);
  if (!ts.is_array()) bad(src, "tensors must be an array");
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < ts.size(); ++i) {
    PiqTensorInfo t = tensor_from_json(ts[i], src, i);
    const std::string where = "tensor " + t.name;
    if (!seen.emplace(t.name, i).second) bad(src, "duplicate tensor name " + t.name);
    if (t.offset % h.alignment != 0) {
      bad(src, where + ": offset " + std::to_string(t.offset) + " is not a multiple of the " +
                   std::to_string(h.alignment) + "-byte alignment");
    }
    if (t.offset < kPiqPreludeSize || t.offset > h.header_offset ||
        t.size > h.header_offset - t.offset) {
      bad(src, where + ": offset " + std::to_string(t.offset) + " + " + std::to_string(t.size) +
                   " bytes lies outside the data area [" + std::to_string(kPiqPreludeSize) +
                   ", " + std::to_string(h.header_offset) + ")");
    }
    if (const size_t es = float_type_size(t.type); es != 0) {
      size_t n = 1;
      for (int64_t d : t.shape) n = checked_mul(n, static_cast<size_t>(d), src + ": " + where);
      if (checked_mul(n, es, src + ": " + where) != t.size) {
        bad(src, where + ": " + t.type + " shape needs " + std::to_string(n * es) +
                     " bytes but the index says " + std::to_string(t.size));
      }
    }
    h.tensors.push_back(std::move(t));
  }
  std::vector<const PiqTensorInfo*> order;
  for (const auto& t : h.tensors) {
    if (t.size > 0) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->offset < order[i - 1]->offset + order[i - 1]->size) {
      bad(src, "tensors " + order[i - 1]->name + " and " + order[i]->name + " overlap (offsets " +
                   std::to_string(order[i - 1]->offset) + "+" + std::to_string(order[i - 1]->size) +
                   " and " + std::to_string(order[i]->offset) + ")");
    }
  }
  return h;
}

PiqFile::PiqFile(const std::string& path) : PiqFile(std::make_shared<const MappedFile>(path)) {}

PiqFile::PiqFile(std::shared_ptr<const MappedFile> file)
    : file_(std::move(file)), header_(parse_piq(file_->data(), file_->size(), file_->path())) {
  for (size_t i = 0; i < header_.tensors.size(); ++i) by_name_[header_.tensors[i].name] = i;
}

const PiqTensorInfo* PiqFile::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

const PiqTensorInfo& PiqFile::get(const std::string& name) const {
  const PiqTensorInfo* t = find(name);
  if (t == nullptr) throw Error(ErrorCode::kFormat, path() + ": tensor " + name + " not found");
  return *t;
}

PiqFile::VerifyResult PiqFile::verify() const {
  VerifyResult r;
  for (const auto& t : header_.tensors) {
    const uint64_t got = xxh64(data(t), t.size);
    ++r.checked;
    if (got != t.checksum) {
      r.mismatched.push_back(t.name + ": checksum xxh64:" + hex64(got) + " != xxh64:" +
                             hex64(t.checksum) + " in the index (corrupt data)");
    }
  }
  return r;
}

// ---- writer --------------------------------------------------------------------------------

struct PiqWriter::HashState {
  Xxh64 h;
};

PiqWriter::PiqWriter(std::string path, PiqWriterOptions options)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), options_(options) {
  const size_t a = options_.alignment;
  if (a < 16 || a > 65536 || (a & (a - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "PiqWriter: alignment " + std::to_string(a) + " is not a power of two in 16..65536");
  }
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) {
    throw Error(ErrorCode::kIo, tmp_path_ + ": cannot create: " + std::strerror(errno));
  }
  const uint8_t zeros[kPiqPreludeSize] = {};
  write_raw(zeros, sizeof zeros);  // patched by finish()
}

PiqWriter::~PiqWriter() {
  if (f_ != nullptr) std::fclose(f_);
  if (!finished_) std::remove(tmp_path_.c_str());
}

void PiqWriter::write_raw(const void* data, size_t size) {
  if (size > 0 && std::fwrite(data, 1, size, f_) != size) {
    throw Error(ErrorCode::kIo, tmp_path_ + ": write failed at offset " + std::to_string(pos_) +
                                    ": " + std::strerror(errno));
  }
  pos_ += size;
}

void PiqWriter::begin_tensor(const std::string& name, const std::string& type,
                             const std::string& layout, std::vector<int64_t> shape) {
  if (finished_ || in_tensor_) {
    throw Error(ErrorCode::kInvalidArgument, "PiqWriter: begin_tensor(" + name + ") out of order");
  }
  if (name.empty() || !names_.emplace(name, tensors_.size()).second) {
    throw Error(ErrorCode::kInvalidArgument, "PiqWriter: empty or duplicate tensor name \"" + name + "\"");
  }
  static const uint8_t zeros[65536] = {};
  const size_t pad = (options_.alignment - pos_ % options_.alignment) % options_.alignment;
  write_raw(zeros, pad);
  PiqTensorInfo t;
  t.name = name;
  t.type = type;
  t.layout = layout;
  t.shape = std::move(shape);
  t.offset = pos_;
  tensors_.push_back(std::move(t));
  hash_ = std::make_unique<HashState>();
  in_tensor_ = true;
}

void PiqWriter::append(const void* data, size_t size) {
  if (!in_tensor_) throw Error(ErrorCode::kInvalidArgument, "PiqWriter: append outside a tensor");
  write_raw(data, size);
  hash_->h.update(data, size);
  tensors_.back().size += size;
}

void PiqWriter::end_tensor() {
  if (!in_tensor_) throw Error(ErrorCode::kInvalidArgument, "PiqWriter: end_tensor without begin");
  tensors_.back().checksum = hash_->h.digest();
  in_tensor_ = false;
}

void PiqWriter::add_tensor(const std::string& name, const std::string& type,
                           const std::string& layout, std::vector<int64_t> shape,
                           const void* data, size_t size) {
  begin_tensor(name, type, layout, std::move(shape));
  append(data, size);
  end_tensor();
}

void PiqWriter::finish(const PiqMetadata& meta) {
  if (finished_ || in_tensor_) throw Error(ErrorCode::kInvalidArgument, "PiqWriter: finish out of order");
  json j;
  j["format"] = "piquant";
  j["alignment"] = options_.alignment;
  j["config"] = config_to_json(meta.config);
  j["rope_layout"] = meta.rope_layout;
  j["tokenizer"] = meta.tokenizer;
  j["chat_template"] = meta.chat_template;
  j["generation"] = generation_to_json(meta.generation);
  j["provenance"] = meta.provenance;
  j["extra"] = meta.extra;
  json ts = json::array();
  for (const auto& t : tensors_) {
    ts.push_back({{"name", t.name}, {"type", t.type}, {"layout", t.layout}, {"shape", t.shape},
                  {"offset", t.offset}, {"size", t.size}, {"checksum", "xxh64:" + hex64(t.checksum)}});
  }
  j["tensors"] = std::move(ts);
  // Validate what we are about to write with the reader's own rules.
  (void)config_from_json(j["config"], path_);
  const std::string text = j.dump(1);
  const uint64_t header_offset = pos_;
  write_raw(text.data(), text.size());
  uint8_t prelude[kPiqPreludeSize] = {};
  std::memcpy(prelude, kMagic, 8);
  put_u32(prelude + 8, kPiqVersion);
  put_u64(prelude + 16, header_offset);
  put_u64(prelude + 24, text.size());
  if (std::fseek(f_, 0, SEEK_SET) != 0 || std::fwrite(prelude, 1, sizeof prelude, f_) != sizeof prelude ||
      std::fflush(f_) != 0 || ::fsync(fileno(f_)) != 0) {
    throw Error(ErrorCode::kIo, tmp_path_ + ": cannot finish the file: " + std::strerror(errno));
  }
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw Error(ErrorCode::kIo, tmp_path_ + ": close failed: " + std::strerror(errno));
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw Error(ErrorCode::kIo, path_ + ": cannot rename from " + tmp_path_ + ": " + std::strerror(errno));
  }
  finished_ = true;
}

}  // namespace piquant
