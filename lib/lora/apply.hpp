#pragma once
// Run-time LoRA: after a projection y = x W^T over n tokens, y += s * B (A x) for every adapter
// a session has chosen (s = the session's scale x alpha / r). For several tokens the `down` step
// (A x) is split over rank rows and the `up` step over output columns across the pool; a single
// token (decode) runs on the calling thread, with no barrier.
#include <cstddef>
#include <vector>

#include "lora/adapter.hpp"
#include "piquant/lora.hpp"

namespace piquant {

class ThreadPool;

/// Throws Error(kInvalidArgument) when an adapter was loaded for a model of another shape or
/// RoPE layout than `model`.
void check_adapters(const std::vector<AdapterChoice>& set, const Model::Impl& model);

/// x: n rows of the projection's input width (x_stride floats apart); y: n rows of its output
/// (y_stride floats apart). tmp: scratch, grown as needed.
void apply_lora(const std::vector<AdapterChoice>& set, int layer, LoraTarget target,
                const float* x, size_t n, size_t x_stride, float* y, size_t y_stride,
                ThreadPool* pool, std::vector<float>& tmp);

/// "lora_down_f32_f16_avx2, lora_up_f32_f16_avx2" (the chosen table's names).
std::string lora_kernel_names();

}  // namespace piquant
