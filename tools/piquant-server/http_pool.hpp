#pragma once
// cpp-httplib's task queue with a connection cap. cpp-httplib 0.11 (Debian's) hands every
// accepted connection to Server::new_task_queue's enqueue(); its ThreadPool queues connections
// without bound when every worker is busy, so a client past the limit just hangs. CappedPool
// serves up to `n` connections at once on its workers; a connection beyond that goes to a small
// refusal pool, whose thread runs it with refusing_connection() true: the pre-routing handler
// answers 503 with Retry-After and "Connection: close" (without reading a body) and the
// connection ends. (The accepted socket is only reachable through cpp-httplib's closure, so
// it cannot simply be closed here.)
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace piquant::server {

/// Connections refused with 503 since the start (for /metrics).
inline std::atomic<uint64_t> g_connections_refused{0};

namespace detail {
inline thread_local bool t_refusing = false;
}  // namespace detail

/// True on a refusal thread: the request must be answered 503 at once.
inline bool refusing_connection() { return detail::t_refusing; }

class CappedPool final : public httplib::TaskQueue {
 public:
  CappedPool(size_t n, size_t refusers) : n_(n) {
    for (size_t i = 0; i < n; ++i) workers_.emplace_back([this] { work(false); });
    for (size_t i = 0; i < refusers; ++i) workers_.emplace_back([this] { work(true); });
  }
  CappedPool(const CappedPool&) = delete;
  CappedPool& operator=(const CappedPool&) = delete;
  ~CappedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (active_ + jobs_.size() < n_) {
        jobs_.push_back(std::move(fn));
      } else {
        refuse_.push_back(std::move(fn));
        ++g_connections_refused;
      }
    }
    cv_.notify_all();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

 private:
  void work(bool refuser) {
    detail::t_refusing = refuser;
    std::deque<std::function<void()>>& q = refuser ? refuse_ : jobs_;
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !q.empty(); });
        if (q.empty()) return;  // stopping, nothing left
        fn = std::move(q.front());
        q.pop_front();
        if (!refuser) ++active_;
      }
      fn();
      if (!refuser) {
        std::lock_guard<std::mutex> lock(mu_);
        --active_;
      }
    }
  }

  const size_t n_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_, refuse_;
  size_t active_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace piquant::server
