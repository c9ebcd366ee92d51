// ThreadPool: run() reaches every thread once; parallel_for covers [0, n) exactly once in
// ranges that are multiples of the alignment, for any thread count and size.
#include <atomic>
#include <catch2/catch.hpp>
#include <vector>

#include "threads/thread_pool.hpp"

TEST_CASE("ThreadPool run calls every thread once", "[lib][threads]") {
  for (int nt : {1, 2, 3, 5}) {
    piquant::ThreadPool pool(nt);
    REQUIRE(pool.size() == nt);
    for (int round = 0; round < 50; ++round) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(nt));
      std::atomic<bool> sizes_ok{true};  // Catch2's REQUIRE is for the test's own thread only
      pool.run([&](int t, int n) {
        if (n != nt) sizes_ok = false;
        hits[static_cast<size_t>(t)].fetch_add(1);
      });
      REQUIRE(sizes_ok.load());
      for (auto& h : hits) REQUIRE(h.load() == 1);
    }
  }
}

TEST_CASE("ThreadPool parallel_for covers every index once in aligned ranges", "[lib][threads]") {
  for (int nt : {1, 2, 3}) {
    piquant::ThreadPool pool(nt);
    for (size_t n : {0, 1, 3, 4, 5, 31, 64, 1000, 2051}) {
      for (size_t align : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<bool> aligned{true};
        pool.parallel_for(n, align, [&](size_t b, size_t e) {
          if (b % align != 0 || b >= e || e > n || (e != n && e % align != 0)) aligned = false;
          for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        CAPTURE(nt, n, align);
        REQUIRE(aligned.load());
        for (auto& h : hits) REQUIRE(h.load() == 1);
      }
    }
  }
}
