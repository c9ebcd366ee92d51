// piquant-bench: end-to-end tokens/s, with llama-bench's flags and output fields so the same
// tooling reads both:
//   piquant-bench -m MODEL [-z TOK] [-p 128] [-n 128] [-d 0] [-t 1,2] [-r 5] [-o md|json|jsonl|csv]
// Each test evaluates random token ids: "pp<N>" evaluates an N-token prompt in one call
// (prefill), "tg<N>" generates N tokens one at a time after a one-token start (decode); with
// -d D, a D-token context is evaluated (untimed) first. One warm-up run precedes the timed
// repetitions unless --no-warmup.
// --batched: llama-batched-bench's shape instead. For each prompt length PP (-p), generation
// length TG (-n) and number of parallel sequences B (--npl, default 1,2,4,8,16), one Context of
// B sequences evaluates B different PP-token prompts (all rows in passes of 64, no logits but
// each prompt's last), then TG decode passes of B rows (one per sequence, greedy). Reported:
// aggregate prefill tokens/s (B*PP / T_PP) and decode tokens/s (B*TG / T_TG), medians of -r runs.
// Under mpirun -np N (-DPIQUANT_MPI=ON; docs/distributed.md): the model is split across the N
// ranks (lib/dist/distributed.hpp), every rank runs the same tests in step (the same random ids,
// the same logits, so the same argmax), rank 0 times them and prints; the rows get n_ranks.
#include <piquant/piquant.hpp>

#include "dist/distributed.hpp"
#include "util/cli.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const char* kUsage = R"(usage: piquant-bench [options]
  -m, --model FILE[,FILE]   model file(s); none: the seeded demo model
  -z, --tokenizer FILE      tokenizer for llama2.c checkpoints (not needed to benchmark)
  -p, --n-prompt N[,N]      prompt lengths to test (default 512; 0 skips)
  -n, --n-gen N[,N]         generation lengths to test (default 128; 0 skips)
  -d, --n-depth N[,N]       context tokens evaluated (untimed) before each test (default 0)
  -t, --threads N[,N]       thread counts (default: all cores)
  -r, --repetitions N       timed runs per test (default 5)
      --no-warmup           skip the warm-up run before each test
      --batched             many sequences at once (llama-batched-bench's table; see below)
      --npl N[,N]           parallel sequences for --batched (default 1,2,4,8,16)
  -o, --output FORMAT       md (default), json, jsonl or csv
      --json                same as -o json
  -h, --help
      --version
Under mpirun -np N (a build with -DPIQUANT_MPI=ON; docs/distributed.md): one model (-m FILE,
or none: the demo model) split across the N ranks, every rank with the same file and flags;
rank 0 prints the results, with the number of ranks (column "ranks", field n_ranks) and the
whole model's size; the other ranks print only their errors.
      --mpi-act f32|q8      activations on the wire (default f32; as piquant-run)
      --mpi-overlap K       exchanges overlapped with compute in K chunks (default 2)
      --mpi-timeout S       abort every rank when a peer sends nothing for S seconds (default 10)

--batched prints, per (PP, TG, B): T_PP (s) and S_PP = B*PP/T_PP (prefill tokens/s), T_TG (s) and
S_TG = B*TG/T_TG (aggregate decode tokens/s), T and S = B*(PP+TG)/T; medians of -r runs. JSON /
JSONL use llama-batched-bench's fields: n_kv_max, n_batch, n_ubatch, is_pp_shared, n_threads,
pp, tg, pl, n_kv, t_pp, speed_pp, t_tg, speed_tg, t, speed (plus model_filename, samples_t_pp,
samples_t_tg).
)";

[[noreturn]] void die(const std::string& msg) { piquant::cli::die("piquant-bench", msg); }

std::vector<int> parse_list(const std::string& flag, const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long x = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || x < 0 || x > 1000000) {
      die(flag + " expects non-negative integers separated by commas, got '" + v + "'");
    }
    out.push_back(static_cast<int>(x));
  }
  if (out.empty()) die(flag + " needs a value");
  return out;
}

std::vector<std::string> split(const std::string& v) {
  std::vector<std::string> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

struct Args {
  std::vector<std::string> models;
  std::string tokenizer;
  std::vector<int> n_prompt = {512}, n_gen = {128}, n_depth = {0}, threads;
  int reps = 5;
  bool warmup = true;
  bool batched = false;
  std::vector<int> npl = {1, 2, 4, 8, 16};
  std::string output = "md";
  DistArgs dist;            // --mpi-act / --mpi-overlap / --mpi-timeout (docs/distributed.md)
  std::string options_key;  // what every rank of an mpirun must share: version + flags
};

// The mpirun run (null: one process). Set once in main.
Distributed* g_dist = nullptr;
int n_ranks() { return g_dist != nullptr && g_dist->active() ? g_dist->size() : 0; }

// A verdict every rank reaches alike (same file, same flags): under mpirun one message from
// rank 0 and every rank exits; otherwise as die().
[[noreturn]] void fail(const std::string& msg) {
  if (n_ranks() > 0) g_dist->fail_all(msg);
  die(msg);
}

struct Result {
  std::string model_filename, model_type;
  uint64_t model_size = 0, model_n_params = 0;
  int n_prompt = 0, n_gen = 0, n_depth = 0, n_threads = 0;
  int n_ranks = 0;  // under mpirun: the ranks the model is split across (0: one process)
  std::vector<double> samples_ns;
  double avg_ns() const {
    double s = 0;
    for (double x : samples_ns) s += x;
    return samples_ns.empty() ? 0 : s / static_cast<double>(samples_ns.size());
  }
  std::vector<double> samples_ts() const {
    std::vector<double> ts;
    const int n = n_prompt + n_gen;
    for (double ns : samples_ns) ts.push_back(1e9 * n / ns);
    return ts;
  }
  static double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  }
  static double stddev(const std::vector<double>& v) {
    if (v.size() < 2) return 0;
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
  }
};

uint64_t count_params(const piquant::ModelConfig& c) {
  const uint64_t d = static_cast<uint64_t>(c.dim), h = static_cast<uint64_t>(c.hidden_dim);
  const uint64_t q = static_cast<uint64_t>(c.n_heads) * c.head_dim;
  const uint64_t kv = static_cast<uint64_t>(c.n_kv_heads) * c.head_dim;
  const uint64_t layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * h;
  const uint64_t embd = static_cast<uint64_t>(c.vocab_size) * d;
  return embd * (c.tied_classifier ? 1 : 2) + d + layer * static_cast<uint64_t>(c.n_layers);
}

// One timed run; returns nanoseconds.
double run_once(const std::shared_ptr<const piquant::Model>& model, int n_depth, int n_prompt,
                int n_gen, int threads, std::mt19937& rng) {
  const int n_vocab = model->config().vocab_size;
  std::uniform_int_distribution<int> tok(0, n_vocab - 1);
  piquant::Session s(model, piquant::SessionOptions{n_depth + n_prompt + n_gen + 1, threads});
  if (n_depth > 0) {
    std::vector<piquant::TokenId> context(static_cast<size_t>(n_depth));
    for (auto& t : context) t = tok(rng);
    s.eval(context);
  }
  std::vector<piquant::TokenId> prompt(static_cast<size_t>(n_prompt));
  for (auto& t : prompt) t = tok(rng);
  const auto t0 = std::chrono::steady_clock::now();
  if (n_prompt > 0) s.eval(prompt);
  if (n_gen > 0) {
    piquant::TokenId next = tok(rng);
    for (int i = 0; i < n_gen; ++i) {
      const float* logits = s.eval({next});
      next = piquant::argmax(logits, static_cast<size_t>(n_vocab));
    }
  }
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else o += c;
  }
  return o;
}

std::string join(const std::vector<double>& v, int precision) {
  std::string o;
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%s%.*f", i ? ", " : "", precision, v[i]);
    o += buf;
  }
  return o;
}

// The n_ranks field (JSON, after n_threads), only under mpirun: one process's rows are unchanged.
std::string ranks_json(int n) {
  return n > 0 ? "\"n_ranks\": " + std::to_string(n) + ", " : std::string();
}

std::string to_json(const Result& r, const std::string& cpu, const std::string& time) {
  const auto ts = r.samples_ts();
  char buf[512];
  std::string o = "{";
  o += "\"build_commit\": \"piquant-" + std::string(piquant::version()) + "\", ";
  o += "\"cpu_info\": \"" + json_escape(cpu) + "\", \"backends\": \"CPU\", ";
  o += "\"model_filename\": \"" + json_escape(r.model_filename) + "\", ";
  o += "\"model_type\": \"" + json_escape(r.model_type) + "\", ";
  std::snprintf(buf, sizeof(buf),
                "\"model_size\": %llu, \"model_n_params\": %llu, \"n_batch\": %d, "
                "\"n_threads\": %d, %s\"n_prompt\": %d, \"n_gen\": %d, \"n_depth\": %d, "
                "\"test_time\": \"%s\", "
                "\"avg_ns\": %.0f, \"stddev_ns\": %.0f, \"avg_ts\": %.6f, \"stddev_ts\": %.6f, ",
                static_cast<unsigned long long>(r.model_size),
                static_cast<unsigned long long>(r.model_n_params), std::max(r.n_prompt, 1),
                r.n_threads, ranks_json(r.n_ranks).c_str(), r.n_prompt, r.n_gen, r.n_depth,
                time.c_str(), r.avg_ns(),
                Result::stddev(r.samples_ns), Result::mean(ts), Result::stddev(ts));
  o += buf;
  o += "\"samples_ns\": [" + join(r.samples_ns, 0) + "], ";
  o += "\"samples_ts\": [" + join(ts, 6) + "]}";
  return o;
}

// --batched: B sequences of one Context; returns {prefill ns, decode ns}.
std::array<double, 2> run_batched_once(const std::shared_ptr<const piquant::Model>& model,
                                       int pp, int tg, int b, int threads, std::mt19937& rng) {
  const int n_vocab = model->config().vocab_size;
  std::uniform_int_distribution<int> tok(0, n_vocab - 1);
  piquant::ContextOptions o;
  o.n_ctx = pp + tg + 1;
  o.n_seq = b;
  o.n_threads = threads;
  piquant::Context ctx(model, o);
  std::vector<int> seq(static_cast<size_t>(b));
  for (auto& s : seq) s = ctx.add_sequence();
  std::vector<piquant::DecodeRow> rows;
  for (int s : seq) {
    for (int i = 0; i < pp; ++i) rows.push_back(piquant::DecodeRow{tok(rng), s, i + 1 == pp});
  }
  std::vector<piquant::TokenId> next(static_cast<size_t>(b));
  for (auto& t : next) t = tok(rng);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  if (pp > 0) {
    const auto out = ctx.decode(rows);
    for (size_t i = 0; i < out.size(); ++i) next[i] = piquant::argmax(out[i], size_t(n_vocab));
  }
  const auto t1 = clock::now();
  for (int k = 0; k < tg; ++k) {
    rows.clear();
    for (size_t i = 0; i < seq.size(); ++i) rows.push_back(piquant::DecodeRow{next[i], seq[i], true});
    const auto out = ctx.decode(rows);
    for (size_t i = 0; i < out.size(); ++i) next[i] = piquant::argmax(out[i], size_t(n_vocab));
  }
  const auto t2 = clock::now();
  return {std::chrono::duration<double, std::nano>(t1 - t0).count(),
          std::chrono::duration<double, std::nano>(t2 - t1).count()};
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// -m PATH ("" without -m: the built-in synthetic model), with -z's tokenizer.
// Under mpirun: this rank's slice (every rank checks the others run the same file and flags).
std::shared_ptr<const piquant::Model> load_model(const std::string& path, const Args& a) {
  piquant::LoadOptions lo;
  lo.tokenizer_path = a.tokenizer;
  if (n_ranks() > 0) {
    return path.empty() ? g_dist->load("", lo, a.options_key, a.dist, piquant::Model::synthetic())
                        : g_dist->load(path, lo, a.options_key, a.dist, nullptr);
  }
  if (path.empty()) return piquant::Model::synthetic();
  return piquant::Model::load(path, lo);
}

// The size reported for the model: under mpirun the whole model's weights (what one process
// holds; each rank's slice is on stderr at load), so rows of any N compare.
uint64_t model_size(const piquant::Model& m) {
  return n_ranks() > 0 ? g_dist->whole_weight_bytes() : m.weight_bytes();
}

int run_batched_bench(const Args& a) {
  bool first_row = true;
  const int nr = n_ranks();
  const char* md_ranks = nr > 0 ? " ranks |" : "";
  const char* md_ranks_rule = nr > 0 ? " ---: |" : "";
  const std::string csv_ranks = nr > 0 ? std::to_string(nr) + "," : std::string();
  if (a.output == "md") {
    std::printf("| model | threads |%s PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | "
                "S_TG t/s | T s | S t/s |\n"
                "| --- | ---: |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
                "---: |\n", md_ranks, md_ranks_rule);
  } else if (a.output == "csv") {
    std::printf("model_filename,n_threads,%spp,tg,pl,n_kv,t_pp,speed_pp,t_tg,speed_tg,t,speed\n",
                nr > 0 ? "n_ranks," : "");
  } else if (a.output == "json") {
    std::printf("[\n");
  }
  for (const std::string& path : a.models) {
    const std::shared_ptr<const piquant::Model> model = load_model(path, a);
    const std::string name = path.empty() ? "(synthetic demo model)" : path;
    std::mt19937 rng(42);
    for (int threads : a.threads) {
      for (int pp : a.n_prompt) {
        for (int tg : a.n_gen) {
          for (int b : a.npl) {
            if (b < 1) fail("--npl must be at least 1");
            if (pp + tg + 1 > model->config().max_seq_len) {
              fail("PP " + std::to_string(pp) + " + TG " + std::to_string(tg) +
                  " needs more context than the model's " +
                  std::to_string(model->config().max_seq_len) + " tokens");
            }
            if (a.warmup) run_batched_once(model, pp, tg, b, threads, rng);
            std::vector<double> tpp, ttg;
            for (int i = 0; i < a.reps; ++i) {
              const auto t = run_batched_once(model, pp, tg, b, threads, rng);
              tpp.push_back(t[0] * 1e-9);
              ttg.push_back(t[1] * 1e-9);
            }
            const double t_pp = median(tpp), t_tg = median(ttg), t = t_pp + t_tg;
            const double s_pp = t_pp > 0 ? double(b) * pp / t_pp : 0;
            const double s_tg = t_tg > 0 ? double(b) * tg / t_tg : 0;
            const double s = t > 0 ? double(b) * (pp + tg) / t : 0;
            const int n_kv = b * (pp + tg);
            if (a.output == "md") {
              const std::string ranks = nr > 0 ? " " + std::to_string(nr) + " |" : "";
              std::printf("| %s | %d |%s %d | %d | %d | %d | %.3f | %.2f | %.3f | %.2f | %.3f | "
                          "%.2f |\n",
                          model->describe().c_str(), threads, ranks.c_str(), pp, tg, b, n_kv,
                          t_pp, s_pp, t_tg, s_tg, t, s);
            } else if (a.output == "csv") {
              std::printf("\"%s\",%d,%s%d,%d,%d,%d,%.6f,%.3f,%.6f,%.3f,%.6f,%.3f\n",
                          name.c_str(), threads, csv_ranks.c_str(), pp, tg, b, n_kv, t_pp, s_pp,
                          t_tg, s_tg, t, s);
            } else {
              char buf[768];
              std::snprintf(buf, sizeof(buf),
                            "{\"model_filename\": \"%s\", \"n_kv_max\": %d, \"n_batch\": 64, "
                            "\"n_ubatch\": 64, \"is_pp_shared\": 0, \"n_threads\": %d, %s"
                            "\"pp\": %d, \"tg\": %d, \"pl\": %d, \"n_kv\": %d, "
                            "\"t_pp\": %f, \"speed_pp\": %f, \"t_tg\": %f, \"speed_tg\": %f, "
                            "\"t\": %f, \"speed\": %f, ",
                            json_escape(name).c_str(), b * (pp + tg + 1), threads,
                            ranks_json(nr).c_str(), pp, tg, b, n_kv,
                            t_pp, s_pp, t_tg, s_tg, t, s);
              const std::string j = std::string(buf) + "\"samples_t_pp\": [" + join(tpp, 6) +
                                    "], \"samples_t_tg\": [" + join(ttg, 6) + "]}";
              if (a.output == "json") std::printf("%s  %s", first_row ? "" : ",\n", j.c_str());
              else std::printf("%s\n", j.c_str());
            }
            first_row = false;
            std::fflush(stdout);
          }
        }
      }
    }
  }
  if (a.output == "json") std::printf("\n]\n");
  return 0;
}

std::string cpu_description() {
  std::string name;
#if defined(__linux__)
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), f)) {
      std::string l(line);
      if (l.rfind("model name", 0) == 0 || l.rfind("Model", 0) == 0) {
        name = l.substr(l.find(':') + 2);
        if (!name.empty() && name.back() == '\n') name.pop_back();
        break;
      }
    }
    std::fclose(f);
  }
#endif
  return name.empty() ? "unknown CPU" : name;
}

Args parse(int argc, char** argv) {
  Args a;
  a.options_key = dist_options_key("piquant-bench", argc, argv, /*threads_agree=*/true);
  piquant::cli::ArgReader args("piquant-bench", kUsage, argc, argv);
  while (args.next()) {
    const std::string f = args.arg();
    if (f == "-m" || f == "--model") {
      for (auto& m : split(args.value())) a.models.push_back(m);
    } else if (f == "-z" || f == "--tokenizer") a.tokenizer = args.value();
    else if (f == "-p" || f == "--n-prompt") a.n_prompt = parse_list(f, args.value());
    else if (f == "-n" || f == "--n-gen") a.n_gen = parse_list(f, args.value());
    else if (f == "-d" || f == "--n-depth") a.n_depth = parse_list(f, args.value());
    else if (f == "-t" || f == "--threads") a.threads = parse_list(f, args.value());
    else if (f == "-r" || f == "--repetitions") a.reps = parse_list(f, args.value()).at(0);
    else if (f == "-o" || f == "--output") a.output = args.value();
    else if (f == "--json") a.output = "json";
    else if (f == "--no-warmup") a.warmup = false;
    else if (f == "--batched") a.batched = true;
    else if (f == "--npl") a.npl = parse_list(f, args.value());
    else if (read_dist_flag(args, f, a.dist, "piquant-bench")) {}
    else die("unknown option '" + f + "' (see --help)");
  }
  if (a.output != "md" && a.output != "json" && a.output != "jsonl" && a.output != "csv") {
    die("-o expects md, json, jsonl or csv, got '" + a.output + "'");
  }
  if (a.reps < 1) die("-r must be at least 1");
  if (a.threads.empty()) a.threads = {static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))};
  for (int t : a.threads) {
    if (t < 1) die("-t must be at least 1");
  }
  if (a.models.empty()) a.models.push_back("");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Distributed dist(&argc, &argv, "piquant-bench");  // MPI, when started by mpirun
  g_dist = &dist;
  const Args a = parse(argc, argv);
  if (a.dist.given && !dist.active()) {
    std::fprintf(stderr, "piquant-bench: note: --mpi-act / --mpi-timeout / --mpi-overlap apply "
                         "under mpirun with several ranks only: ignored\n");
  }
  if (dist.active() && a.models.size() > 1) {
    dist.fail_all("under mpirun give one model (-m FILE): the ranks split one model; benchmark "
                  "the others in runs of their own");
  }
  try {
    if (a.batched) return run_batched_bench(a);
    const std::string cpu = cpu_description();
    char time_buf[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(time_buf, sizeof(time_buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    std::vector<Result> results;
    bool first_row = true;
    const int nr = n_ranks();
    if (a.output == "md") {
      std::printf("| model | size | params | backend | threads |%s test | t/s |\n"
                  "| --- | ---: | ---: | --- | ---: |%s ---: | ---: |\n",
                  nr > 0 ? " ranks |" : "", nr > 0 ? " ---: |" : "");
    } else if (a.output == "csv") {
      std::printf("model_filename,model_type,model_size,model_n_params,n_threads,%sn_prompt,n_gen,"
                  "avg_ns,stddev_ns,avg_ts,stddev_ts\n", nr > 0 ? "n_ranks," : "");
    } else if (a.output == "json") {
      std::printf("[\n");
    }
    for (const std::string& path : a.models) {
      const std::shared_ptr<const piquant::Model> model = load_model(path, a);
      std::mt19937 rng(42);
      std::vector<std::array<int, 3>> tests;  // depth, prompt, gen
      for (int d : a.n_depth) {
        for (int p : a.n_prompt) if (p > 0) tests.push_back({d, p, 0});
        for (int n : a.n_gen) if (n > 0) tests.push_back({d, 0, n});
      }
      for (int threads : a.threads) {
        for (const auto& [depth, np, ng] : tests) {
          if (depth + np + ng + 1 > model->config().max_seq_len) {
            fail("test pp" + std::to_string(np) + "/tg" + std::to_string(ng) + " at depth " +
                std::to_string(depth) + " needs more context than the model's " +
                std::to_string(model->config().max_seq_len) + " tokens");
          }
          Result r;
          r.model_filename = path.empty() ? "(synthetic demo model)" : path;
          r.model_type = model->describe();
          r.model_size = model_size(*model);
          r.model_n_params = count_params(model->config());
          r.n_prompt = np;
          r.n_gen = ng;
          r.n_depth = depth;
          r.n_threads = threads;
          r.n_ranks = nr;
          if (a.warmup) run_once(model, depth, np, ng, threads, rng);
          for (int i = 0; i < a.reps; ++i) {
            r.samples_ns.push_back(run_once(model, depth, np, ng, threads, rng));
          }
          const auto ts = r.samples_ts();
          if (a.output == "md") {
            const std::string at = depth ? " @ d" + std::to_string(depth) : "";
            const std::string ranks = nr > 0 ? " " + std::to_string(nr) + " |" : "";
            std::printf("| %s | %.2f MiB | %.2f M | CPU | %d |%s %s%d%s | %.2f ± %.2f |\n",
                        r.model_type.c_str(), r.model_size / 1048576.0, r.model_n_params / 1e6,
                        threads, ranks.c_str(), np ? "pp" : "tg", np ? np : ng, at.c_str(),
                        Result::mean(ts),
                        Result::stddev(ts));
          } else if (a.output == "csv") {
            const std::string ranks = nr > 0 ? std::to_string(nr) + "," : std::string();
            std::printf("\"%s\",\"%s\",%llu,%llu,%d,%s%d,%d,%.0f,%.0f,%.6f,%.6f\n",
                        r.model_filename.c_str(), r.model_type.c_str(),
                        static_cast<unsigned long long>(r.model_size),
                        static_cast<unsigned long long>(r.model_n_params), threads,
                        ranks.c_str(), np, ng,
                        r.avg_ns(), Result::stddev(r.samples_ns), Result::mean(ts),
                        Result::stddev(ts));
          } else {
            const std::string j = to_json(r, cpu, time_buf);
            if (a.output == "json") std::printf("%s  %s", first_row ? "" : ",\n", j.c_str());
            else std::printf("%s\n", j.c_str());
          }
          first_row = false;
          std::fflush(stdout);
          results.push_back(std::move(r));
        }
      }
    }
    if (a.output == "json") std::printf("\n]\n");
    return 0;
  } catch (const piquant::Error& e) {
    if (dist.active()) dist.abort(e.what());  // this rank alone failed (I/O, memory)
    die(e.what());
  } catch (const std::exception& e) {
    if (dist.active()) dist.abort(std::string("unexpected: ") + e.what());
    die(std::string("unexpected: ") + e.what());
  }
}
