#pragma once
/// \file piquant/batch.hpp
/// Many sequences on one Model, scheduled by the program: a Context holds the KV cache of up to
/// n_seq sequences; decode() evaluates a list of rows (token, sequence, position) in one pass
/// over the weights and returns the logits of the rows that ask for them. A server with
/// continuous batching, N agents sharing a system prompt, or per-agent LoRA adapters build on
/// it; a single conversation is simpler with Session (session.hpp).
///
///   piquant::Context ctx(model, {/*n_ctx=*/2048, /*n_seq=*/8});
///   int sys = ctx.add_sequence();
///   ctx.decode(rows_of(sys, system_prompt_ids));        // evaluated once
///   int a = ctx.fork(sys), b = ctx.fork(sys);           // two agents share that prefix
///   auto logits = ctx.decode({{tok_a, a}, {tok_b, b}}); // one pass, one row each
///
/// A Context is used by one thread at a time; many Contexts and Sessions may share one Model.
#include <memory>
#include <vector>

#include "piquant/lora.hpp"
#include "piquant/model.hpp"
#include "piquant/session.hpp"

namespace piquant {

struct ContextOptions {
  int n_ctx = 0;      ///< positions per sequence; 0: the model's max_seq_len
  int n_seq = 8;      ///< sequences held at once (KV memory is committed only as it fills)
  int n_threads = 0;  ///< 0: all hardware threads
  KvCacheType kv_type = KvCacheType::kAuto;
};

/// One row of a decode: `token` appended to sequence `seq` at position `pos` (-1: the
/// sequence's next position).
struct DecodeRow {
  TokenId token = 0;
  int seq = 0;
  bool logits = true;  ///< return this row's logits
  int pos = -1;
};

class Context {
 public:
  /// Throws Error(kInvalidArgument) for a null model, n_seq < 1, or a bad context length.
  Context(std::shared_ptr<const Model> model, const ContextOptions& options = {});
  ~Context();
  Context(Context&&) noexcept;
  Context& operator=(Context&&) noexcept;

  /// A new, empty sequence; its id is in [0, n_seq). Throws Error(kContextFull) when all n_seq
  /// are in use (remove one first: its room is reused).
  int add_sequence();
  /// A new sequence holding the first `n_pos` positions of `src` (-1: all of them), copied:
  /// a prefix evaluated once serves many sequences. Adapters are not copied.
  int fork(int src, int n_pos = -1);
  /// Frees `seq` (its id and memory are reused by a later add_sequence or fork).
  void remove_sequence(int seq);
  /// Forgets the positions of `seq` from `position` on. Throws kOutOfRange unless
  /// 0 <= position <= position(seq).
  void rewind(int seq, int position);
  int position(int seq) const;  ///< tokens held by `seq`
  /// The LoRA adapters applied to the rows of `seq` (empty: the base model). Rows of different
  /// sequences may carry different adapters in one decode.
  void set_adapters(int seq, std::vector<AdapterChoice> adapters);

  /// Evaluates `rows` in one pass (a longer list runs in passes of 64 rows): the rows of one
  /// sequence must have consecutive positions, the first at most position(seq) (an earlier
  /// one rewrites from there); rows of several sequences may be mixed freely, e.g. one
  /// sequence's prompt chunk with other sequences' next tokens. Returns, in row order, the
  /// logits (vocab_size floats) of the rows with `logits` set, valid until the next decode.
  /// Throws without changing any sequence for an unknown sequence, a bad token or position,
  /// or a full context.
  std::vector<const float*> decode(const std::vector<DecodeRow>& rows);

  int n_ctx() const;
  int n_seq() const;
  size_t kv_cache_bytes() const;  ///< KV address space for n_seq x n_ctx positions
  const Model& model() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace piquant
