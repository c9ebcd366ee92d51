// piquant-inspect: what is in a model file. .piq: prelude, config, tokenizer, chat template,
// generation defaults, provenance (source, quantization settings, converter), tensor table and
// sizes; .gguf: metadata and tensor table. A thin main over lib/format/.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "format/gguf.hpp"
#include "load/gguf_model.hpp"
#include "format/mapped_file.hpp"
#include "format/piq.hpp"
#include "load/piq_model.hpp"
#include "piquant/piquant.hpp"
#include "util/cli.hpp"
#include "util/progress.hpp"

namespace {

const char* kUsage = R"(usage: piquant-inspect FILE [options]
Shows what is in a model file: FILE is a piquant .piq file, a GGUF file or a llama2.c
checkpoint (its header: shape, vocabulary, classifier).
      --json       .piq: print the raw JSON header instead of the summary
      --verify     .piq: also recompute every tensor's checksum
      --no-tensors leave out the tensor table
  -h, --help       this text
      --version    the version
)";

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "piquant-inspect: error: %s\n", msg.c_str());
  std::exit(1);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::string one_line(const std::string& s, size_t max) {
  std::string r;
  for (char c : s) r += c == '\n' ? ' ' : c;
  return r.size() > max ? r.substr(0, max) + "..." : r;
}

using TypeSizes = std::map<std::string, std::pair<uint64_t, uint64_t>>;  // type -> (params, bytes)

// After the tensor table: weights, bytes and bits per weight for each type (names padded to
// `type_width`), then in total.
void print_sizes(const TypeSizes& by_type, int type_width, size_t n_tensors, uint64_t params,
                 uint64_t bytes) {
  for (const auto& [type, pb] : by_type) {
    std::printf("  %-*s %12llu weights %12s  %.3f bits/weight\n", type_width, type.c_str(),
                static_cast<unsigned long long>(pb.first), piquant::format_bytes(pb.second).c_str(),
                pb.first ? 8.0 * double(pb.second) / double(pb.first) : 0.0);
  }
  std::printf("total: %zu tensors, %llu weights, %s of tensor data, %.3f bits per weight\n",
              n_tensors, static_cast<unsigned long long>(params),
              piquant::format_bytes(bytes).c_str(),
              params ? 8.0 * double(bytes) / double(params) : 0.0);
}

int inspect_piq(const std::string& path, bool json_only, bool verify, bool tensors) {
  const piquant::PiqFile f(path);
  const piquant::PiqHeader& h = f.header();
  const auto* base = f.mapping()->data();
  if (json_only) {
    std::fwrite(base + h.header_offset, 1, h.header_size, stdout);
    std::printf("\n");
    return 0;
  }
  const piquant::PiqMetadata& m = h.meta;
  std::printf(
      "%s: piquant file, format version %u, %s, alignment %llu, header %llu bytes at "
      "offset %llu\n",
      path.c_str(), h.version, piquant::format_bytes(f.mapping()->size()).c_str(),
      static_cast<unsigned long long>(h.alignment), static_cast<unsigned long long>(h.header_size),
      static_cast<unsigned long long>(h.header_offset));
  std::printf("config: %s\n", piquant::config_to_json(m.config).dump().c_str());
  std::printf("rope layout: %s\n", m.rope_layout.c_str());
  if (m.tokenizer.is_null()) {
    std::printf("tokenizer: none\n");
  } else {
    const auto& t = m.tokenizer;
    std::printf("tokenizer: %s, %zu pieces, bos %s, eos %s\n",
                t.contains("algorithm") ? t["algorithm"].dump().c_str() : "?",
                t.contains("pieces") && t["pieces"].is_array() ? t["pieces"].size() : size_t{0},
                t.contains("bos") ? t["bos"].dump().c_str() : "-",
                t.contains("eos") ? t["eos"].dump().c_str() : "-");
  }
  std::printf("chat template: %s\n", m.chat_template.empty()
                                         ? "none"
                                         : (std::to_string(m.chat_template.size()) +
                                            " chars: " + one_line(m.chat_template, 60))
                                               .c_str());
  std::printf("generation: %s\n", piquant::generation_to_json(m.generation).dump().c_str());
  std::printf("provenance: %s\n", m.provenance.dump(2).c_str());
  TypeSizes by_type;
  uint64_t params = 0, bytes = 0;
  if (tensors) {
    std::printf("%-34s %-5s %-6s %-14s %12s %12s  %s\n", "tensor", "type", "layout", "shape",
                "offset", "bytes", "checksum");
  }
  for (const auto& t : f.tensors()) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    params += n;
    bytes += t.size;
    by_type[t.type].first += n;
    by_type[t.type].second += t.size;
    if (tensors) {
      std::printf("%-34s %-5s %-6s %-14s %12llu %12llu  %016llx\n", t.name.c_str(), t.type.c_str(),
                  t.layout.empty() ? "rows" : t.layout.c_str(), shape_str(t.shape).c_str(),
                  static_cast<unsigned long long>(t.offset),
                  static_cast<unsigned long long>(t.size),
                  static_cast<unsigned long long>(t.checksum));
    }
  }
  print_sizes(by_type, 4, f.tensors().size(), params, bytes);
  if (verify) {
    const auto r = f.verify();
    for (const std::string& s : r.mismatched) std::printf("MISMATCH %s\n", s.c_str());
    std::printf("verify: %zu tensors checked, %s\n", r.checked,
                r.ok() ? "all checksums OK" : "CORRUPT");
    return r.ok() ? 0 : 2;
  }
  return 0;
}

int inspect_gguf(const std::string& path, bool tensors) {
  const piquant::GgufFile f(path);
  std::printf(
      "%s: GGUF v%u, %s, alignment %zu, data at offset %zu, %zu metadata keys, %zu "
      "tensors\n",
      path.c_str(), f.version(), piquant::format_bytes(f.size()).c_str(), f.alignment(),
      f.data_offset(), f.metadata().size(), f.tensors().size());
  for (const auto& kv : f.metadata()) {
    std::printf("  %-44s %s\n", kv.key.c_str(), one_line(kv.value.describe(), 100).c_str());
  }
  TypeSizes by_type;
  std::map<std::string, int> kept;  // "Q4_K -> q4_k" -> tensors
  uint64_t params = 0, bytes = 0;
  if (tensors) {
    std::printf("%-34s %-6s %-20s %12s %12s  %s\n", "tensor", "type", "dims (ne0 first)", "offset",
                "bytes", "piquant");
  }
  for (const auto& t : f.tensors()) {
    const piquant::GgmlTypeInfo* info = piquant::ggml_type_info(t.type);
    const std::string type = info ? info->name : "#" + std::to_string(t.type);
    std::vector<int64_t> dims(t.dims.begin(), t.dims.end());
    params += t.n_elements;
    bytes += t.n_bytes;
    by_type[type].first += t.n_elements;
    by_type[type].second += t.n_bytes;
    // What piquant runs it as: its own type (kept, no re-quantization), re-quantized ("*"), or
    // refused ("-"). 1-D tensors (norms, biases) are used as f32.
    bool converted = false;
    const char* pt = piquant::gguf_piquant_type(t.type, &converted);
    if (t.dims.size() == 1) {
      converted = t.type != uint32_t(piquant::GgmlType::kF32);
      if (pt != nullptr && (t.type == uint32_t(piquant::GgmlType::kF32) || t.type == uint32_t(piquant::GgmlType::kF16) ||
                            t.type == uint32_t(piquant::GgmlType::kBF16))) {
        pt = "f32";
      } else {
        pt = nullptr;
      }
    }
    const std::string as = pt == nullptr ? "-" : std::string(pt) + (converted ? "*" : "");
    ++kept[type + " -> " + as];
    if (tensors) {
      std::printf("%-34s %-6s %-20s %12llu %12llu  %s\n", t.name.c_str(), type.c_str(),
                  shape_str(dims).c_str(), static_cast<unsigned long long>(t.offset),
                  static_cast<unsigned long long>(t.n_bytes), as.c_str());
    }
  }
  print_sizes(by_type, 6, f.tensors().size(), params, bytes);
  // The types piquant keeps: a K-quant file runs in its own types, without re-quantization.
  std::printf("piquant loads (* = converted at load, - = not supported):");
  for (const auto& [k, n] : kept) std::printf(" %s (%d)", k.c_str(), n);
  std::printf("\n");
  return 0;
}

}  // namespace

int inspect_llama2c(const std::string& path) {
  const auto m = piquant::Model::load(path);
  const piquant::ModelConfig& c = m->config();
  std::printf("%s: llama2.c checkpoint (version 0: a 7 x int32 header, then float32 weights)\n",
              path.c_str());
  std::printf("  dim %d, hidden_dim %d, %d layer%s, %d heads (%d kv), head_dim %d\n", c.dim,
              c.hidden_dim, c.n_layers, c.n_layers == 1 ? "" : "s", c.n_heads, c.n_kv_heads,
              c.head_dim);
  std::printf("  vocab %d, seq_len %d, classifier %s\n", c.vocab_size, c.max_seq_len,
              c.tied_classifier ? "tied to the token embedding" : "separate");
  std::printf("  weights: %s float32; no tokenizer inside (run it with -z tokenizer.bin)\n",
              piquant::format_bytes(m->weight_bytes()).c_str());
  return 0;
}

int main(int argc, char** argv) {
  std::string path;
  bool json_only = false, verify = false, tensors = true;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f == "--version") {
      piquant::cli::print_version_and_exit("piquant-inspect");
    } else if (f == "--json")
      json_only = true;
    else if (f == "--verify")
      verify = true;
    else if (f == "--no-tensors")
      tensors = false;
    else if (!f.empty() && f[0] == '-')
      die("unknown option '" + f + "' (see --help)");
    else if (path.empty())
      path = f;
    else
      die("more than one FILE given");
  }
  if (path.empty()) die("no FILE given (see --help)");
  try {
    const piquant::MappedFile file(path);
    if (piquant::piq_has_magic(file.data(), file.size())) {
      return inspect_piq(path, json_only, verify, tensors);
    }
    if (piquant::GgufFile::has_magic(file.data(), file.size())) return inspect_gguf(path, tensors);
    if (json_only || verify) die("--json and --verify apply to .piq files");
    // No magic: a llama2.c checkpoint, which the loader checks field by field (and which names
    // other formats it recognises: safetensors, PyTorch, GGML).
    return inspect_llama2c(path);
  } catch (const piquant::Error& e) {
    die(e.what());
  } catch (const std::exception& e) {
    die(std::string("unexpected: ") + e.what());
  }
}
