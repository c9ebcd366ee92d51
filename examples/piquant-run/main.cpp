// piquant-run: generate text with a model, llama.cpp-style flags.
//   piquant-run -m MODEL [-z TOKENIZER] [-p PROMPT] [-n N] [--temp T] [--top-p P] [--seed S] ...
// With no -m it runs a built-in demo model (random weights), so a fresh build has something to
// run.
#include <piquant/piquant.hpp>

#include "chat_loop.hpp"
#include "dist/distributed.hpp"
#include "interrupt.hpp"
#include "util/cli.hpp"

#include <sys/resource.h>

#include <cctype>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

// The process's peak resident set so far (getrusage: KiB on Linux), in MiB.
double peak_rss_mib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

const char* kUsage = R"(usage: piquant-run [options]
Generates text from a prompt (or chats, --chat) with a model file, with llama.cpp's flags.
A long flag takes its value after a space or '=' (--ctx-size 64, --ctx-size=64).
  -m, --model FILE        model file (.piq, .gguf or llama2.c checkpoint); a Hugging Face
                          folder or .safetensors is converted first with piquant-convert;
                          none: a built-in demo model (random weights: varied text, not
                          language)
  -z, --tokenizer FILE    tokenizer file (llama2.c tokenizer.bin) for models without one
  -p, --prompt TEXT       prompt text (default: empty, i.e. BOS only; demo: "Once upon a time")
  -f, --file FILE         read the prompt text from FILE (as is: no escapes)
      --prompt-ids LIST   prompt as token ids, e.g. 1,450,2635 (no BOS is added)
  -n, --n-predict N       tokens to generate (default 128; -1: until the end of generation or
                          a full context)
  -c, --ctx-size N        context length (default: the model's)
  -t, --threads N         threads (default: all cores; more than the cores: warned, slow)
      --temp T            temperature, 0 = greedy (default 0.8)
      --top-k K           top-k (default 40, 0 = off; >= 0)
      --top-p P           top-p (default 0.95, 1 = off; 0..1)
      --min-p P           min-p (default 0.05, 0 = off; 0..1)
      --repeat-penalty R  repetition penalty (default 1.0 = off)
      --repeat-last-n N   tokens the penalties look back over (default 64)
      --presence-penalty F, --frequency-penalty F
  -s, --seed S            sampling seed for reproducible runs (default -1: a random seed each
                          run, printed with -v)
  -r, --reverse-prompt T  stop generating when the text T appears (T itself is not printed);
                          repeatable; in --chat it ends the reply
      --ignore-eos        keep generating after end-of-generation tokens
      --ids               print prompt and generated token ids (space separated) instead of text
      --logits-out FILE   write the logits of every evaluated position (float32 LE, n_vocab each)
      --chat, -cnv        interactive chat with the model's chat template (-p: first message);
                          -i / --interactive are taken as --chat; /help lists the chat commands
      --system TEXT       system prompt for --chat
      --chat-template T   for --chat: llama2, llama3, chatml, mistral, exaone or plain
                          (default: the model's)
      --drop-old-turns    in --chat, drop the oldest turns when the context is full
      --lora FILE         apply a LoRA adapter at run time (PEFT directory, adapter .safetensors
                          with its adapter_config.json beside it, GGUF adapter or .piq adapter);
                          repeatable: several adapters add up
      --lora-scale S      scale of the preceding --lora (default 1; multiplies alpha / r)
      --lora-scaled FILE S  --lora FILE --lora-scale S in one (llama.cpp's spelling)
      --grammar TEXT      constrain the output to a GBNF grammar (llama.cpp syntax; rule root)
      --grammar-file FILE the same from a .gbnf file
      --json-schema S     constrain the output to a JSON Schema (JSON text, or a file holding it)
  -j, --json              constrain the output to any JSON object
  -ctk, --kv-type T       KV cache type: f16, q8 or f32 (default: f32 for f32 models, else f16)
      --no-escape         take -p, -r and --system literally (default: \n \t \r \\ \" \'
                          and \xHH in them are turned into the characters, as llama.cpp does)
  -v, --verbose           print the seed, model and kernel details to stderr
Under mpirun -np N (a build with -DPIQUANT_MPI=ON; docs/distributed.md): the model is split
across the N ranks (tensor parallelism), every rank needs the same model file; rank 0 prints.
      --mpi-act f32|q8    activations on the wire: f32 (default) or int8 blocks: 3.6x fewer
                          bytes, but the logits move by 1.2-1.6e-3 relative (measured; tested
                          under 2e-3), more than the 1e-3 that would make q8 the default
      --mpi-overlap K     compute Wo, W_down and the classifier in K chunks, each chunk's
                          exchange travelling while the next is computed (default 2, 1: none;
                          the same results either way)
      --mpi-timeout S     abort every rank when a peer sends nothing for S seconds (default 10)
  -h, --help              this text
      --version           the version
llama.cpp flags accepted and ignored (scripts pass them): -ngl / --n-gpu-layers N (piquant runs
on the CPU; a note says so), --color, -b / --batch-size N, -ub / --ubatch-size N (the prompt is
evaluated in batches sized by piquant), --mlock, -fa / --flash-attn (no effect here).
Refused with a pointer: -ins / --instruct (use --chat), --in-prefix / --in-suffix (--chat
applies the model's template), --mmproj (text models only); any other unknown flag is an error.
Ctrl-C stops the text being generated (in --chat: the reply; the chat goes on); at the chat
prompt, or pressed again, it quits.
)";

[[noreturn]] void die(const std::string& msg) { piquant::cli::die("piquant-run", msg); }

std::vector<piquant::TokenId> parse_ids(const piquant::cli::ArgReader& args, const std::string& v) {
  std::vector<piquant::TokenId> ids;
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find_first_of(", ", i);
    if (j == std::string::npos) j = v.size();
    if (j > i) {
      ids.push_back(
          static_cast<piquant::TokenId>(args.parse_int("--prompt-ids", v.substr(i, j - i))));
    }
    i = j + 1;
  }
  if (ids.empty()) die("--prompt-ids needs at least one id");
  return ids;
}

// llama.cpp's escape processing of -p / -r / --system: \n \r \t \\ \' \" and \xHH; any other
// backslash stays as written.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[i + 1];
    const char* simple = std::strchr("nrt\\'\"", c);
    if (c != '\0' && simple != nullptr) {
      out += c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
      ++i;
    } else if (c == 'x' && i + 3 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 3]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct Args {
  std::string model, tokenizer, logits_out;
  std::string prompt;
  bool prompt_given = false;
  std::vector<piquant::TokenId> prompt_ids;
  int n_predict = 128, n_ctx = 0, threads = 0;
  bool ids = false, verbose = false, ignore_eos = false, escape = true, prompt_from_file = false;
  bool random_seed = true;  // no -s, or -s -1
  bool print_seed = false;  // -s -1 given: print the seed without -v too
  bool chat = false;
  bool chat_only_flag = false;  // --system / --chat-template / --drop-old-turns given
  piquant::KvCacheType kv_type = piquant::KvCacheType::kAuto;
  ChatArgs chat_args;
  piquant::SamplerOptions sampler;
  std::vector<std::string> stop;  // -r
  std::vector<std::pair<std::string, float>> loras;  // file, scale
  std::vector<std::string> notes;  // printed as "piquant-run: note: ..." before the run
  // Structured output (docs/structured-output.md): at most one of these.
  std::string grammar, grammar_file, json_schema;
  bool json = false;
  DistArgs dist;                 // --mpi-act / --mpi-timeout (docs/distributed.md)
  std::string options_key;       // the flags every rank of an mpirun must share
};

constexpr long kMaxThreads = 1024;

// The grammar the structured-output flags ask for, or null.
std::shared_ptr<const piquant::Grammar> grammar_from_args(const Args& a) {
  const int n = !a.grammar.empty() + !a.grammar_file.empty() + !a.json_schema.empty() + a.json;
  if (n > 1) die("give only one of --grammar, --grammar-file, --json-schema, -j");
  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) die(path + ": cannot open");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  try {
    if (!a.grammar.empty()) return piquant::Grammar::parse(a.grammar);
    if (!a.grammar_file.empty()) return piquant::Grammar::parse(slurp(a.grammar_file));
    if (!a.json_schema.empty()) {
      const size_t first = a.json_schema.find_first_not_of(" \t\r\n");
      const bool inline_json = first != std::string::npos && (a.json_schema[first] == '{' || a.json_schema[first] == '[');
      return piquant::Grammar::from_json_schema(inline_json ? a.json_schema : slurp(a.json_schema));
    }
    if (a.json) return piquant::Grammar::json_object();
  } catch (const piquant::Error& e) {
    const char* flag = !a.grammar.empty() ? "--grammar" : !a.grammar_file.empty() ? "--grammar-file" : "--json-schema";
    die(std::string(flag) + ": " + e.what());
  }
  return nullptr;
}

Args parse(int argc, char** argv) {
  Args a0;
  a0.options_key = dist_options_key("piquant", argc, argv);
  Args a = a0;
  piquant::cli::ArgReader args("piquant-run", kUsage, argc, argv);
  while (args.next()) {
    const std::string f = args.arg();
    if (f == "-m" || f == "--model") a.model = args.value();
    else if (f == "-z" || f == "--tokenizer") a.tokenizer = args.value();
    else if (f == "-p" || f == "--prompt") {
      if (a.prompt_given) die("give the prompt once: -p or -f");
      a.prompt = args.value(), a.prompt_given = true;
    }
    else if (f == "-f" || f == "--file") {
      if (a.prompt_given) die("give the prompt once: -p or -f");
      const std::string path = args.value();
      std::error_code ec;
      if (std::filesystem::is_directory(path, ec)) die(path + ": is a directory, not a prompt file");
      std::ifstream in(path, std::ios::binary);
      if (!in) die(path + ": cannot open the prompt file");
      std::ostringstream text;
      text << in.rdbuf();
      if (in.bad()) die(path + ": read error");
      a.prompt = text.str();
      a.prompt_given = a.prompt_from_file = true;
    }
    else if (f == "-r" || f == "--reverse-prompt") {
      a.stop.push_back(args.value());
      if (a.stop.back().empty()) die(f + " needs a non-empty text");
    }
    else if (f == "--prompt-ids") a.prompt_ids = parse_ids(args, args.value());
    else if (f == "-n" || f == "--n-predict") {
      const long n = args.parse_int(f, args.value());
      if (n < -1 || n > INT_MAX) die(f + " must be -1 (until the end) or a token count");
      a.n_predict = n == -1 ? INT_MAX : static_cast<int>(n);
    }
    else if (f == "-c" || f == "--ctx-size") {
      const long n = args.parse_int(f, args.value());
      if (n < 0 || n > INT_MAX) {
        die(f + " must be 0 (the model's context) or a token count, got " + std::to_string(n));
      }
      a.n_ctx = static_cast<int>(n);
    }
    else if (f == "-t" || f == "--threads") {
      const long n = args.parse_int(f, args.value());
      if (n < 0 || n > kMaxThreads) {
        die(f + " must be 0 (all cores) to " + std::to_string(kMaxThreads) + ", got " +
            std::to_string(n));
      }
      a.threads = static_cast<int>(n);
    }
    else if (f == "--temp") {
      a.sampler.temperature = args.parse_finite_float(f, args.value());  // <= 0: greedy
    }
    else if (f == "--top-k") {
      const long k = args.parse_int(f, args.value());
      if (k < 0 || k > INT_MAX) die(f + " must be >= 0 (0: off), got " + std::to_string(k));
      a.sampler.top_k = static_cast<int>(k);
    }
    else if (f == "--top-p" || f == "--min-p") {
      const std::string v = args.value();
      const float p = args.parse_finite_float(f, v);
      if (p < 0 || p > 1) die(f + " must be between 0 and 1, got " + v);
      (f == "--top-p" ? a.sampler.top_p : a.sampler.min_p) = p;
    }
    else if (f == "--repeat-penalty") {
      const std::string v = args.value();
      a.sampler.repeat_penalty = args.parse_finite_float(f, v);
      if (a.sampler.repeat_penalty <= 0) die(f + " must be > 0 (1: off), got " + v);
    }
    else if (f == "--repeat-last-n") {
      const long n = args.parse_int(f, args.value());
      if (n < -1 || n > INT_MAX) die(f + " must be -1 (all), 0 (off) or a token count");
      a.sampler.repeat_last_n = static_cast<int>(n);
    }
    else if (f == "--presence-penalty") a.sampler.presence_penalty = args.parse_float(f, args.value());
    else if (f == "--frequency-penalty") a.sampler.frequency_penalty = args.parse_float(f, args.value());
    else if (f == "-s" || f == "--seed") {
      const std::string v = args.value();
      a.random_seed = a.print_seed = v == "-1";
      if (!a.random_seed) a.sampler.seed = args.parse_u64(f, v);
    }
    else if (f == "--ignore-eos") a.ignore_eos = true;
    else if (f == "--ids") a.ids = true;
    else if (f == "--logits-out") a.logits_out = args.value();
    else if (f == "--chat" || f == "-cnv" || f == "--conversation" || f == "-i" ||
             f == "--interactive" || f == "-if" || f == "--interactive-first") a.chat = true;
    else if (f == "--system" || f == "-sys") {
      a.chat_args.system_prompt = args.value(), a.chat_only_flag = true;
    }
    else if (f == "--chat-template") {
      a.chat_args.template_name = args.value(), a.chat_only_flag = true;
    }
    else if (f == "--drop-old-turns") a.chat_args.drop_old_turns = a.chat_only_flag = true;
    else if (f == "-ctk" || f == "--cache-type-k" || f == "--kv-type") {
      std::string v = args.value();
      for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (v == "f16") a.kv_type = piquant::KvCacheType::kF16;
      else if (v == "q8" || v == "q8_0") a.kv_type = piquant::KvCacheType::kQ8;
      else if (v == "f32") a.kv_type = piquant::KvCacheType::kF32;
      else die(f + " expects f16, q8 or f32, got '" + v + "'");
    }
    else if (f == "--lora") a.loras.emplace_back(args.value(), 1.0f);
    else if (f == "--lora-scale") {
      if (a.loras.empty()) die(f + " must follow a --lora FILE");
      a.loras.back().second = args.parse_float(f, args.value());
    }
    else if (f == "--lora-scaled") {
      const std::string file = args.value();
      if (file.empty() || file[0] == '-') die(f + " takes two values: FILE SCALE");
      a.loras.emplace_back(file, args.parse_float(f, args.value()));
    }
    // llama.cpp flags scripts pass everywhere: accepted, ignored.
    else if (f == "-ngl" || f == "--n-gpu-layers" || f == "--gpu-layers") {
      args.parse_int(f, args.value());
      a.notes.push_back(f + " ignored: piquant runs on the CPU (no GPU offload)");
    }
    else if (f == "-b" || f == "--batch-size" || f == "-ub" || f == "--ubatch-size") {
      args.parse_int(f, args.value());
    }
    else if (f == "--color" || f == "--mlock" || f == "-fa" || f == "--flash-attn") {}
    else if (f == "-ins" || f == "--instruct") {
      die(f + " is not available: use --chat (the model's chat template)");
    }
    else if (f == "--in-prefix" || f == "--in-suffix" || f == "--in-prefix-bos") {
      die(f + " is not available: --chat applies the model's chat template (--chat-template)");
    }
    else if (f == "--mmproj" || f == "--image") {
      die(f + " is not available: piquant runs text models only");
    }
    else if (f == "--grammar") a.grammar = args.value();
    else if (f == "--grammar-file") a.grammar_file = args.value();
    else if (f == "--json-schema") a.json_schema = args.value();
    else if (f == "-j" || f == "--json") a.json = true;
    else if (f == "-e" || f == "--escape") a.escape = true;
    else if (f == "--no-escape") a.escape = false;
    else if (f == "-v" || f == "--verbose") a.verbose = true;
    else if (read_dist_flag(args, f, a.dist, "piquant-run")) {}
    else die("unknown option '" + f + "' (see --help)");
  }
  if (a.escape) {
    if (!a.prompt_from_file) a.prompt = unescape(a.prompt);
    for (std::string& stop : a.stop) stop = unescape(stop);
    a.chat_args.system_prompt = unescape(a.chat_args.system_prompt);
  }
  if (a.random_seed) {
    // As llama.cpp: a random seed unless -s N is given; -v prints it, so a run can be repeated.
    std::random_device rd;
    a.sampler.seed = (uint64_t{rd()} << 32) ^ rd();
  }
  if (a.verbose || a.print_seed) {
    std::fprintf(stderr, "piquant-run: seed %llu%s\n",
                 static_cast<unsigned long long>(a.sampler.seed),
                 a.random_seed ? " (random: -s N repeats a run)" : "");
  }
  if (a.chat && (a.ids || !a.prompt_ids.empty())) die("--chat takes text, not --ids / --prompt-ids");
  if (!a.chat && a.chat_only_flag) {
    a.notes.push_back(
        "--system, --chat-template and --drop-old-turns apply to --chat only: ignored");
  }
  if (a.chat && a.prompt_given) a.chat_args.first_message = a.prompt;
  a.chat_args.verbose = a.verbose;
  return a;
}

int run(const Args& a, Distributed& dist) {
  using clock = std::chrono::steady_clock;
  const auto grammar = grammar_from_args(a);  // before loading: a bad grammar fails fast
  const auto t_load = clock::now();
  std::shared_ptr<const piquant::Model> model;
  std::string prompt = a.prompt;
  if (a.dist.given && !dist.active()) {
    std::fprintf(stderr, "piquant-run: note: --mpi-act / --mpi-timeout / --mpi-overlap apply under mpirun with "
                         "several ranks only: ignored\n");
  }
  if (dist.active() && a.chat) {
    dist.fail_all("--chat is not available under mpirun (standard input reaches rank 0 only): "
                  "generate with -p");
  }
  if (a.model.empty()) {
    std::fprintf(stderr,
                 "piquant-run: no model given (-m): running the built-in demo model (random "
                 "weights, a 512-token demo vocabulary): its text varies but is not language; "
                 "the speed is real. Run a real model with -m FILE.gguf (or .piq, or a llama2.c "
                 "checkpoint with -z tokenizer.bin); see README's quick start\n");
    piquant::SyntheticModelOptions demo;
    demo.demo_text = true;
    model = piquant::Model::synthetic(demo);
    if (!a.prompt_given) prompt = "Once upon a time";
    if (dist.active()) model = dist.load("", {}, a.options_key, a.dist, model);
  } else {
    std::error_code ec;
    if (std::filesystem::is_directory(a.model, ec)) {
      const bool hf =
          std::filesystem::exists(std::filesystem::path(a.model) / "config.json", ec);
      die(a.model + ": is a directory" +
          (hf ? std::string(" (a Hugging Face model folder): convert it once into a .piq file, "
                            "piquant-convert ") + a.model + " -o model.piq, then run -m model.piq"
              : std::string(", not a model file (-m takes a .piq, .gguf or llama2.c file)")));
    }
    piquant::LoadOptions lo;
    lo.tokenizer_path = a.tokenizer;
    model = dist.active() ? dist.load(a.model, lo, a.options_key, a.dist, nullptr)
                          : piquant::Model::load(a.model, lo);
  }
  const double load_s = std::chrono::duration<double>(clock::now() - t_load).count();
  for (const std::string& note : a.notes) {
    std::fprintf(stderr, "piquant-run: note: %s\n", note.c_str());
  }
  for (const std::string& note : model->notices()) {
    std::fprintf(stderr, "piquant-run: note: %s\n", note.c_str());
  }
  piquant::cli::warn_if_more_threads_than_cores("piquant-run", a.threads);
  if (!a.ids && a.prompt_ids.empty() && !model->has_tokenizer()) {
    die("this model has no tokenizer: give one with -z, or use --prompt-ids and --ids");
  }

  piquant::SessionOptions so;
  so.n_ctx = a.n_ctx;
  so.n_threads = a.threads;
  so.kv_type = a.kv_type;
  piquant::Session session(model, so);
  if (!a.loras.empty()) {
    std::vector<piquant::AdapterChoice> adapters;
    for (const auto& [file, scale] : a.loras) {
      const auto t0 = clock::now();
      adapters.push_back({piquant::LoraAdapter::load(*model, file), scale});
      std::fprintf(stderr, "piquant-run: adapter %s, scale %g, loaded in %.3f s\n",
                   adapters.back().adapter->describe().c_str(), static_cast<double>(scale),
                   std::chrono::duration<double>(clock::now() - t0).count());
    }
    session.set_adapters(std::move(adapters));
  }
  // Memory at start: weights (mmapped or owned), KV cache for the whole context, scratch, and
  // the peak resident set so far (loading included: a GGUF is repacked tensor by tensor).
  std::fprintf(stderr,
               "piquant-run: %s\npiquant-run: loaded in %.3f s | weights %.1f MiB | KV cache %.1f "
               "MiB (%d tokens) | scratch %.1f MiB | peak RSS %.1f MiB\n",
               model->describe().c_str(), load_s, model->weight_bytes() / 1048576.0,
               session.kv_cache_bytes() / 1048576.0, session.n_ctx(),
               session.scratch_bytes() / 1048576.0, peak_rss_mib());
  if (model->mapped_bytes() > 0) {
    std::fprintf(stderr, "piquant-run: weights mmapped: %.1f MiB used in place from the file "
                         "(zero copy, paged in on first use)\n",
                 model->mapped_bytes() / 1048576.0);
  }
  if (a.verbose) std::fprintf(stderr, "piquant-run: kernels: %s\n", session.kernel_names().c_str());

  piquant::GenerateOptions go;
  go.max_tokens = a.n_predict;
  go.sampler = a.sampler;
  go.stop_at_end_of_generation = !a.ignore_eos;
  go.stop = a.stop;
  go.grammar = grammar;
  std::ofstream logits_file;
  if (!a.logits_out.empty()) {
    logits_file.open(a.logits_out, std::ios::binary);
    if (!logits_file) die(a.logits_out + ": cannot open for writing");
    go.on_logits = [&](const float* l, size_t n) {
      logits_file.write(reinterpret_cast<const char*>(l), static_cast<std::streamsize>(n * sizeof(float)));
    };
  }

  if (a.chat) {
    if (!a.chat_args.template_name.empty()) piquant::ChatTemplate::by_name(a.chat_args.template_name);
    return run_chat(session, a.chat_args, go);
  }

  std::vector<piquant::TokenId> prompt_ids = a.prompt_ids;
  if (prompt_ids.empty()) prompt_ids = model->tokenizer().encode(prompt);
  if (prompt_ids.empty()) die("the prompt is empty and the tokenizer adds no BOS");
  if (prompt_ids.size() > static_cast<size_t>(session.n_ctx())) {
    // Checked before anything is printed, so the error is not glued to an echoed prompt.
    die("the prompt has " + std::to_string(prompt_ids.size()) + " tokens but the context holds " +
        std::to_string(session.n_ctx()) + " (-c)");
  }

  piquant::GenerateResult r;
  const GeneratingScope generating;  // Ctrl-C now stops the generation (interrupt.hpp)
  if (a.ids) {
    const char* sep = "";
    for (piquant::TokenId id : prompt_ids) std::printf("%s%d", sep, id), sep = " ";
    std::fflush(stdout);
    r = session.generate_ids(prompt_ids, [](piquant::TokenId id) {
      std::printf(" %d", id);
      std::fflush(stdout);
      return !interrupted();
    }, go);
    std::printf("\n");
  } else {
    if (!a.prompt_ids.empty()) {
      // Echo the prompt given as ids, so the output reads as one text.
      piquant::TokenStream stream(model->tokenizer());
      for (piquant::TokenId id : prompt_ids) std::cout << stream.push(id);
      std::cout << stream.flush();
    } else {
      std::cout << prompt;  // echo as typed
    }
    std::cout << std::flush;
    // The continuation as text; the library holds back anything that could begin a -r string.
    r = session.generate(prompt_ids, [](std::string_view piece) {
      std::cout << piece << std::flush;
      return !interrupted();
    }, go);
    std::cout << std::endl;
  }
  if (interrupted()) std::fprintf(stderr, "piquant-run: interrupted (Ctrl-C)\n");
  if (r.stop == piquant::GenerateResult::StopReason::kContextFull) {
    std::fprintf(stderr, "piquant-run: stopped: the context (%d tokens) is full; -c sets its size\n",
                 session.n_ctx());
  }
  if (r.stop == piquant::GenerateResult::StopReason::kGrammarNoToken) {
    std::fprintf(stderr, "piquant-run: stopped: no token of the vocabulary can continue the grammar\n");
  }
  const double n_gen = static_cast<double>(r.generated_ids.size());
  const double gen_tps = r.gen_seconds > 0 ? std::max(0.0, n_gen - 1) / r.gen_seconds : 0.0;
  const int n_threads =
      a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency());
  std::fprintf(stderr,
               "piquant-run: load %.3f s | prompt %zu token%s, %.1f tokens/s | generated %zu "
               "token%s, %.1f tokens/s | peak RSS %.1f MiB | %d thread%s\n",
               load_s, prompt_ids.size(), prompt_ids.size() == 1 ? "" : "s",
               r.prompt_seconds > 0 ? prompt_ids.size() / r.prompt_seconds : 0.0,
               r.generated_ids.size(), r.generated_ids.size() == 1 ? "" : "s", gen_tps,
               peak_rss_mib(), n_threads, n_threads == 1 ? "" : "s");
  if (dist.active()) dist.report(*model, r.gen_seconds, r.generated_ids.size());
  return interrupted() ? 130 : 0;  // 128 + SIGINT, as a shell reports a Ctrl-C
}

}  // namespace

int main(int argc, char** argv) {
  Distributed dist(&argc, &argv);  // MPI, when started by mpirun (docs/distributed.md)
  Args args = parse(argc, argv);
  if (dist.active() && args.random_seed) args.sampler.seed = dist.same_seed(args.sampler.seed);
  install_interrupt_handler();
  try {
    return run(args, dist);
  } catch (const piquant::Error& e) {
    if (dist.active()) dist.abort(e.what());
    die(e.what());
  } catch (const std::exception& e) {
    if (dist.active()) dist.abort(std::string("unexpected: ") + e.what());
    die(std::string("unexpected: ") + e.what());
  }
}
