// piquant-convert: Hugging Face directories, GGUF files and llama2.c checkpoints in, one .piq
// file out (quantized, packed for the kernels, with tokenizer, chat template and provenance).
// A thin main over lib/convert/ (docs/converter.md).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "convert/convert.hpp"
#include "format/mapped_file.hpp"
#include "format/piq.hpp"
#include "format/safetensors.hpp"
#include "lora/adapter.hpp"
#include "piquant/piquant.hpp"
#include "util/cli.hpp"

namespace {

const char* kUsage = R"(usage: piquant-convert INPUT -o OUTPUT.piq [options]
       piquant-convert INPUT -o OUTPUT.gguf --to gguf --type q4_k_m [options]
       piquant-convert --verify FILE.piq
INPUT is a Hugging Face model directory (config.json + model.safetensors or a sharded
model.safetensors.index.json), a .gguf file, or a llama2.c checkpoint (its tokenizer.bin
given with -z). A long flag takes its value after a space or '=' (--type=q4_mix).
  -o, --output FILE       the .piq file to write (written to FILE.tmp, renamed when complete)
      --type T            weight type or preset (default q8), in any case:
                            f32, f16, q8 (= GGUF Q8_0), q4 (= Q4_0), q4m (= Q4_1: int4 +
                            per-block minimum; q4a is an old name for it),
                            q4_mix / q4m_mix (q4 / q4m, with embedding, classifier and
                            attention v/output projections at q8),
                            GGUF's K-quants: q4_k, q5_k, q6_k (256-value super-blocks),
                            q5_0, q5_1, and the mixes q4_k_m / q5_k_m (Q4_K / Q5_K with the
                            classifier and some attn_v / ffn_down at Q6_K); rows that are
                            not whole super-blocks fall back per tensor (q4_k -> q5_0,
                            q5_k -> q5_1, q6_k -> q8) with a note,
                            keep (each tensor as the source stores it where piquant runs it:
                            GGUF Q8_0 / Q4_0 / Q4_1 / F16 / F32 copied bit for bit)
      --outtype T         the same (llama.cpp's convert script's spelling)
      --to FORMAT         piq (default) or gguf: a GGUF file llama.cpp runs (row-major
                          blocks; also chosen when OUTPUT ends in .gguf)
  -z, --tokenizer FILE    tokenizer to embed (needed for llama2.c; overrides the source's);
                          the converter says which tokenizer the file carries, and warns when
                          it carries none
      --block-size N      quantization block (only 32: the kernels' block)
      --no-search         plain round to nearest (absmax / min-max), no scale search
      --calibrate FILE    text to run the f32 model over; weights quantization error by each
                          input channel's mean square activation (imatrix-style)
      --calib-tokens N    at most N tokens of the calibration text (default 8192)
      --calib-window N    tokens per calibration context (default 512, <= the model's)
      --report            per-tensor table: type, bytes, relative RMS error; bits per weight
      --verify FILE       recompute FILE's per-tensor checksums and report (no conversion)
  -t, --threads N         threads (default: all cores; more than the cores: warned, slow)
  -q, --quiet             no progress output
  -h, --help              this text
      --version           the version
LoRA adapters (PEFT directory, adapter safetensors, GGUF adapter or .piq adapter):
      --merge-lora FILE   merge the adapter into the weights before quantizing (repeatable)
      --lora-scale S      scale of the preceding --merge-lora (default 1; multiplies alpha / r)
      --lora FILE         instead of converting INPUT, write FILE as a .piq adapter for INPUT
                          (shapes checked against INPUT's config; -o names the adapter file)
      --lora-type T       A/B storage of --lora: f16 (default) or q8 (int8, scale per row)
)";

[[noreturn]] void die(const std::string& msg) { piquant::cli::die("piquant-convert", msg); }

int verify(const std::string& path) {
  const piquant::PiqFile f(path);
  const auto r = f.verify();
  for (const std::string& m : r.mismatched) std::printf("MISMATCH %s\n", m.c_str());
  std::printf("%s: %zu tensors checked, %zu mismatched: %s\n", path.c_str(), r.checked,
              r.mismatched.size(), r.ok() ? "OK" : "CORRUPT");
  return r.ok() ? 0 : 2;
}

void print_report(const piquant::ConvertReport& rep) {
  std::printf("%-34s %-5s %-6s %-14s %12s %10s\n", "tensor", "type", "layout", "shape", "bytes",
              "rel.RMS");
  for (const auto& t : rep.tensors) {
    const std::string shape =
        t.rows == 1 ? "[" + std::to_string(t.cols) + "]"
                    : "[" + std::to_string(t.rows) + ", " + std::to_string(t.cols) + "]";
    char err[32];
    if (t.copied)
      std::snprintf(err, sizeof err, "copied");
    else
      std::snprintf(err, sizeof err, "%.5f", t.rel_rms);
    std::printf("%-34s %-5s %-6s %-14s %12llu %10s\n", t.name.c_str(), t.type.c_str(),
                t.layout.empty() ? "rows" : t.layout.c_str(), shape.c_str(),
                static_cast<unsigned long long>(t.bytes), err);
  }
  std::printf("file %s, %llu weights, %.3f bits per weight (matrices: %.3f)\n",
              piquant::format_bytes(rep.file_bytes).c_str(),
              static_cast<unsigned long long>(rep.params), rep.bits_per_weight,
              rep.matrix_bits_per_weight);
}

}  // namespace

int main(int argc, char** argv) {
  std::string to, input, output, tokenizer, calib_file, verify_file, lora_file, lora_type = "f16";
  std::vector<std::pair<std::string, float>> merges;  // --merge-lora file, scale
  bool report = false;
  int calib_tokens = 8192;
  piquant::ConvertOptions o;
  piquant::cli::ArgReader args("piquant-convert", kUsage, argc, argv);
  while (args.next()) {
    const std::string f = args.arg();
    if (f == "-o" || f == "--output")
      output = args.value();
    else if (f == "--type" || f == "--outtype")
      o.type = args.value();
    else if (f == "--to")
      to = args.value();
    else if (f == "-z" || f == "--tokenizer")
      tokenizer = args.value();
    else if (f == "--block-size")
      o.block_size = args.parse_count(f, args.value());
    else if (f == "--no-search")
      o.search = false;
    else if (f == "--calibrate")
      calib_file = args.value();
    else if (f == "--calib-tokens")
      calib_tokens = args.parse_count(f, args.value());
    else if (f == "--calib-window")
      o.calibration_window = args.parse_count(f, args.value());
    else if (f == "--report")
      report = true;
    else if (f == "--verify")
      verify_file = args.value();
    else if (f == "-t" || f == "--threads")
      o.threads = args.parse_count(f, args.value());
    else if (f == "-q" || f == "--quiet")
      o.progress = false;
    else if (f == "--merge-lora")
      merges.emplace_back(args.value(), 1.0f);
    else if (f == "--lora-scale") {
      if (merges.empty()) die("--lora-scale applies to a preceding --merge-lora");
      merges.back().second = args.parse_finite_float(f, args.value());
    } else if (f == "--lora")
      lora_file = args.value();
    else if (f == "--lora-type")
      lora_type = args.value();
    else if (!f.empty() && f[0] == '-')
      die("unknown option '" + f + "' (see --help)");
    else if (input.empty())
      input = f;
    else
      die("more than one INPUT given ('" + input + "' and '" + f + "')");
  }
  try {
    if (!verify_file.empty()) {
      if (!input.empty() || !output.empty()) die("--verify checks a file; give no INPUT or -o");
      return verify(verify_file);
    }
    if (input.empty()) die("no INPUT given (see --help)");
    if (output.empty()) die("no output file given (-o OUTPUT.piq)");
    const bool gguf_name = output.size() > 5 && output.compare(output.size() - 5, 5, ".gguf") == 0;
    o.format = to.empty() ? (gguf_name ? "gguf" : "piq") : to;
    if (o.format != "piq" && o.format != "gguf") die("--to " + to + ": piq or gguf");
    auto src = piquant::open_model_source(input, tokenizer);
    if (!lora_file.empty()) {  // pack an adapter for this base model; no model conversion
      if (lora_type != "f16" && lora_type != "q8") die("--lora-type must be f16 or q8");
      const auto a = piquant::load_lora_for(src->config(), src->rope_layout(), lora_file);
      piquant::write_lora_piq(*a, output, lora_type == "f16" ? piquant::LoraFileType::kF16
                                                              : piquant::LoraFileType::kI8);
      std::fprintf(stderr, "piquant-convert: wrote adapter %s (%s A/B) for %s\n", output.c_str(),
                   lora_type.c_str(), input.c_str());
      return 0;
    }
    std::vector<std::shared_ptr<const piquant::LoraAdapter>> adapters;
    for (const auto& [file, scale] : merges) {
      adapters.push_back(piquant::load_lora_for(src->config(), src->rope_layout(), file));
      std::fprintf(stderr, "piquant-convert: merging %s (scale %g) into the weights\n",
                   file.c_str(), double(scale));
    }
    if (!adapters.empty()) {
      o.pre_quantize = [&](const std::string& name, int64_t rows, int64_t cols, float* data) {
        for (size_t i = 0; i < adapters.size(); ++i) {
          piquant::merge_lora(*adapters[i], merges[i].second, name, rows, cols, data);
        }
      };
      o.extra_provenance["merged_lora"] = nlohmann::json::array();
      for (const auto& [file, scale] : merges) {
        o.extra_provenance["merged_lora"].push_back({{"file", file}, {"scale", scale}});
      }
    }
    if (!calib_file.empty()) {
      if (!src->tokenizer()) die("--calibrate needs a tokenizer: the input carries none, give -z");
      const std::string text = piquant::read_whole_file(calib_file);
      o.calibration_tokens = src->tokenizer()->encode(text);
      if (o.calibration_tokens.size() > static_cast<size_t>(calib_tokens)) {
        o.calibration_tokens.resize(static_cast<size_t>(calib_tokens));
      }
      if (o.calibration_tokens.size() < 2) die(calib_file + ": calibration text is (almost) empty");
      o.calibration_name = calib_file;
      std::fprintf(stderr, "piquant-convert: calibrating on %zu tokens of %s\n",
                   o.calibration_tokens.size(), calib_file.c_str());
    }
    o.type = piquant::canonical_type_name(o.type);
    std::fprintf(stderr, "piquant-convert: %s: %s %dL dim %d, %zu tensors, %s -> %s (%s)\n",
                 input.c_str(), src->config().arch.c_str(), src->config().n_layers,
                 src->config().dim, src->tensors().size(),
                 piquant::format_bytes(src->total_bytes()).c_str(), output.c_str(), o.type.c_str());
    // What the file will carry, said once -z has been applied (a model written without a
    // tokenizer is found out only at run time otherwise).
    if (const auto& tok = src->tokenizer()) {
      std::fprintf(stderr, "piquant-convert: tokenizer: %s, %zu tokens, from %s\n",
                   tok->kind_name().c_str(), tok->vocab_size(),
                   tokenizer.empty() ? input.c_str() : tokenizer.c_str());
    } else {
      std::fprintf(stderr,
                   "piquant-convert: warning: %s has no tokenizer and none was given (-z): the "
                   "file will carry no tokenizer, so piquant-run will need -z FILE (or "
                   "--prompt-ids and --ids) to run it. Give -z tokenizer.bin / tokenizer.model / "
                   "tokenizer.json to embed one\n",
                   input.c_str());
    }
    piquant::cli::warn_if_more_threads_than_cores("piquant-convert", o.threads);
    const piquant::ConvertReport rep = piquant::convert_model(*src, output, o);
    for (const std::string& n : rep.notices)
      std::fprintf(stderr, "piquant-convert: note: %s\n", n.c_str());
    if (report) print_report(rep);
    std::fprintf(stderr, "piquant-convert: wrote %s (%s, %.2f bits per weight)\n", output.c_str(),
                 piquant::format_bytes(rep.file_bytes).c_str(), rep.bits_per_weight);
    return 0;
  } catch (const piquant::Error& e) {
    die(e.what());
  } catch (const std::exception& e) {
    die(std::string("unexpected: ") + e.what());
  }
}
