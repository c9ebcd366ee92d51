#pragma once
// A persistent pool of worker threads. run(fn) calls fn(i, n) on all n threads (the caller is
// thread 0) and returns when every one is done: one barrier per op, no thread creation per op.
// Workers spin briefly before sleeping, since ops in a forward pass arrive back to back.
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

  /// Splits [0, n) into one contiguous range per thread, each a multiple of `align` (except the
  /// last), and calls fn(begin, end) for every non-empty range.
  template <class F>
  void parallel_for(size_t n, size_t align, F&& fn) {
    if (n_threads_ == 1 || n <= align) {
      fn(size_t{0}, n);
      return;
    }
    run([&](int t, int nt) {
      const size_t blocks = (n + align - 1) / align;
      const size_t b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
      const size_t begin = b0 * align, end = std::min(n, b1 * align);
      if (begin < end) fn(begin, end);
    });
  }

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
