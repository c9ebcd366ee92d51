#include "convert/kquant_plan.hpp"

#include <cstdlib>

#include "piquant/error.hpp"

namespace piquant {
namespace {

// Layer index of "blk.N.something", or -1.
int layer_of(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

bool ends_with(const std::string& s, const char* suf) {
  const std::string t(suf);
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

// llama.cpp's choice of the layers that get more bits in its _M mixes.
bool more_bits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

}  // namespace

bool is_kquant_scheme(const std::string& s) {
  return s == "q4_k" || s == "q5_k" || s == "q6_k" || s == "q5_0" || s == "q5_1" ||
         s == "q4_k_m" || s == "q5_k_m";
}

kernels::KQuant kquant_from_name(const std::string& t) {
  using kernels::KQuant;
  if (t == "q4_k") return KQuant::kQ4K;
  if (t == "q5_k") return KQuant::kQ5K;
  if (t == "q6_k") return KQuant::kQ6K;
  if (t == "q5_0") return KQuant::kQ5_0;
  if (t == "q5_1") return KQuant::kQ5_1;
  throw Error(ErrorCode::kInvalidArgument, "'" + t + "' is not a K-quant type");
}

std::string kquant_plan_type(const std::string& scheme, const std::string& tensor, int n_layers) {
  if (scheme != "q4_k_m" && scheme != "q5_k_m") return scheme;
  const std::string base = scheme == "q4_k_m" ? "q4_k" : "q5_k";
  if (tensor == "output.weight") return "q6_k";
  if (ends_with(tensor, ".attn_v.weight") || ends_with(tensor, ".ffn_down.weight")) {
    const int l = layer_of(tensor);
    if (l >= 0 && more_bits(l, n_layers)) return "q6_k";
  }
  return base;
}

std::string kquant_fallback(const std::string& type) {
  if (type == "q4_k") return "q5_0";
  if (type == "q5_k") return "q5_1";
  if (type == "q6_k") return "q8";
  return type;
}

}  // namespace piquant
