#pragma once
// A persistent pool of worker threads. run(fn) calls fn(i, n) on all n threads (the caller is
// thread 0) and returns when every one is done: one barrier per op, no thread creation per op.
// Workers spin briefly before sleeping, since ops in a forward pass arrive back to back.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace piquant {

class ThreadPool {
 public:
  /// n_threads <= 0: std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  void run(const std::function<void(int thread, int n_threads)>& fn);

  /// Splits [0, n) into contiguous ranges, each a multiple of `align` long (except the last),
  /// and calls fn(begin, end) once for every range, from any of the threads. The ranges are
  /// claimed dynamically (a few per thread, through an atomic counter), so a thread the OS
  /// delays leaves its share to the others instead of holding up the barrier. fn must give the
  /// same result for an index whichever range and thread it comes in.
  template <class F>
  void parallel_for(size_t n, size_t align, F&& fn) {
    const size_t blocks = (n + align - 1) / align;
    if (n_threads_ == 1 || blocks <= 1) {
      if (n > 0) fn(size_t{0}, n);
      return;
    }
    const size_t chunks = std::min(blocks, static_cast<size_t>(n_threads_) * kChunksPerThread);
    std::atomic<size_t> next{0};
    run([&](int, int) {
      for (size_t c = next.fetch_add(1, std::memory_order_relaxed); c < chunks;
           c = next.fetch_add(1, std::memory_order_relaxed)) {
        const size_t b0 = blocks * c / chunks, b1 = blocks * (c + 1) / chunks;
        fn(b0 * align, std::min(n, b1 * align));
      }
    });
  }

  /// Ranges per thread in parallel_for: enough to even out a late thread, few enough that each
  /// range is a long sequential stream of weights.
  static constexpr size_t kChunksPerThread = 4;

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_;
};

}  // namespace piquant
