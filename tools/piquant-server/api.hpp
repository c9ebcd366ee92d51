#pragma once
// The HTTP side of piquant-server: routes, request parsing and validation, OpenAI-shaped
// responses and errors. Handlers run on cpp-httplib's threads and reach the model only through
// the Engine's queue (and the immutable Model/Tokenizer for /tokenize).
#include <httplib.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <piquant/piquant.hpp>

#include "engine.hpp"

namespace piquant::server {

struct LoadedAdapter {
  std::string path;
  std::shared_ptr<const LoraAdapter> adapter;
  float scale = 1.0f;  ///< default scale (GET/POST /lora-adapters)
};

struct ApiOptions {
  std::string model_name;
  std::string api_key;         ///< empty: no authentication
  std::string cors_origin;     ///< empty: no CORS headers
  ChatTemplate chat_template{ChatFormat::kPlain};
  int max_tokens_limit = 0;    ///< 0: the slot context
  bool verbose = false;
};

class Api {
 public:
  Api(std::shared_ptr<const Model> model, Engine& engine, std::vector<LoadedAdapter> adapters,
      ApiOptions options);
  /// Registers every route and the auth / error / CORS handlers on `server`.
  void install(httplib::Server& server);

 private:
  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);
  void models(httplib::Response& res);
  void health(httplib::Response& res);
  void metrics(httplib::Response& res);
  void get_adapters(httplib::Response& res);
  void set_adapters(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req) const;

  std::shared_ptr<const Model> model_;
  Engine& engine_;
  ApiOptions opt_;
  mutable std::mutex adapters_mu_;
  std::vector<LoadedAdapter> adapters_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace piquant::server
