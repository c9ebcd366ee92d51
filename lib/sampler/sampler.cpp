// Sampling pipeline, in llama.cpp's order: penalties -> top-k -> top-p -> min-p -> temperature
// -> draw. Greedy when temperature <= 0. The generator is splitmix64/xorshift: seeded, portable,
// identical on every platform (std::*_distribution is not).
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "piquant/error.hpp"
#include "piquant/sampler.hpp"

namespace piquant {

TokenId argmax(const float* logits, size_t n) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<TokenId>(best);
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

Sampler::Sampler(const SamplerOptions& options) : options_(options), state_(options.seed) {
  if (!(options.top_p > 0.0f)) {
    throw Error(ErrorCode::kInvalidArgument, "sampler: top_p must be > 0 (got " +
                                                 std::to_string(options.top_p) + ")");
  }
  if (std::isnan(options.temperature)) {
    throw Error(ErrorCode::kInvalidArgument, "sampler: temperature is NaN");
  }
}

void Sampler::reset() {
  state_ = options_.seed;
  history_.clear();
}

void Sampler::accept(TokenId id) { history_.push_back(id); }

float Sampler::next_uniform() {
  return static_cast<float>(splitmix64(state_) >> 40) / static_cast<float>(1ull << 24);
}

TokenId Sampler::sample(float* logits, size_t n_vocab) {
  const SamplerOptions& o = options_;
  // Penalties over the recent history.
  if (o.repeat_penalty != 1.0f || o.presence_penalty != 0.0f || o.frequency_penalty != 0.0f) {
    std::unordered_map<TokenId, int> counts;
    const size_t window = o.repeat_last_n < 0 ? history_.size()
                                              : std::min(history_.size(), size_t(o.repeat_last_n));
    for (size_t i = history_.size() - window; i < history_.size(); ++i) counts[history_[i]]++;
    for (const auto& [id, count] : counts) {
      if (id < 0 || static_cast<size_t>(id) >= n_vocab) continue;
      float& l = logits[id];
      if (o.repeat_penalty != 1.0f) l = l > 0 ? l / o.repeat_penalty : l * o.repeat_penalty;
      l -= static_cast<float>(count) * o.frequency_penalty + o.presence_penalty;
    }
  }
  TokenId chosen;
  if (o.temperature <= 0.0f) {
    chosen = argmax(logits, n_vocab);
  } else {
    candidates_.resize(n_vocab);
    for (size_t i = 0; i < n_vocab; ++i) candidates_[i] = {logits[i], static_cast<TokenId>(i)};
    auto by_logit = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t n = n_vocab;
    if (o.top_k > 0 && static_cast<size_t>(o.top_k) < n) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + o.top_k, candidates_.end(),
                        by_logit);
      n = static_cast<size_t>(o.top_k);
    } else {
      std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    // Probabilities at temperature 1 for the top-p / min-p cuts (as llama.cpp).
    const float max_l = candidates_[0].first;
    std::vector<double> p(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i] = std::exp(double(candidates_[i].first - max_l));
    if (o.top_p < 1.0f) {
      double acc = 0;
      size_t keep = n;
      for (size_t i = 0; i < n; ++i) {
        acc += p[i] / sum;
        if (acc >= double(o.top_p)) {
          keep = i + 1;
          break;
        }
      }
      n = keep;
    }
    if (o.min_p > 0.0f) {
      size_t keep = 1;
      while (keep < n && p[keep] >= double(o.min_p)) ++keep;  // p[0] = 1 is the max, so p is relative
      n = keep;
    }
    // Temperature, then draw.
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      p[i] = std::exp(double(candidates_[i].first - max_l) / double(o.temperature));
      total += p[i];
    }
    const double r = static_cast<double>(next_uniform()) * total;
    double acc = 0;
    chosen = candidates_[n - 1].second;
    for (size_t i = 0; i < n; ++i) {
      acc += p[i];
      if (r < acc) {
        chosen = candidates_[i].second;
        break;
      }
    }
  }
  history_.push_back(chosen);
  return chosen;
}

}  // namespace piquant
