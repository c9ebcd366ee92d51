#include "model/kv_cache.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"
#include "vector/vector.hpp"

namespace piquant {
namespace {

Error invalid(const std::string& what) { return Error(ErrorCode::kInvalidArgument, what); }

/// a * b, or throws when it does not fit in size_t.
size_t mul_checked(size_t a, size_t b, const char* what) {
  if (b != 0 && a > std::numeric_limits<size_t>::max() / b) {
    throw invalid(std::string("KV cache: ") + what + " overflows the address space");
  }
  return a * b;
}

}  // namespace

KvType parse_kv_type(const std::string& name) {
  if (name == "f16") return KvType::kF16;
  if (name == "q8" || name == "int8" || name == "i8") return KvType::kQ8;
  if (name == "f32") return KvType::kF32;
  throw invalid("unknown KV cache type '" + name + "' (expected f16, q8 or f32)");
}

void KvStore::Free::operator()(void* p) const { std::free(p); }

KvStore::KvStore(const KvShape& s, KvType type) : shape_(s), type_(type) {
  if (s.n_layers <= 0 || s.n_ctx <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0) {
    throw invalid("KV cache: n_layers " + std::to_string(s.n_layers) + ", n_ctx " +
                  std::to_string(s.n_ctx) + ", n_kv_heads " + std::to_string(s.n_kv_heads) +
                  ", head_dim " + std::to_string(s.head_dim) + " must all be positive");
  }
  kernel_ = kernels::attn_select(type, static_cast<size_t>(s.head_dim));
  if (!kernel_) {
    throw Error(ErrorCode::kUnsupported, "KV cache: head_dim " + std::to_string(s.head_dim) +
                                             " is above the attention kernels' limit " +
                                             std::to_string(kernels::kAttnMaxHeadDim));
  }
  const size_t hd = static_cast<size_t>(s.head_dim);
  row_bytes_ = kernels::kv_row_bytes(type, hd);
  n_blocks_ = type == KvType::kQ8 ? kernels::kv_q8_blocks(hd) : 0;
  plane_bytes_ = mul_checked(row_bytes_, static_cast<size_t>(s.n_ctx), "plane size");
  const size_t n_planes =
      mul_checked(2 * static_cast<size_t>(s.n_layers), static_cast<size_t>(s.n_kv_heads), "planes");
  const size_t data_bytes = mul_checked(plane_bytes_, n_planes, "total size");
  size_t scale_count = 0;
  if (n_blocks_) {
    scale_count = mul_checked(mul_checked(n_planes, static_cast<size_t>(s.n_ctx), "scales"),
                              n_blocks_, "scales");
  }
  const size_t scale_bytes = mul_checked(scale_count, sizeof(float), "scales");
  if (data_bytes > std::numeric_limits<size_t>::max() - scale_bytes) {
    throw invalid("KV cache: total size overflows the address space");
  }
  bytes_ = data_bytes + scale_bytes;
  data_.reset(static_cast<uint8_t*>(std::calloc(data_bytes, 1)));
  if (scale_count) scales_.reset(static_cast<float*>(std::calloc(scale_count, sizeof(float))));
  if (!data_ || (scale_count && !scales_)) {
    throw Error(ErrorCode::kInvalidArgument, "KV cache: cannot allocate " + std::to_string(bytes_) +
                                                 " bytes for n_ctx " + std::to_string(s.n_ctx) +
                                                 " (" + kernels::kv_type_name(type) + ")");
  }
  filled_.assign(static_cast<size_t>(s.n_layers), 0);
}

KvStore::~KvStore() = default;
KvStore::KvStore(KvStore&&) noexcept = default;
KvStore& KvStore::operator=(KvStore&&) noexcept = default;

size_t KvStore::bytes_per_token() const { return bytes_ / static_cast<size_t>(shape_.n_ctx); }

int KvStore::filled(int layer) const {
  check_layer(layer, "filled");
  return filled_[static_cast<size_t>(layer)];
}

void KvStore::check_layer(int layer, const char* what) const {
  if (layer < 0 || layer >= shape_.n_layers) {
    throw Error(ErrorCode::kOutOfRange, std::string("KV cache ") + what + ": layer " +
                                            std::to_string(layer) + " not in [0, " +
                                            std::to_string(shape_.n_layers) + ")");
  }
}

uint8_t* KvStore::plane(int layer, int kv_head, bool is_v) const {
  const size_t idx = (static_cast<size_t>(layer) * 2 + (is_v ? 1 : 0)) * shape_.n_kv_heads +
                     static_cast<size_t>(kv_head);
  return data_.get() + idx * plane_bytes_;
}

float* KvStore::scale_plane(int layer, int kv_head, bool is_v) const {
  if (!scales_) return nullptr;
  const size_t idx = (static_cast<size_t>(layer) * 2 + (is_v ? 1 : 0)) * shape_.n_kv_heads +
                     static_cast<size_t>(kv_head);
  return scales_.get() + idx * static_cast<size_t>(shape_.n_ctx) * n_blocks_;
}

void KvStore::append(int layer, int pos0, int n_tokens, const float* k, const float* v) {
  check_layer(layer, "append");
  if (n_tokens < 1 || pos0 < 0) {
    throw invalid("KV cache append: pos0 " + std::to_string(pos0) + ", n_tokens " +
                  std::to_string(n_tokens) + " (need pos0 >= 0, n_tokens >= 1)");
  }
  if (n_tokens > shape_.n_ctx || pos0 > shape_.n_ctx - n_tokens) {
    throw Error(ErrorCode::kContextFull, "KV cache: positions " + std::to_string(pos0) + ".." +
                                             std::to_string(int64_t(pos0) + n_tokens - 1) +
                                             " do not fit the context of " +
                                             std::to_string(shape_.n_ctx));
  }
  int& fill = filled_[static_cast<size_t>(layer)];
  if (pos0 > fill) {
    throw invalid("KV cache append: layer " + std::to_string(layer) + " position " +
                  std::to_string(pos0) + " would leave a gap after " + std::to_string(fill));
  }
  const size_t hd = static_cast<size_t>(shape_.head_dim);
  const size_t kv_dim = hd * static_cast<size_t>(shape_.n_kv_heads);
  const kernels::VectorKernels& vk = kernels::vector_kernels();
  for (int which = 0; which < 2; ++which) {
    const float* src = which ? v : k;
    for (int h = 0; h < shape_.n_kv_heads; ++h) {
      uint8_t* base = plane(layer, h, which != 0);
      float* sbase = scale_plane(layer, h, which != 0);
      for (int i = 0; i < n_tokens; ++i) {
        const size_t pos = static_cast<size_t>(pos0 + i);
        const float* x = src + static_cast<size_t>(i) * kv_dim + static_cast<size_t>(h) * hd;
        uint8_t* dst = base + pos * row_bytes_;
        switch (type_) {
          case KvType::kF32:
            std::copy(x, x + hd, reinterpret_cast<float*>(dst));
            break;
          case KvType::kF16:
            vk.f32_to_f16(reinterpret_cast<uint16_t*>(dst), x, hd);
            break;
          case KvType::kQ8:
            kernels::kv_quantize_q8_row(reinterpret_cast<int8_t*>(dst), sbase + pos * n_blocks_, x,
                                        hd);
            break;
        }
      }
    }
  }
  fill = std::max(fill, pos0 + n_tokens);
}

void KvStore::truncate(int n_pos) {
  if (n_pos < 0) throw invalid("KV cache truncate: " + std::to_string(n_pos) + " < 0");
  for (int& f : filled_) f = std::min(f, n_pos);
}

void KvStore::attend(int layer, const float* q, int n_heads, int pos0, int n_tokens, float* out,
                     ThreadPool* pool, float scale) const {
  check_layer(layer, "attend");
  const int n_kv = shape_.n_kv_heads;
  if (n_heads < n_kv || n_heads % n_kv != 0) {
    throw invalid("attention: " + std::to_string(n_heads) + " query heads is not a multiple of " +
                  std::to_string(n_kv) + " kv heads");
  }
  const int fill = filled_[static_cast<size_t>(layer)];
  if (n_tokens < 1 || pos0 < 0 || pos0 > fill - n_tokens) {
    throw Error(ErrorCode::kOutOfRange,
                "attention: layer " + std::to_string(layer) + " positions " + std::to_string(pos0) +
                    ".." + std::to_string(int64_t(pos0) + n_tokens - 1) + " but only [0, " +
                    std::to_string(fill) + ") are in the KV cache");
  }
  const size_t hd = static_cast<size_t>(shape_.head_dim);
  const size_t group = static_cast<size_t>(n_heads / n_kv);
  const size_t base_units = static_cast<size_t>(n_tokens) * static_cast<size_t>(n_kv);
  const size_t threads = pool ? static_cast<size_t>(pool->size()) : 1;
  // Split a group into subgroups only when there are fewer (token, kv head) pairs than threads.
  size_t sub = group;
  if (base_units < threads) {
    const size_t want = std::min(group, (threads + base_units - 1) / base_units);
    sub = (group + want - 1) / want;
  }
  const size_t n_sub = (group + sub - 1) / sub;
  const size_t n_units = base_units * n_sub;
  const float sc = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t row = static_cast<size_t>(n_heads) * hd;

  auto run_unit = [&](size_t u) {
    // Latest tokens first: they attend to the most positions (better balance).
    const size_t tok = static_cast<size_t>(n_tokens) - 1 - u / (static_cast<size_t>(n_kv) * n_sub);
    const size_t rest = u % (static_cast<size_t>(n_kv) * n_sub);
    const size_t h = rest / n_sub, s = rest % n_sub;
    const size_t head0 = h * group + s * sub;
    kernels::AttnArgs a{};
    a.q = q + tok * row + head0 * hd;
    a.q_stride = hd;
    a.out = out + tok * row + head0 * hd;
    a.out_stride = hd;
    a.n_q = std::min(sub, group - s * sub);
    a.head_dim = hd;
    a.n_kv = static_cast<size_t>(pos0) + tok + 1;
    a.k = plane(layer, static_cast<int>(h), false);
    a.v = plane(layer, static_cast<int>(h), true);
    a.k_scale = scale_plane(layer, static_cast<int>(h), false);
    a.v_scale = scale_plane(layer, static_cast<int>(h), true);
    a.scale = sc;
    kernel_->run(a);
  };
  if (!pool || pool->size() == 1 || n_units == 1) {
    for (size_t u = 0; u < n_units; ++u) run_unit(u);
    return;
  }
  std::atomic<size_t> next{0};
  pool->run([&](int, int) {
    for (size_t u = next.fetch_add(1); u < n_units; u = next.fetch_add(1)) run_unit(u);
  });
}

float KvStore::element(int layer, int kv_head, int pos, int j, bool is_v) const {
  check_layer(layer, "read");
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads || pos < 0 || pos >= shape_.n_ctx || j < 0 ||
      j >= shape_.head_dim) {
    throw Error(ErrorCode::kOutOfRange, "KV cache read: kv head " + std::to_string(kv_head) +
                                            ", position " + std::to_string(pos) + ", element " +
                                            std::to_string(j) + " out of range");
  }
  const uint8_t* row = plane(layer, kv_head, is_v) + static_cast<size_t>(pos) * row_bytes_;
  switch (type_) {
    case KvType::kF32:
      return reinterpret_cast<const float*>(row)[j];
    case KvType::kF16:
      return kernels::f16_to_f32_scalar(reinterpret_cast<const uint16_t*>(row)[j]);
    case KvType::kQ8: {
      const float* d = scale_plane(layer, kv_head, is_v) + static_cast<size_t>(pos) * n_blocks_;
      return d[static_cast<size_t>(j) / kernels::kKvQ8Block] *
             static_cast<float>(reinterpret_cast<const int8_t*>(row)[j]);
    }
  }
  return 0.0f;
}

float KvStore::k_at(int layer, int kv_head, int pos, int j) const {
  return element(layer, kv_head, pos, j, false);
}
float KvStore::v_at(int layer, int kv_head, int pos, int j) const {
  return element(layer, kv_head, pos, j, true);
}

}  // namespace piquant
