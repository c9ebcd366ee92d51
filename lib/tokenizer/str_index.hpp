#pragma once
// A hash index from byte strings to token ids that is queried with string_views (no allocation
// per lookup, unlike std::unordered_map<std::string, ...> in C++17). Open addressing over ids;
// the keys live in a vector owned elsewhere (the tokenizer), which must outlive the index.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

class StrIndex {
 public:
  /// Indexes keys[i] for every i with include(i); the first of equal keys wins.
  template <class Include>
  void build(const std::vector<std::string>* keys, Include include) {
    keys_ = keys;
    size_t cap = 16;
    while (cap < keys->size() * 2) cap <<= 1;
    slots_.assign(cap, -1);
    mask_ = cap - 1;
    for (size_t i = 0; i < keys->size(); ++i) {
      if (!include(i)) continue;
      size_t h = hash_bytes((*keys)[i]) & mask_;
      for (;; h = (h + 1) & mask_) {
        if (slots_[h] < 0) {
          slots_[h] = static_cast<int32_t>(i);
          break;
        }
        if ((*keys)[static_cast<size_t>(slots_[h])] == (*keys)[i]) break;  // duplicate
      }
    }
  }
  int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    for (size_t h = hash_bytes(s) & mask_;; h = (h + 1) & mask_) {
      const int32_t id = slots_[h];
      if (id < 0) return -1;
      if ((*keys_)[static_cast<size_t>(id)] == s) return id;
    }
  }

 private:
  const std::vector<std::string>* keys_ = nullptr;
  std::vector<int32_t> slots_;
  size_t mask_ = 0;
};

/// (left id, right id) -> (merge rank, merged id), open addressing.
class PairTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  /// Keeps the first (lowest-rank) entry for a pair.
  void insert(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    const uint64_t key = pack(a, b);
    for (size_t h = mix(key) & mask_;; h = (h + 1) & mask_) {
      if (slots_[h].merged < 0) {
        slots_[h] = {key, rank, merged};
        return;
      }
      if (slots_[h].key == key) return;
    }
  }
  /// Returns false when the pair is not a merge.
  bool find(int32_t a, int32_t b, uint32_t* rank, int32_t* merged) const {
    if (slots_.empty()) return false;
    const uint64_t key = pack(a, b);
    for (size_t h = mix(key) & mask_;; h = (h + 1) & mask_) {
      const Slot& s = slots_[h];
      if (s.merged < 0) return false;
      if (s.key == key) {
        *rank = s.rank;
        *merged = s.merged;
        return true;
      }
    }
  }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t rank = 0;
    int32_t merged = -1;
  };
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

}  // namespace piquant
