#include "model/kv_cache.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
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
  if (s.n_layers <= 0 || s.n_ctx <= 0 || s.n_kv_heads <= 0 || s.head_dim <= 0 || s.n_seq <= 0) {
    throw invalid("KV cache: n_layers " + std::to_string(s.n_layers) + ", n_ctx " +
                  std::to_string(s.n_ctx) + ", n_kv_heads " + std::to_string(s.n_kv_heads) +
                  ", head_dim " + std::to_string(s.head_dim) + ", n_seq " +
                  std::to_string(s.n_seq) + " must all be positive");
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
  const size_t n_planes = mul_checked(
      mul_checked(2 * static_cast<size_t>(s.n_layers), static_cast<size_t>(s.n_kv_heads), "planes"),
      static_cast<size_t>(s.n_seq), "planes");
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
  filled_.assign(static_cast<size_t>(s.n_layers) * static_cast<size_t>(s.n_seq), 0);
}

KvStore::~KvStore() = default;
KvStore::KvStore(KvStore&&) noexcept = default;
KvStore& KvStore::operator=(KvStore&&) noexcept = default;

size_t KvStore::bytes_per_token() const {
  return bytes_ / static_cast<size_t>(shape_.n_ctx) / static_cast<size_t>(shape_.n_seq);
}

int KvStore::filled(int layer, int seq) const {
  check_layer(layer, "filled");
  check_seq(seq, "filled");
  return filled_[static_cast<size_t>(seq) * shape_.n_layers + static_cast<size_t>(layer)];
}

int KvStore::length(int seq) const {
  check_seq(seq, "length");
  const auto b = filled_.begin() + static_cast<ptrdiff_t>(seq) * shape_.n_layers;
  return *std::min_element(b, b + shape_.n_layers);
}

void KvStore::check_seq(int seq, const char* what) const {
  if (seq < 0 || seq >= shape_.n_seq) {
    throw Error(ErrorCode::kOutOfRange, std::string("KV cache ") + what + ": sequence " +
                                            std::to_string(seq) + " not in [0, " +
                                            std::to_string(shape_.n_seq) + ")");
  }
}

void KvStore::check_layer(int layer, const char* what) const {
  if (layer < 0 || layer >= shape_.n_layers) {
    throw Error(ErrorCode::kOutOfRange, std::string("KV cache ") + what + ": layer " +
                                            std::to_string(layer) + " not in [0, " +
                                            std::to_string(shape_.n_layers) + ")");
  }
}

size_t KvStore::plane_index(int seq, int layer, int kv_head, bool is_v) const {
  return ((static_cast<size_t>(seq) * shape_.n_layers + static_cast<size_t>(layer)) * 2 +
          (is_v ? 1 : 0)) * static_cast<size_t>(shape_.n_kv_heads) + static_cast<size_t>(kv_head);
}

uint8_t* KvStore::plane(int seq, int layer, int kv_head, bool is_v) const {
  return data_.get() + plane_index(seq, layer, kv_head, is_v) * plane_bytes_;
}

float* KvStore::scale_plane(int seq, int layer, int kv_head, bool is_v) const {
  if (!scales_) return nullptr;
  return scales_.get() +
         plane_index(seq, layer, kv_head, is_v) * static_cast<size_t>(shape_.n_ctx) * n_blocks_;
}

void KvStore::planes(int layer, int seq, int kv_head, kernels::AttnArgs& a) const {
  a.k = plane(seq, layer, kv_head, false);
  a.v = plane(seq, layer, kv_head, true);
  a.k_scale = scale_plane(seq, layer, kv_head, false);
  a.v_scale = scale_plane(seq, layer, kv_head, true);
}

void KvStore::append(int layer, int pos0, int n_tokens, const float* k, const float* v,
                     int seq) {
  check_layer(layer, "append");
  check_seq(seq, "append");
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
  int& fill = filled_[static_cast<size_t>(seq) * shape_.n_layers + static_cast<size_t>(layer)];
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
      uint8_t* base = plane(seq, layer, h, which != 0);
      float* sbase = scale_plane(seq, layer, h, which != 0);
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

void KvStore::truncate(int n_pos, int seq) {
  check_seq(seq, "truncate");
  if (n_pos < 0) throw invalid("KV cache truncate: " + std::to_string(n_pos) + " < 0");
  const auto b = filled_.begin() + static_cast<ptrdiff_t>(seq) * shape_.n_layers;
  for (auto it = b; it != b + shape_.n_layers; ++it) *it = std::min(*it, n_pos);
}

void KvStore::copy_prefix(int src, int dst, int n_pos) {
  check_seq(src, "copy");
  check_seq(dst, "copy");
  if (n_pos < 0 || n_pos > length(src)) {
    throw Error(ErrorCode::kOutOfRange, "KV cache copy: " + std::to_string(n_pos) +
                                            " positions but sequence " + std::to_string(src) +
                                            " holds " + std::to_string(length(src)));
  }
  if (src != dst) {
    const size_t rows = static_cast<size_t>(n_pos);
    for (int l = 0; l < shape_.n_layers; ++l) {
      for (int which = 0; which < 2; ++which) {
        for (int h = 0; h < shape_.n_kv_heads; ++h) {
          std::memcpy(plane(dst, l, h, which != 0), plane(src, l, h, which != 0), rows * row_bytes_);
          if (scales_) {
            std::memcpy(scale_plane(dst, l, h, which != 0), scale_plane(src, l, h, which != 0),
                        rows * n_blocks_ * sizeof(float));
          }
        }
      }
    }
    const auto d = filled_.begin() + static_cast<ptrdiff_t>(dst) * shape_.n_layers;
    std::fill(d, d + shape_.n_layers, n_pos);
  }
  truncate(n_pos, dst);
}

void KvStore::attend(int layer, const float* q, int n_heads, int pos0, int n_tokens, float* out,
                     ThreadPool* pool, float scale, int seq) const {
  check_seq(seq, "attend");
  if (n_tokens < 1 || pos0 < 0) {
    throw Error(ErrorCode::kOutOfRange, "attention: positions " + std::to_string(pos0) + ", " +
                                            std::to_string(n_tokens) + " tokens");
  }
  std::vector<AttnRow> rows(static_cast<size_t>(n_tokens));
  for (int i = 0; i < n_tokens; ++i) rows[static_cast<size_t>(i)] = AttnRow{this, seq, pos0 + i};
  attend_rows(layer, rows.data(), rows.size(), q, n_heads, out, pool, scale);
}

void attend_rows(int layer, const AttnRow* rows, size_t n, const float* q, int n_heads,
                 float* out, ThreadPool* pool, float scale) {
  if (n == 0) return;
  const KvStore& kv0 = *rows[0].kv;
  const KvShape& shape = kv0.shape();
  if (layer < 0 || layer >= shape.n_layers) {
    throw Error(ErrorCode::kOutOfRange, "KV cache attend: layer " + std::to_string(layer) +
                                            " not in [0, " + std::to_string(shape.n_layers) + ")");
  }
  const int n_kv = shape.n_kv_heads;
  if (n_heads < n_kv || n_heads % n_kv != 0) {
    throw invalid("attention: " + std::to_string(n_heads) + " query heads is not a multiple of " +
                  std::to_string(n_kv) + " kv heads");
  }
  for (size_t i = 0; i < n; ++i) {
    const AttnRow& r = rows[i];
    const KvShape& s = r.kv->shape();
    if (s.n_kv_heads != n_kv || s.head_dim != shape.head_dim || s.n_layers != shape.n_layers) {
      throw invalid("attention: row " + std::to_string(i) + " is in a KV store of another shape");
    }
    const int fill = r.kv->filled(layer, r.seq);
    if (r.pos < 0 || r.pos >= fill) {
      throw Error(ErrorCode::kOutOfRange,
                  "attention: layer " + std::to_string(layer) + " sequence " +
                      std::to_string(r.seq) + " position " + std::to_string(r.pos) +
                      " but only [0, " + std::to_string(fill) + ") are in the KV cache");
    }
  }
  const size_t hd = static_cast<size_t>(shape.head_dim);
  const size_t group = static_cast<size_t>(n_heads / n_kv);
  const size_t base_units = n * static_cast<size_t>(n_kv);
  const size_t threads = pool ? static_cast<size_t>(pool->size()) : 1;
  // Split a group into subgroups only when there are fewer (row, kv head) pairs than threads.
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
    // Latest rows first: in a prefill chunk they attend to the most positions (better balance).
    const size_t tok = n - 1 - u / (static_cast<size_t>(n_kv) * n_sub);
    const size_t rest = u % (static_cast<size_t>(n_kv) * n_sub);
    const size_t h = rest / n_sub, s = rest % n_sub;
    const size_t head0 = h * group + s * sub;
    const AttnRow& r = rows[tok];
    kernels::AttnArgs a{};
    a.q = q + tok * row + head0 * hd;
    a.q_stride = hd;
    a.out = out + tok * row + head0 * hd;
    a.out_stride = hd;
    a.n_q = std::min(sub, group - s * sub);
    a.head_dim = hd;
    a.n_kv = static_cast<size_t>(r.pos) + 1;
    r.kv->planes(layer, r.seq, static_cast<int>(h), a);
    a.scale = sc;
    r.kv->kernel().run(a);
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

float KvStore::element(int seq, int layer, int kv_head, int pos, int j, bool is_v) const {
  check_layer(layer, "read");
  check_seq(seq, "read");
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads || pos < 0 || pos >= shape_.n_ctx || j < 0 ||
      j >= shape_.head_dim) {
    throw Error(ErrorCode::kOutOfRange, "KV cache read: kv head " + std::to_string(kv_head) +
                                            ", position " + std::to_string(pos) + ", element " +
                                            std::to_string(j) + " out of range");
  }
  const uint8_t* row = plane(seq, layer, kv_head, is_v) + static_cast<size_t>(pos) * row_bytes_;
  switch (type_) {
    case KvType::kF32:
      return reinterpret_cast<const float*>(row)[j];
    case KvType::kF16:
      return kernels::f16_to_f32_scalar(reinterpret_cast<const uint16_t*>(row)[j]);
    case KvType::kQ8: {
      const float* d = scale_plane(seq, layer, kv_head, is_v) + static_cast<size_t>(pos) * n_blocks_;
      return d[static_cast<size_t>(j) / kernels::kKvQ8Block] *
             static_cast<float>(reinterpret_cast<const int8_t*>(row)[j]);
    }
  }
  return 0.0f;
}

float KvStore::k_at(int layer, int kv_head, int pos, int j, int seq) const {
  return element(seq, layer, kv_head, pos, j, false);
}
float KvStore::v_at(int layer, int kv_head, int pos, int j, int seq) const {
  return element(seq, layer, kv_head, pos, j, true);
}

}  // namespace piquant
