#include "load/hf_model.hpp"

#include <sys/stat.h>

#include <cstring>
#include <set>

#include "load/arch.hpp"
#include "model/model_impl.hpp"

namespace piquant {

using json = nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kFormat, src + ": " + msg);
}
[[noreturn]] void unsupported(const std::string& src, const std::string& msg) {
  throw Error(ErrorCode::kUnsupported, src + ": " + msg);
}

bool has(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// A positive size from config.json; bounded so later products of three sizes cannot overflow.
int size_field(const json& j, const char* key, const std::string& src) {
  if (!has(j, key)) bad(src, std::string("missing \"") + key + "\"");
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t{1} << 26)) {
    bad(src, std::string("\"") + key + "\" must be a positive integer <= 2^26, got " + v.dump());
  }
  return v.get<int>();
}
int size_field_or(const json& j, const char* key, int fallback, const std::string& src) {
  return has(j, key) ? size_field(j, key, src) : fallback;
}
float float_field_or(const json& j, const char* key, float fallback, const std::string& src) {
  if (!has(j, key)) return fallback;
  if (!j[key].is_number()) bad(src, std::string("\"") + key + "\" must be a number, got " + j[key].dump());
  return j[key].get<float>();
}
bool bool_field_or(const json& j, const char* key, bool fallback, const std::string& src) {
  if (!has(j, key)) return fallback;
  if (!j[key].is_boolean()) bad(src, std::string("\"") + key + "\" must be true/false, got " + j[key].dump());
  return j[key].get<bool>();
}
std::vector<TokenId> token_ids(const json& j, const char* key, const std::string& src) {
  std::vector<TokenId> out;
  if (!has(j, key)) return out;
  const json& v = j[key];
  auto one = [&](const json& x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX) {
      bad(src, std::string("\"") + key + "\" entry " + x.dump() + " is not a token id");
    }
    out.push_back(x.get<TokenId>());
  };
  if (v.is_array()) {
    for (const json& x : v) one(x);
  } else {
    one(v);
  }
  return out;
}

void parse_rope_scaling(const json& j, ModelConfig& c, const std::string& src) {
  if (!has(j, "rope_scaling")) return;
  const json& rs = j["rope_scaling"];
  if (!rs.is_object()) bad(src, "\"rope_scaling\" must be an object or null");
  std::string type;
  if (has(rs, "rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"].get<std::string>();
  else if (has(rs, "type") && rs["type"].is_string()) type = rs["type"].get<std::string>();
  if (type.empty() || type == "default") return;
  auto& s = c.rope_scaling;
  if (type == "llama3") {
    s.type = RopeScalingType::kLlama3;
    s.factor = float_field_or(rs, "factor", 8.0f, src);
    s.low_freq_factor = float_field_or(rs, "low_freq_factor", 1.0f, src);
    s.high_freq_factor = float_field_or(rs, "high_freq_factor", 4.0f, src);
    s.original_max_position = size_field(rs, "original_max_position_embeddings", src);
    if (!(s.high_freq_factor > s.low_freq_factor) || !(s.factor > 0.0f)) {
      bad(src, "rope_scaling llama3 needs factor > 0 and high_freq_factor > low_freq_factor");
    }
  } else if (type == "linear") {
    s.type = RopeScalingType::kLinear;
    s.factor = float_field_or(rs, "factor", 1.0f, src);
    if (!(s.factor > 0.0f)) bad(src, "rope_scaling linear needs factor > 0");
  } else {
    unsupported(src, "rope_scaling type \"" + type + "\" is not supported (supported: llama3, linear)");
  }
}

}  // namespace

std::string hf_supported_architectures() { return hf_arch_class_names(); }

HfConfig parse_hf_config(const json& j, const std::string& src) {
  if (!j.is_object()) bad(src, "config.json must be a JSON object");
  if (!has(j, "architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string()) {
    bad(src, "missing \"architectures\" list (supported: " + hf_supported_architectures() + ")");
  }
  HfConfig out;
  out.hf_architecture = j["architectures"][0].get<std::string>();
  const HfArchClass* info = find_hf_arch_class(out.hf_architecture);
  if (info == nullptr) {
    unsupported(src, "architecture " + out.hf_architecture + " is not supported (supported: " +
                         hf_supported_architectures() + ")");
  }
  ModelConfig& c = out.config;
  c.arch = info->arch;
  const ArchSpec& spec = *find_arch(c.arch);
  const HfArchNames& hf = spec.hf;
  c.dim = size_field(j, "hidden_size", src);
  c.n_layers = hf.n_layers_key != nullptr && has(j, hf.n_layers_key)
                   ? size_field(j, hf.n_layers_key, src)
                   : size_field(j, "num_hidden_layers", src);
  c.n_heads = size_field(j, "num_attention_heads", src);
  c.n_kv_heads = size_field_or(j, "num_key_value_heads", c.n_heads, src);
  c.hidden_dim = hf.hidden_dim_optional ? size_field_or(j, "intermediate_size", 4 * c.dim, src)
                                        : size_field(j, "intermediate_size", src);
  c.vocab_size = size_field(j, "vocab_size", src);
  c.max_seq_len = size_field_or(j, "max_position_embeddings", 2048, src);
  if (c.dim % c.n_heads != 0 && !has(j, "head_dim")) {
    bad(src, "hidden_size " + std::to_string(c.dim) + " is not a multiple of num_attention_heads " +
                 std::to_string(c.n_heads) + " and there is no head_dim");
  }
  c.head_dim = size_field_or(j, "head_dim", c.dim / c.n_heads, src);
  c.rope_theta = float_field_or(j, "rope_theta", 10000.0f, src);
  c.norm_eps = float_field_or(j, hf.norm_eps_key, hf.norm_eps_default, src);
  // transformers' defaults: Exaone ties the classifier unless told otherwise; the others do not.
  c.tied_classifier = bool_field_or(j, "tie_word_embeddings", hf.tied_default, src);
  c.qkv_bias = spec.qkv_bias;
  c.qk_norm = spec.qk_norm;
  const char* act_key = hf.activation_key;
  if (has(j, act_key)) {
    if (!j[act_key].is_string()) bad(src, std::string("\"") + act_key + "\" must be a string");
    c.activation = j[act_key].get<std::string>();
    if (c.activation != "silu") {
      unsupported(src, std::string("\"") + act_key + "\" = \"" + c.activation +
                           "\" is not supported (piquant runs silu / SwiGLU FFNs)");
    }
  }
  if (bool_field_or(j, "attention_bias", false, src) && !spec.qkv_bias) {
    unsupported(src, "\"attention_bias\": true is not supported for " + out.hf_architecture);
  }
  if (bool_field_or(j, "mlp_bias", false, src)) unsupported(src, "\"mlp_bias\": true is not supported");
  parse_rope_scaling(j, c, src);
  if (has(j, "sliding_window") && j["sliding_window"].is_number_integer() &&
      bool_field_or(j, "use_sliding_window", hf.sliding_window_default, src)) {
    out.sliding_window = j["sliding_window"].get<int>();
  }
  out.bos_token_ids = token_ids(j, "bos_token_id", src);
  out.eos_token_ids = token_ids(j, "eos_token_id", src);
  validate_config(c, src);
  return out;
}

GenerationDefaults parse_hf_generation_config(const json& j, const std::string& src) {
  if (!j.is_object()) bad(src, "generation_config.json must be a JSON object");
  GenerationDefaults g;
  if ((g.has_temperature = has(j, "temperature"))) g.temperature = float_field_or(j, "temperature", 1.0f, src);
  if ((g.has_top_p = has(j, "top_p"))) g.top_p = float_field_or(j, "top_p", 1.0f, src);
  if ((g.has_top_k = has(j, "top_k"))) {
    if (!j["top_k"].is_number_integer()) bad(src, "\"top_k\" must be an integer");
    g.top_k = j["top_k"].get<int>();
  }
  if ((g.has_min_p = has(j, "min_p"))) g.min_p = float_field_or(j, "min_p", 0.0f, src);
  if ((g.has_repetition_penalty = has(j, "repetition_penalty"))) {
    g.repetition_penalty = float_field_or(j, "repetition_penalty", 1.0f, src);
  }
  // transformers' default is greedy unless do_sample is set; a file that sets a temperature but
  // not do_sample still means "sample" in practice (Llama 3's files set both).
  g.do_sample = bool_field_or(j, "do_sample", g.has_temperature || g.has_top_p, src);
  if (has(j, "max_new_tokens")) g.max_new_tokens = size_field(j, "max_new_tokens", src);
  g.eos_token_ids = token_ids(j, "eos_token_id", src);
  return g;
}

namespace {

// bos_token etc. are a string or an AddedToken object {"content": "<s>", ...}.
std::string token_text(const json& j, const char* key, const std::string& src) {
  if (!has(j, key)) return "";
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  bad(src, std::string("\"") + key + "\" must be a string or {\"content\": ...}");
}

}  // namespace

HfTokenizerConfig parse_hf_tokenizer_config(const json& j, const std::string& src) {
  if (!j.is_object()) bad(src, "tokenizer_config.json must be a JSON object");
  HfTokenizerConfig t;
  if (has(j, "chat_template")) {
    const json& ct = j["chat_template"];
    if (ct.is_string()) {
      t.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (const json& e : ct) {
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
            e["template"].is_string()) {
          t.chat_template = e["template"].get<std::string>();
        }
      }
    } else {
      bad(src, "\"chat_template\" must be a string or a list of named templates");
    }
  }
  t.bos_token = token_text(j, "bos_token", src);
  t.eos_token = token_text(j, "eos_token", src);
  t.pad_token = token_text(j, "pad_token", src);
  t.unk_token = token_text(j, "unk_token", src);
  if (has(j, "add_bos_token")) t.add_bos_token = bool_field_or(j, "add_bos_token", false, src);
  if (has(j, "add_eos_token")) t.add_eos_token = bool_field_or(j, "add_eos_token", false, src);
  if (has(j, "tokenizer_class") && j["tokenizer_class"].is_string()) {
    t.tokenizer_class = j["tokenizer_class"].get<std::string>();
  }
  return t;
}

std::vector<HfTensorSpec> hf_tensor_specs(const HfConfig& hc) {
  const ModelConfig& c = hc.config;
  const ArchSpec* spec = find_arch(c.arch);
  if (spec == nullptr) {
    unsupported("hf_tensor_specs", "unknown architecture '" + c.arch + "'; piquant runs " +
                                       supported_arch_names());
  }
  const HfArchNames& n = spec->hf;
  const int64_t d = c.dim, h = c.hidden_dim, v = c.vocab_size, hd = c.head_dim;
  const int64_t q = int64_t{c.n_heads} * hd, kv = int64_t{c.n_kv_heads} * hd;
  std::vector<HfTensorSpec> s;
  auto add = [&](std::string name, std::string hf, std::vector<int64_t> shape, int rope_heads = 0) {
    s.push_back({std::move(name), std::move(hf), std::move(shape), rope_heads});
  };
  add("token_embd.weight", n.embd, {v, d});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::string p = n.layer + std::to_string(l) + ".";
    const std::string attn = p + n.attn;
    add(b + "attn_norm.weight", p + n.attn_norm, {d});
    add(b + "attn_q.weight", attn + "q_proj.weight", {q, d}, c.n_heads);
    add(b + "attn_k.weight", attn + "k_proj.weight", {kv, d}, c.n_kv_heads);
    add(b + "attn_v.weight", attn + "v_proj.weight", {kv, d});
    add(b + "attn_output.weight", attn + n.attn_output, {d, q});
    if (c.qkv_bias) {
      add(b + "attn_q.bias", attn + "q_proj.bias", {q}, c.n_heads);
      add(b + "attn_k.bias", attn + "k_proj.bias", {kv}, c.n_kv_heads);
      add(b + "attn_v.bias", attn + "v_proj.bias", {kv});
    }
    if (c.qk_norm) {
      add(b + "attn_q_norm.weight", attn + "q_norm.weight", {hd}, 1);
      add(b + "attn_k_norm.weight", attn + "k_norm.weight", {hd}, 1);
    }
    add(b + "ffn_norm.weight", p + n.ffn_norm, {d});
    add(b + "ffn_gate.weight", p + n.ffn_gate, {h, d});
    add(b + "ffn_up.weight", p + n.ffn_up, {h, d});
    add(b + "ffn_down.weight", p + n.ffn_down, {d, h});
  }
  add("output_norm.weight", n.output_norm, {d});
  if (!c.tied_classifier) add("output.weight", "lm_head.weight", {v, d});
  return s;
}

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
}  // namespace

void check_hf_tensors(const std::vector<HfTensorSpec>& specs, const SafetensorsModel& weights) {
  std::vector<std::string> missing;
  for (const auto& sp : specs) {
    const TensorView* t = weights.find(sp.hf_name);
    if (t == nullptr) {
      missing.push_back(sp.hf_name);
      continue;
    }
    if (t->shape != sp.shape) {
      throw Error(ErrorCode::kFormat, t->file + ": tensor " + sp.hf_name + ": expected shape " +
                                          shape_str(sp.shape) + " (from config.json), found " +
                                          t->shape_string());
    }
    t->require_supported();
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 4; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 4) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw Error(ErrorCode::kFormat, weights.source() + ": missing tensor" +
                                        (missing.size() > 1 ? "s " : " ") + list +
                                        " (expected by config.json)");
  }
}

namespace {
bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
json read_json(const std::string& path) {
  try {
    return json::parse(read_whole_file(path));
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kFormat, path + ": not valid JSON: " + e.what());
  }
}
}  // namespace

HfModel open_hf_model(const std::string& dir) {
  HfModel m;
  m.dir = dir;
  const std::string cfg = dir + "/config.json";
  if (!file_exists(cfg)) {
    throw Error(ErrorCode::kIo, dir + ": no config.json (not a Hugging Face model directory?)");
  }
  m.config = parse_hf_config(read_json(cfg), cfg);
  if (const std::string p = dir + "/generation_config.json"; file_exists(p)) {
    m.generation = parse_hf_generation_config(read_json(p), p);
  }
  if (const std::string p = dir + "/tokenizer_config.json"; file_exists(p)) {
    m.tokenizer_config = parse_hf_tokenizer_config(read_json(p), p);
  }
  if (m.tokenizer_config.chat_template.empty()) {  // newer transformers: a separate file
    if (const std::string p = dir + "/chat_template.jinja"; file_exists(p)) {
      m.tokenizer_config.chat_template = read_whole_file(p);
    }
  }
  if (file_exists(dir + "/tokenizer.json")) m.tokenizer_json_path = dir + "/tokenizer.json";
  if (file_exists(dir + "/tokenizer.model")) m.tokenizer_model_path = dir + "/tokenizer.model";
  m.weights = SafetensorsModel::open(dir);
  m.tensors = hf_tensor_specs(m.config);
  check_hf_tensors(m.tensors, m.weights);
  std::set<std::string> used;
  for (const auto& s : m.tensors) used.insert(s.hf_name);
  for (const auto& n : m.weights.names()) {
    if (used.count(n) == 0) m.unused.push_back(n);
  }
  return m;
}

namespace {
void permute(const void* src, void* dst, int n_heads, int head_dim, size_t cols, size_t es,
             bool to_pairs) {
  const size_t row = cols * es;
  const int half = head_dim / 2;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  for (int hh = 0; hh < n_heads; ++hh) {
    const size_t base = static_cast<size_t>(hh) * static_cast<size_t>(head_dim);
    for (int i = 0; i < half; ++i) {
      const size_t pair0 = base + 2 * static_cast<size_t>(i), pair1 = pair0 + 1;
      const size_t half0 = base + static_cast<size_t>(i), half1 = half0 + static_cast<size_t>(half);
      if (to_pairs) {
        std::memcpy(o + pair0 * row, s + half0 * row, row);
        std::memcpy(o + pair1 * row, s + half1 * row, row);
      } else {
        std::memcpy(o + half0 * row, s + pair0 * row, row);
        std::memcpy(o + half1 * row, s + pair1 * row, row);
      }
    }
  }
}
}  // namespace

void permute_halves_to_pairs(const void* src, void* dst, int n_heads, int head_dim, size_t cols,
                             size_t elem_size) {
  permute(src, dst, n_heads, head_dim, cols, elem_size, true);
}

void permute_pairs_to_halves(const void* src, void* dst, int n_heads, int head_dim, size_t cols,
                             size_t elem_size) {
  permute(src, dst, n_heads, head_dim, cols, elem_size, false);
}

}  // namespace piquant
