#pragma once
// Best-first pair merging shared by both BPE flavours: symbols are adjacent byte ranges of one
// string in a linked list; a min-heap holds candidate pairs (priority, then leftmost); entries
// made stale by an earlier merge are skipped when popped. Near-linear on long inputs.
#include <cstddef>
#include <cstdint>
#include <queue>
#include <vector>

namespace piquant {

struct MergeSymbol {
  uint32_t start, len;
  int32_t id;  // token id, or -1 for a symbol not in the vocabulary
};

/// `lookup(const MergeSymbol& l, const MergeSymbol& r, double* priority, int32_t* merged)`
/// returns true when l+r may merge (lower priority merges first). On return `syms` holds the
/// final symbols in order.
template <class Lookup>
void bpe_merge(std::vector<MergeSymbol>& syms, Lookup lookup) {
  const size_t n = syms.size();
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    double priority;
    int32_t left, right;
    uint32_t len_l, len_r;
    int32_t merged;
    bool operator<(const Cand& o) const {  // std::priority_queue is a max-heap: invert
      return priority > o.priority || (priority == o.priority && left > o.left);
    }
  };
  std::vector<Cand> storage;
  storage.reserve(n);
  std::priority_queue<Cand> q(std::less<Cand>(), std::move(storage));
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = next[static_cast<size_t>(l)];
    if (r < 0) return;
    double pr;
    int32_t merged;
    const MergeSymbol& a = syms[static_cast<size_t>(l)];
    const MergeSymbol& b = syms[static_cast<size_t>(r)];
    if (lookup(a, b, &pr, &merged)) q.push({pr, l, r, a.len, b.len, merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!q.empty()) {
    const Cand c = q.top();
    q.pop();
    MergeSymbol& a = syms[static_cast<size_t>(c.left)];
    MergeSymbol& b = syms[static_cast<size_t>(c.right)];
    if (a.len != c.len_l || b.len != c.len_r || next[static_cast<size_t>(c.left)] != c.right) {
      continue;  // stale: a side changed since this pair was queued
    }
    a.len += b.len;
    a.id = c.merged;
    b.len = 0;  // dead
    const int32_t nn = next[static_cast<size_t>(c.right)];
    next[static_cast<size_t>(c.left)] = nn;
    next[static_cast<size_t>(c.right)] = -1;
    if (nn >= 0) prev[static_cast<size_t>(nn)] = c.left;
    push(prev[static_cast<size_t>(c.left)]);
    push(c.left);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) syms[w++] = syms[static_cast<size_t>(i)];
  syms.resize(w);
}

}  // namespace piquant
