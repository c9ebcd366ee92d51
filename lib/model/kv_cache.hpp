#pragma once
// The KV store of the library: K and V of up to n_seq sequences (one for a Session, N for a
// Context), in the element type chosen at creation (f16 default, int8, f32), and the attention
// entry point of the forward pass. The one KV type of lib/ (the f32 test oracle keeps its own
// plain arrays in tests/).
//
// Each sequence has a slot of n_ctx positions and its own fill per layer. A slot is cleared and
// reused (remove a sequence, add another), and a prefix of one slot can be copied into another
// (fork: a system prompt evaluated once, shared by N agents).
//
// Layout: for each (sequence, layer), a K plane and a V plane of [n_kv_heads][n_ctx][head_dim]
// elements (kv_format.hpp): each kv head's positions are contiguous, so attention streams them.
// For q8, scale planes [n_kv_heads][n_ctx][ceil(head_dim/32)] f32 beside them.
// Memory is calloc'ed: the OS commits pages as positions fill, not at creation (an unused
// sequence slot costs address space only).
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
  int n_seq = 1;  ///< sequence slots
};

class KvStore;

/// One query row of attend_rows: the row's sequence `seq` in `kv`, at position `pos` (it attends
/// to positions [0, pos] of that sequence).
struct AttnRow {
  const KvStore* kv;
  int seq;
  int pos;
};

/// Causal grouped-query attention for n rows that may belong to different sequences (and to
/// different stores of one model shape): q and out are n rows of n_heads * head_dim floats. Work
/// is split over (row, kv head, query-head subgroup) across `pool` (nullptr: this thread); every
/// head's result is independent of the split and of the other rows. Throws kInvalidArgument if
/// n_heads is not a positive multiple of n_kv_heads, kOutOfRange for a row whose positions are
/// not filled.
void attend_rows(int layer, const AttnRow* rows, size_t n, const float* q, int n_heads,
                 float* out, ThreadPool* pool, float scale = 0.0f);

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
  /// Bytes held for K, V and scales of every sequence, layer and position (what n_seq x n_ctx
  /// costs in address space).
  size_t memory_bytes() const { return bytes_; }
  /// Bytes per position of one sequence over all layers (K + V + scales).
  size_t bytes_per_token() const;
  /// The attention kernel chosen for this type and head_dim ("attn_f32_f16_avx2").
  const char* kernel_name() const { return kernel_->name; }
  /// Positions [0, filled(layer, seq)) of `layer` of sequence `seq` hold data.
  int filled(int layer, int seq = 0) const;
  /// Positions every layer of `seq` holds (after a complete pass: the sequence's length).
  int length(int seq) const;

  /// Stores K and V of positions [pos0, pos0 + n_tokens) of sequence `seq` for `layer`. k and v
  /// are n_tokens rows of n_kv_heads * head_dim floats (RoPE already applied to k). pos0 may
  /// rewrite earlier positions but not leave a gap after filled(layer, seq). Throws kContextFull
  /// past n_ctx, kOutOfRange for a bad layer or sequence, kInvalidArgument for a gap or
  /// n_tokens < 1.
  void append(int layer, int pos0, int n_tokens, const float* k, const float* v, int seq = 0);

  /// Forgets positions >= n_pos of sequence `seq` in every layer (rewind a conversation;
  /// n_pos 0 empties the slot for reuse).
  void truncate(int n_pos, int seq = 0);

  /// Copies positions [0, n_pos) of every layer of `src` into `dst` (whose fill becomes n_pos):
  /// a prefix evaluated once serves several sequences. Throws kOutOfRange for a bad sequence or
  /// n_pos beyond length(src); src == dst is a no-op apart from truncating.
  void copy_prefix(int src, int dst, int n_pos);

  /// Causal grouped-query attention for n_tokens queries of sequence `seq` at positions
  /// pos0 .. pos0+n_tokens-1 (their K/V already appended): q and out are n_tokens x n_heads x
  /// head_dim floats; query token i attends to positions [0, pos0 + i]. attend_rows with one row
  /// per token; scale <= 0: 1/sqrt(head_dim).
  void attend(int layer, const float* q, int n_heads, int pos0, int n_tokens, float* out,
              ThreadPool* pool, float scale = 0.0f, int seq = 0) const;

  /// Element (layer, kv head, pos, j) of K or V of sequence `seq` as float (tests, debugging).
  float k_at(int layer, int kv_head, int pos, int j, int seq = 0) const;
  float v_at(int layer, int kv_head, int pos, int j, int seq = 0) const;

  /// The attention kernel and, for (layer, seq, kv_head), the K/V planes and scales it reads
  /// (what attend_rows hands to the kernel). No checks: callers check first.
  const kernels::AttnKernel& kernel() const { return *kernel_; }
  void planes(int layer, int seq, int kv_head, kernels::AttnArgs& a) const;
  /// Throws kOutOfRange for a sequence outside [0, n_seq).
  void check_seq(int seq, const char* what) const;

 private:
  struct Free {
    void operator()(void* p) const;
  };
  // Shallow const: attend() reads through these, append() writes.
  size_t plane_index(int seq, int layer, int kv_head, bool is_v) const;
  uint8_t* plane(int seq, int layer, int kv_head, bool is_v) const;
  float* scale_plane(int seq, int layer, int kv_head, bool is_v) const;
  float element(int seq, int layer, int kv_head, int pos, int j, bool is_v) const;
  void check_layer(int layer, const char* what) const;

  KvShape shape_;
  KvType type_;
  const kernels::AttnKernel* kernel_ = nullptr;
  size_t row_bytes_ = 0, n_blocks_ = 0;  // per position and kv head
  size_t plane_bytes_ = 0;               // one (layer, kv head, K or V) plane
  size_t bytes_ = 0;
  std::unique_ptr<uint8_t, Free> data_;  // [seq][layer][K|V][kv_head] planes
  std::unique_ptr<float, Free> scales_;  // q8: [seq][layer][K|V][kv_head][n_ctx][n_blocks]
  std::vector<int> filled_;              // [seq][layer]
};

}  // namespace piquant
