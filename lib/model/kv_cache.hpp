#pragma once
// The session's KV cache in the element type chosen at creation (f16 default, int8, f32), and
// the attention entry point of the forward pass.
//
// Named KvStore, not KvCache, while forward.hpp's plain f32 `KvCache` (the oracle) still exists:
// two classes of one name in one program would be an ODR violation.
//
// Layout: for each layer, a K plane and a V plane of [n_kv_heads][n_ctx][head_dim] elements
// (kv_format.hpp): each kv head's positions are contiguous, so attention streams them. For q8,
// scale planes [n_kv_heads][n_ctx][ceil(head_dim/32)] f32 beside them.
// Memory is calloc'ed: the OS commits pages as positions fill, not at creation.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.hpp"

namespace piquant {

class ThreadPool;

using KvType = kernels::KvType;

/// "f16" | "q8" (also "int8", "i8") | "f32" -> KvType; throws kInvalidArgument otherwise.
KvType parse_kv_type(const std::string& name);

struct KvShape {
  int n_layers = 0;
  int n_ctx = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
};

class KvStore {
 public:
  /// Throws kInvalidArgument for non-positive sizes or a total beyond size_t, kUnsupported for
  /// head_dim > 256 (kernels::kAttnMaxHeadDim).
  KvStore(const KvShape& shape, KvType type = KvType::kF16);
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;
  KvStore(KvStore&&) noexcept;
  KvStore& operator=(KvStore&&) noexcept;

  const KvShape& shape() const { return shape_; }
  KvType type() const { return type_; }
  /// Bytes held for K, V and scales of every layer and position (what n_ctx costs).
  size_t memory_bytes() const { return bytes_; }
  /// Bytes per position over all layers (K + V + scales).
  size_t bytes_per_token() const;
  /// The attention kernel chosen for this type and head_dim ("attn_f32_f16_avx2").
  const char* kernel_name() const { return kernel_->name; }
  /// Positions [0, filled(layer)) of `layer` hold data.
  int filled(int layer) const;

  /// Stores K and V of positions [pos0, pos0 + n_tokens) for `layer`. k and v are n_tokens rows
  /// of n_kv_heads * head_dim floats (RoPE already applied to k). pos0 may rewrite earlier
  /// positions but not leave a gap after filled(layer). Throws kContextFull past n_ctx,
  /// kOutOfRange for a bad layer, kInvalidArgument for a gap or n_tokens < 1.
  void append(int layer, int pos0, int n_tokens, const float* k, const float* v);

  /// Forgets positions >= n_pos in every layer (e.g. to rewind a conversation).
  void truncate(int n_pos);

  /// Causal grouped-query attention for n_tokens queries at positions pos0 .. pos0+n_tokens-1
  /// (their K/V already appended): q and out are n_tokens x n_heads x head_dim floats; query
  /// token i attends to positions [0, pos0 + i]. Work is split over (token, kv head, query-head
  /// subgroup) across `pool` (nullptr: this thread); every head's result is independent of the
  /// split, so the output is identical for any thread count. scale <= 0: 1/sqrt(head_dim).
  /// Throws kInvalidArgument if n_heads is not a positive multiple of n_kv_heads, kOutOfRange
  /// if the positions are not filled.
  void attend(int layer, const float* q, int n_heads, int pos0, int n_tokens, float* out,
              ThreadPool* pool, float scale = 0.0f) const;

  /// Element (layer, kv head, pos, j) of K or V as float (tests, debugging).
  float k_at(int layer, int kv_head, int pos, int j) const;
  float v_at(int layer, int kv_head, int pos, int j) const;

 private:
  struct Free {
    void operator()(void* p) const;
  };
  // Shallow const: attend() reads through these, append() writes.
  uint8_t* plane(int layer, int kv_head, bool is_v) const;
  float* scale_plane(int layer, int kv_head, bool is_v) const;
  float element(int layer, int kv_head, int pos, int j, bool is_v) const;
  void check_layer(int layer, const char* what) const;

  KvShape shape_;
  KvType type_;
  const kernels::AttnKernel* kernel_ = nullptr;
  size_t row_bytes_ = 0, n_blocks_ = 0;  // per position and kv head
  size_t plane_bytes_ = 0;               // one (layer, kv head, K or V) plane
  size_t bytes_ = 0;
  std::unique_ptr<uint8_t, Free> data_;  // [layer][K|V][kv_head] planes
  std::unique_ptr<float, Free> scales_;  // q8: [layer][K|V][kv_head][n_ctx][n_blocks]
  std::vector<int> filled_;
};

}  // namespace piquant
