#pragma once
// What Session and Context share when they are created: the context length and KV type chosen
// from the public options.
#include <memory>

#include "model/kv_cache.hpp"
#include "piquant/session.hpp"

namespace piquant {

/// n_ctx 0: the model's max_seq_len. Throws kInvalidArgument below 0 or above the model's.
int resolve_ctx(const Model& m, int n_ctx);
/// kAuto: f32 for an all-f32 model (exact reference runs), f16 otherwise.
KvType resolve_kv_type(const Model& m, KvCacheType t);

}  // namespace piquant
