// piquant-server: an OpenAI-compatible HTTP server (llama-server's flags and endpoints) with
// continuous batching over several slots and per-request LoRA adapters. See docs/server.md.
// With no -m it serves the built-in seeded demo model, so a fresh build has something to try.
#include <httplib.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>

#include <piquant/piquant.hpp>

#include "api.hpp"
#include "engine.hpp"
#include "dist/distributed.hpp"  // lib/dist (piquant_dist): the ranks' start-up check and slices
#include "http_pool.hpp"
#include "util/cli.hpp"
#ifdef PIQUANT_MPI
#include "dist/mpi_collective.hpp"
#include "mpi_backend.hpp"
#endif

namespace {

const char* kUsage = R"(usage: piquant-server [options]
  -m, --model FILE        model file (.piq, .gguf or llama2.c checkpoint); none: the seeded
                          random demo model (its text is noise; its context is -c, default 1024)
  -z, --tokenizer FILE    tokenizer file for models without one (llama2.c tokenizer.bin)
  -a, --alias NAME        model name in /v1/models and responses (default: the file name)
      --host ADDR         address to listen on (default 127.0.0.1: this machine only)
      --port N            port (default 8080; 0: any free port, printed)
  -c, --ctx-size N        context length of each slot (default: the model's, at most 4096)
  -np, --parallel N       slots: requests served at once, batched together (default 4)
  -t, --threads N         threads for the forward pass (default: all cores)
  -ctk, --cache-type-k T  KV cache type: f16, q8 or f32 (default: f32 for f32 models, else f16)
      --lora FILE         load a LoRA adapter (PEFT directory, .safetensors, GGUF or .piq
                          adapter); repeatable, ids 0, 1, ... in the order given; applied to
                          every request with scale 1 unless a request's "lora" field says
      --lora-init-without-apply  load the adapters with default scale 0 (requests choose)
      --chat-template T   llama2, llama3, chatml, mistral, exaone or plain (default: the model's)
      --api-key KEY       require "Authorization: Bearer KEY" on every endpoint but /health and
                          the chat page (default: $PIQUANT_API_KEY; none: no key)
      --cors-origin O     send CORS headers allowing origin O (default: no CORS headers)
  -n, --n-predict N       the most tokens one request may generate (default: the slot context)
      --max-queue N       requests waiting for a slot; more get 503 (default 4 x slots)
      --threads-http N    HTTP connections served at once; more get 503 (default 64)
      --max-body BYTES    largest request body; more gets 413 (default 1048576)
      --prefill-chunk N   rows per pass: prompt chunks (shortest remaining prompt first,
                          short ones of several slots together) fill what the
                          generating slots leave (default 64)
      --timeout S         read/write timeout of a connection in seconds (default 600)
  -v, --verbose           print model details and one line per request to stderr
  -h, --help              this text
      --version           the version

Under mpirun -np N (a build with -DPIQUANT_MPI=ON; docs/distributed.md): the model is split
across the N ranks; rank 0 serves HTTP and the others compute their slice of every pass.
      --mpi-act f32|q8    activations on the wire as f32 (default) or int8 blocks (3.6x fewer
                          bytes; the logits move by 1.2-1.6e-3 relative: above 1e-3, not default)
      --mpi-timeout S     a rank that sends nothing for S seconds (default 10) ends the job:
                          rank 0 answers the requests in flight with the error and exits non-zero
)";

struct Args {
  std::string model, tokenizer, alias, host = "127.0.0.1", chat_template, api_key, cors;
  int port = 8080, ctx = 0, slots = 4, threads = 0, n_predict = 0, max_queue = -1;
  int threads_http = 64, prefill_chunk = 64, timeout = 600;
  size_t max_body = 1 << 20;
  piquant::KvCacheType kv = piquant::KvCacheType::kAuto;
  std::vector<std::string> loras;
  bool lora_no_apply = false, verbose = false;
  DistArgs dist;            // --mpi-act / --mpi-timeout (docs/distributed.md)
  std::string options_key;  // the flags every rank of an mpirun must share
};

Args parse(int argc, char** argv) {
  Args a;
  a.options_key = dist_options_key("piquant-server", argc, argv);
  if (const char* k = std::getenv("PIQUANT_API_KEY")) a.api_key = k;
  piquant::cli::ArgReader args("piquant-server", kUsage, argc, argv);
  while (args.next()) {
    const std::string& f = args.arg();
    auto count = [&](int lo) {
      const int v = args.parse_count(f, args.value());
      if (v < lo) args.die(f + " must be at least " + std::to_string(lo));
      return v;
    };
    if (f == "-m" || f == "--model") a.model = args.value();
    else if (f == "-z" || f == "--tokenizer") a.tokenizer = args.value();
    else if (f == "-a" || f == "--alias") a.alias = args.value();
    else if (f == "--host") a.host = args.value();
    else if (f == "--port") {
      a.port = count(0);
      if (a.port > 65535) args.die("--port must be at most 65535");
    } else if (f == "-c" || f == "--ctx-size") a.ctx = count(0);
    else if (f == "-np" || f == "--parallel") a.slots = count(1);
    else if (f == "-t" || f == "--threads") a.threads = count(0);
    else if (f == "-n" || f == "--n-predict") a.n_predict = count(0);
    else if (f == "--max-queue") a.max_queue = count(0);
    else if (f == "--threads-http") a.threads_http = count(1);
    else if (f == "--prefill-chunk") a.prefill_chunk = count(1);
    else if (f == "--timeout") a.timeout = count(1);
    else if (f == "--max-body") a.max_body = static_cast<size_t>(count(1));
    else if (f == "-ctk" || f == "--cache-type-k") {
      const std::string v = args.value();
      if (v == "f16") a.kv = piquant::KvCacheType::kF16;
      else if (v == "q8" || v == "q8_0") a.kv = piquant::KvCacheType::kQ8;
      else if (v == "f32") a.kv = piquant::KvCacheType::kF32;
      else args.die("-ctk expects f16, q8 or f32, got '" + v + "'");
    } else if (f == "--lora") a.loras.push_back(args.value());
    else if (f == "--lora-init-without-apply") a.lora_no_apply = true;
    else if (f == "--chat-template") a.chat_template = args.value();
    else if (f == "--api-key") a.api_key = args.value();
    else if (f == "--cors-origin") a.cors = args.value();
    else if (f == "-v" || f == "--verbose") a.verbose = true;
    else if (f == "--mpi-act") {
      a.dist.act = args.value();
      if (a.dist.act != "f32" && a.dist.act != "q8") {
        args.die("--mpi-act takes f32 or q8 (activations on the wire), not '" + a.dist.act + "'");
      }
      a.dist.given = true;
    } else if (f == "--mpi-timeout") {
      const std::string v = args.value();
      char* end = nullptr;
      a.dist.timeout_s = std::strtod(v.c_str(), &end);
      // Finite and at most a day: an endless wait for a dead peer would be a hang.
      if (end == v.c_str() || *end != '\0' || !(a.dist.timeout_s > 0) ||
          !(a.dist.timeout_s <= 86400)) {
        args.die("--mpi-timeout takes a number of seconds in (0, 86400], not '" + v + "'");
      }
      a.dist.given = true;
    } else args.die("unknown option '" + f + "' (see --help)");
  }
  return a;
}

}  // namespace

// Set by rank 0's MPI backend when the job failed (a rank died or stalled): the server stops
// and the process ends the job with this message, exit code non-zero.
std::mutex g_failure_mu;
std::string g_failure;

std::string failure() {
  std::lock_guard<std::mutex> lock(g_failure_mu);
  return g_failure;
}

int main(int argc, char** argv) {
  // SIGINT / SIGTERM are taken by one thread (sigwait) that stops the server cleanly; every
  // thread started from here on (MPI's own included) inherits the blocked mask. A closed client
  // socket must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  // Under mpirun with several ranks (docs/distributed.md): rank 0 serves, the others follow it.
  // MPI calls come from the engine thread on rank 0: serialized, not funneled.
  Distributed dist(&argc, &argv, "piquant-server", /*serialized=*/true);
  const Args a = parse(argc, argv);
  if (a.dist.given && !dist.active()) {
    std::fprintf(stderr, "piquant-server: note: --mpi-act / --mpi-timeout apply under mpirun with "
                         "several ranks only: ignored\n");
  }
  // A failure of this rank alone: under mpirun it ends the job (the others would wait for it).
  auto fatal = [&dist](const std::string& message) {
    if (dist.active()) dist.abort(message);
    piquant::cli::die("piquant-server", message);
  };
  try {
    std::shared_ptr<const piquant::Model> model;
    DistArgs d = a.dist;
    d.throw_on_timeout = dist.rank() == 0;  // rank 0 answers the requests in flight first
    if (a.model.empty()) {
      // The demo model has no training context of its own: -c sets it (default 1024).
      piquant::SyntheticModelOptions so;
      so.config.max_seq_len = a.ctx;
      model = piquant::Model::synthetic(so);
      if (dist.active()) model = dist.load("", {}, a.options_key, d, model);
    } else {
      piquant::LoadOptions lo;
      lo.tokenizer_path = a.tokenizer;
      if (dist.active()) {
        model = dist.load(a.model, lo, a.options_key, d, nullptr);
      } else {
        model = piquant::Model::load(a.model, lo);
      }
    }
    if (!model->has_tokenizer()) fatal("the model has no tokenizer (give one with -z)");
    if (a.verbose) {
      std::fprintf(stderr, "model: %s\n", model->describe().c_str());
      for (const auto& n : model->notices()) std::fprintf(stderr, "note: %s\n", n.c_str());
    }
    std::vector<piquant::server::LoadedAdapter> adapters;
    for (const std::string& path : a.loras) {
      piquant::server::LoadedAdapter la;
      la.path = path;
      la.adapter = piquant::LoraAdapter::load(*model, path);
      la.scale = a.lora_no_apply ? 0.0f : 1.0f;
      std::fprintf(stderr, "adapter %zu: %s (%s)\n", adapters.size(), la.adapter->describe().c_str(),
                   path.c_str());
      adapters.push_back(std::move(la));
    }

    piquant::server::EngineOptions eo;
    eo.n_slots = a.slots;
    eo.session.n_ctx = a.ctx > 0 ? a.ctx : std::min(model->config().max_seq_len, 4096);
    if (eo.session.n_ctx > model->config().max_seq_len) {
      std::fprintf(stderr, "warning: -c %d is beyond the model's training context %d\n",
                   eo.session.n_ctx, model->config().max_seq_len);
    }
    eo.session.n_threads = a.threads;
    eo.session.kv_type = a.kv;
    eo.prefill_chunk = a.prefill_chunk;
    eo.max_queue = static_cast<size_t>(a.max_queue >= 0 ? a.max_queue : 4 * a.slots);
    eo.verbose = a.verbose;
    std::unique_ptr<piquant::server::ModelBackend> backend;
#ifdef PIQUANT_MPI
    // Rank 0's backend sends every model call to the others; they replay them until rank 0 says
    // quit (or a signal reaches them and rank 0 says nothing for --mpi-timeout).
    std::shared_ptr<piquant::MpiCommandChannel> channel;
    if (dist.active()) {
      channel = std::make_shared<piquant::MpiCommandChannel>();
      piquant::ContextOptions co;
      co.n_ctx = eo.session.n_ctx;
      co.n_seq = std::max(1, eo.n_slots) + 1;  // as the Engine's own Context: one spare
      co.n_threads = eo.session.n_threads;
      co.kv_type = eo.session.kv_type;
      std::vector<std::shared_ptr<const piquant::LoraAdapter>> loaded;
      for (const auto& la : adapters) loaded.push_back(la.adapter);
      if (dist.rank() != 0) {
        std::atomic<bool> stop{false};
        std::thread waiter([&stop, sigs] {
          int sig = 0;
          sigwait(&sigs, &sig);
          stop.store(true);
        });
        std::string why;
        bool ok = false;
        try {
          ok = piquant::server::follow_rank0(model, co, *channel, loaded, stop,
                                             a.dist.timeout_s, &why);
        } catch (const std::exception& e) {
          why = e.what();
        }
        if (!ok) dist.abort(why);
        std::fprintf(dist.err(), "piquant-server: rank %d/%d: stopped\n", dist.rank(),
                     dist.size());
        std::fflush(dist.err());
        pthread_kill(waiter.native_handle(), SIGTERM);
        waiter.join();
        return 0;
      }
      backend = piquant::server::make_mpi_backend(
          model, co, channel, std::move(loaded), a.dist.timeout_s, [](const std::string& why) {
            {
              std::lock_guard<std::mutex> lock(g_failure_mu);
              g_failure = why;
            }
            kill(getpid(), SIGTERM);  // the waiter below stops the server
          });
    }
#endif
    auto engine_ptr = backend ? std::make_unique<piquant::server::Engine>(model, std::move(backend), eo)
                              : std::make_unique<piquant::server::Engine>(model, eo);
    piquant::server::Engine& engine = *engine_ptr;

    piquant::server::ApiOptions ao;
    ao.model_name = !a.alias.empty() ? a.alias
                    : a.model.empty()
                        ? "piquant-demo"
                        : std::filesystem::path(a.model).filename().string();
    ao.api_key = a.api_key;
    ao.cors_origin = a.cors;
    ao.chat_template = a.chat_template.empty()
                           ? piquant::ChatTemplate::detect(model->chat_template(), &model->tokenizer())
                           : piquant::ChatTemplate::by_name(a.chat_template);
    ao.max_tokens_limit = a.n_predict;
    ao.verbose = a.verbose;
    piquant::server::Api api(model, engine, std::move(adapters), ao);

    httplib::Server server;
    const size_t http_threads = static_cast<size_t>(a.threads_http);
    // At most --threads-http connections at once; more are answered 503 (Retry-After) by two
    // refusal threads and closed instead of waiting for a worker.
    server.new_task_queue = [http_threads] {
      return new piquant::server::CappedPool(http_threads, 2);
    };
    server.set_payload_max_length(a.max_body);
    server.set_read_timeout(a.timeout, 0);
    server.set_write_timeout(a.timeout, 0);
    server.set_keep_alive_timeout(5);
    api.install(server);
    if (a.verbose) {
      server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        std::fprintf(stderr, "%s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
      });
    }

    const int port = a.port == 0 ? server.bind_to_any_port(a.host)
                                 : (server.bind_to_port(a.host, a.port) ? a.port : -1);
    if (port < 0) {
      fatal("cannot listen on " + a.host + ":" + std::to_string(a.port) +
            " (in use, or a bad address)");
    }
    std::thread waiter([&server, &engine, &dist, sigs] {
      int sig = 0;
      sigwait(&sigs, &sig);
      server.stop();
      // Requests in flight end now (with an error) instead of running on; the engine thread may
      // still be inside a pass (under mpirun: one a dead rank holds up), so without waiting for it.
      std::string why = failure();
      if (why.empty()) {
        why = dist.active() ? "the server is shutting down (a signal: a stop, or mpirun ending "
                              "the job because a rank ended)"
                            : "the server is shutting down";
      }
      engine.abort_jobs(why);
    });
    std::fprintf(stderr, "piquant-server: %s, %d slot(s) of %d tokens, chat template %s\n",
                 ao.model_name.c_str(), a.slots, engine.n_ctx(), ao.chat_template.name());
    if (dist.active()) {
      std::fprintf(stderr, "piquant-server: the model is split across %d ranks (rank 0 serves)\n",
                   dist.size());
    }
    std::fprintf(stderr, "piquant-server: listening on http://%s:%d\n", a.host.c_str(), port);
    std::fflush(stderr);
    const bool ok = server.listen_after_bind();
    // Stopped by a signal (or listen failed): wake the waiter if it still waits, then finish.
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    engine.stop();
    const std::string why = failure();
    if (!why.empty()) {
      // A rank died or stalled: the requests in flight have had the error; end every rank.
      std::fprintf(stderr, "piquant-server: error: %s\n", why.c_str());
      dist.abort("stopping: " + why);
    }
#ifdef PIQUANT_MPI
    if (dist.active()) {
      try {
        piquant::server::send_quit(*channel, a.dist.timeout_s);  // the others return too
      } catch (const std::exception& e) {
        dist.abort(e.what());
      }
    }
#endif
    std::fprintf(stderr, "piquant-server: stopped\n");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    fatal(e.what());
  }
}
