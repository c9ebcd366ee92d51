#pragma once
// Which K-quant type each tensor gets under the converter's K-quant types and mixes.
//   q4_k, q5_k, q6_k, q5_0, q5_1: every matrix that type.
//   q4_k_m / q5_k_m (llama.cpp's Q4_K_M / Q5_K_M idea): Q4_K / Q5_K, with the classifier
//   (output.weight) at Q6_K and attn_v / ffn_down at Q6_K in the layers that matter most (the
//   first and last eighth of the layers and every third layer between: llama.cpp's
//   use_more_bits rule, kept so the files compare).
// A row length that is not a multiple of the type's block falls back per tensor as
// llama-quantize does (kquant_fallback).
#include <string>

#include "common/quant_k.hpp"

namespace piquant {

/// True for q4_k, q5_k, q6_k, q5_0, q5_1, q4_k_m, q5_k_m (lower case).
bool is_kquant_scheme(const std::string& scheme);
/// "q4_k" -> KQuant::kQ4K, ...; Error(kInvalidArgument) for another name.
kernels::KQuant kquant_from_name(const std::string& type);
/// The type name (q4_k, q5_k, q6_k, q5_0, q5_1) of matrix `tensor` ("blk.3.attn_v.weight")
/// under `scheme`; a plain type name (not a K scheme) is returned unchanged.
std::string kquant_plan_type(const std::string& scheme, const std::string& tensor, int n_layers);
/// llama-quantize's fallback for rows that are not whole 256-value super-blocks:
/// q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8 (Q8_0); others unchanged.
std::string kquant_fallback(const std::string& type);

}  // namespace piquant
