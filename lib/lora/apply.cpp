#include "lora/apply.hpp"

#include <cmath>

#include "piquant/error.hpp"
#include "threads/thread_pool.hpp"

namespace piquant {

void check_adapters(const std::vector<AdapterChoice>& set, const Model::Impl& m) {
  for (size_t i = 0; i < set.size(); ++i) {
    if (!set[i].adapter) {
      throw Error(ErrorCode::kInvalidArgument, "set_adapters: adapter " + std::to_string(i) + " is null");
    }
    const LoraAdapter::Impl& a = set[i].adapter->impl();
    const ModelConfig& c = m.config;
    const ModelConfig& ac = a.config;
    if (ac.dim != c.dim || ac.hidden_dim != c.hidden_dim || ac.n_layers != c.n_layers ||
        ac.n_heads != c.n_heads || ac.n_kv_heads != c.n_kv_heads || ac.head_dim != c.head_dim ||
        a.layout != m.rope_layout) {
      throw Error(ErrorCode::kInvalidArgument,
                  "set_adapters: " + a.source + " was loaded for a model of another shape or "
                  "RoPE layout than this session's (load it for this model)");
    }
    if (!std::isfinite(set[i].scale)) {
      throw Error(ErrorCode::kInvalidArgument, "set_adapters: scale of " + a.source + " is not finite");
    }
  }
}

void apply_lora(const std::vector<AdapterChoice>& set, int layer, LoraTarget target,
                const float* x, size_t n, size_t x_stride, float* y, size_t y_stride,
                ThreadPool* pool, std::vector<float>& tmp) {
  const kernels::LoraKernels& kern = kernels::lora_kernels();
  for (const AdapterChoice& ch : set) {
    const LoraMatrix& m = ch.adapter->impl().at(layer, target);
    if (m.empty() || ch.scale == 0.0f) continue;
    const size_t r = size_t(m.r);
    if (tmp.size() < n * r) tmp.resize(n * r);
    const size_t w = size_t(m.type);
    kernels::LoraDownArgs d{n, size_t(m.k), x, x_stride, m.a, tmp.data(), r, 0, r};
    kernels::LoraUpArgs u{n, r, size_t(m.m), tmp.data(), r, m.bt, ch.scale * m.scale, y, y_stride, 0,
                          size_t(m.m)};
    // One thread: no pool round trip. Otherwise split A x by rank and B t by output rows, also
    // for decode: two short barriers per projection cost less than leaving the second core idle
    // while one streams the adapter (rank-16 adapter on 7 projections of TinyLlama, 2 threads:
    // +10.3 % decode overhead on the calling thread alone, see docs/lora.md#cost).
    if (pool == nullptr || pool->size() == 1) {
      kern.down[w](d);
      kern.up[w](u);
      continue;
    }
    pool->parallel_for(r, 1, [&](size_t j0, size_t j1) {
      kernels::LoraDownArgs a = d;
      a.j0 = j0;
      a.j1 = j1;
      kern.down[w](a);
    });
    pool->parallel_for(size_t(m.m), 64, [&](size_t i0, size_t i1) {
      kernels::LoraUpArgs a = u;
      a.i0 = i0;
      a.i1 = i1;
      kern.up[w](a);
    });
  }
}

std::string lora_kernel_names() {
  const std::string isa = kernels::lora_kernels().isa;
  return "lora_down_f32_{f32,f16}_" + isa + ", lora_up_f32_{f32,f16}_" + isa;
}

}  // namespace piquant
