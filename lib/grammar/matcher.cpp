// The grammar matcher: a set of parse stacks (llama.cpp's pushdown automaton), each stack a
// linked list of interned (position, parent) nodes, so pushing and popping copy nothing and equal
// stacks are equal numbers.
//
// The token mask walks a byte trie of the vocabulary depth first, carrying the state reached by
// the bytes of the path so far: a subtree is cut as soon as no stack survives, so a token costs
// only the part of its bytes not shared with a token already tried, and whole branches of the
// vocabulary (every token starting with a letter where only a digit may follow) cost one step.
// States (stack sets + an unfinished UTF-8 character) are interned and cache their successor per
// byte: a lazily built DFA over the configurations the generation actually visits, so inside a
// JSON string, where nearly every token fits, the walk is one table lookup per trie node; and
// the whole masks of the last few states are kept, since the same state recurs within a
// generation (every token inside a string starts from the same one).
// Bytes of a UTF-8 character are gathered before the stacks advance; a token that ends inside a
// character is allowed when some completion of it matches a class at a stack top.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <tuple>
#include <unordered_map>

#include "grammar/grammar_impl.hpp"
#include "piquant/error.hpp"

namespace piquant {

using grammar::Op;

struct GrammarVocab::Impl {
  size_t n_vocab = 0;
  // Trie: the children of a node are the contiguous nodes [first_child, first_child + n_children).
  struct Node {
    uint32_t first_child = 0, n_children = 0;
    uint32_t first_token = 0, n_tokens = 0;  // tokens ending here: tokens[first_token...]
    uint8_t byte = 0;
  };
  std::vector<Node> nodes;
  std::vector<TokenId> tokens;
  std::vector<TokenId> end_tokens;    // end-of-generation tokens
  std::vector<uint8_t> is_end;        // per id
  std::vector<uint32_t> bytes_offset; // per id + 1, into blob
  std::string blob;
  std::string_view bytes(TokenId id) const {
    return std::string_view(blob).substr(bytes_offset[id], bytes_offset[id + 1] - bytes_offset[id]);
  }
};

GrammarVocab::GrammarVocab(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GrammarVocab::~GrammarVocab() = default;
size_t GrammarVocab::size() const { return impl_->n_vocab; }

std::shared_ptr<const GrammarVocab> GrammarVocab::build(const Tokenizer& tok) {
  auto v = std::make_unique<Impl>();
  const size_t n = tok.vocab_size();
  v->n_vocab = n;
  v->is_end.assign(n, 0);
  // A normal token as the predecessor: SentencePiece then keeps a piece's leading space, as it
  // does everywhere but at the start of a text.
  TokenId prev = -1;
  for (size_t i = 0; i < n && prev < 0; ++i) {
    if (tok.kind(static_cast<TokenId>(i)) == TokenKind::kNormal) prev = static_cast<TokenId>(i);
  }
  v->bytes_offset.reserve(n + 1);
  std::vector<std::pair<std::string_view, TokenId>> sorted;
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<TokenId>(i);
    v->bytes_offset.push_back(static_cast<uint32_t>(v->blob.size()));
    if (tok.is_end_of_generation(id)) {
      v->is_end[i] = 1;
      v->end_tokens.push_back(id);
      continue;
    }
    const TokenKind k = tok.kind(id);
    if (k == TokenKind::kControl || k == TokenKind::kUnused || k == TokenKind::kUnknown) continue;
    v->blob += tok.token_bytes(id, prev);
  }
  v->bytes_offset.push_back(static_cast<uint32_t>(v->blob.size()));
  for (size_t i = 0; i < n; ++i) {
    const std::string_view b = v->bytes(static_cast<TokenId>(i));
    if (!b.empty()) sorted.push_back({b, static_cast<TokenId>(i)});
  }
  std::sort(sorted.begin(), sorted.end());
  // Build depth first; each node's children are allocated together so they are contiguous.
  v->nodes.emplace_back();
  struct Work { uint32_t node; size_t lo, hi, depth; };
  std::vector<Work> stack{{0, 0, sorted.size(), 0}};
  while (!stack.empty()) {
    const Work w = stack.back();
    stack.pop_back();
    size_t i = w.lo;
    v->nodes[w.node].first_token = static_cast<uint32_t>(v->tokens.size());
    while (i < w.hi && sorted[i].first.size() == w.depth) v->tokens.push_back(sorted[i++].second);
    v->nodes[w.node].n_tokens = static_cast<uint32_t>(v->tokens.size()) - v->nodes[w.node].first_token;
    std::vector<Work> kids;
    while (i < w.hi) {
      const auto b = static_cast<uint8_t>(sorted[i].first[w.depth]);
      size_t j = i;
      while (j < w.hi && static_cast<uint8_t>(sorted[j].first[w.depth]) == b) ++j;
      kids.push_back({0, i, j, w.depth + 1});
      i = j;
    }
    v->nodes[w.node].first_child = static_cast<uint32_t>(v->nodes.size());
    v->nodes[w.node].n_children = static_cast<uint32_t>(kids.size());
    for (Work& k : kids) {
      k.node = static_cast<uint32_t>(v->nodes.size());
      Impl::Node nd;
      nd.byte = static_cast<uint8_t>(sorted[k.lo].first[w.depth]);
      v->nodes.push_back(nd);
    }
    for (auto it = kids.rbegin(); it != kids.rend(); ++it) stack.push_back(*it);
  }
  return std::make_shared<const GrammarVocab>(std::move(v));
}

// --- matcher -------------------------------------------------------------------------------------

struct GrammarMatcher::Impl {
  std::shared_ptr<const Grammar> grammar_ptr;
  std::shared_ptr<const GrammarVocab> vocab_ptr;
  const Grammar::Impl& g;
  const GrammarVocab::Impl& v;
  std::vector<std::vector<uint32_t>> alt_starts;  // per rule

  // Stack nodes, interned: one index per (position, parent), so equal stacks are equal indices.
  struct Node {
    uint32_t pos;
    int32_t parent;
  };
  std::vector<Node> nodes;
  std::unordered_map<uint64_t, int32_t> node_ids;

  // A state: the set of stacks (sorted node indices; -1 the empty stack, i.e. the grammar may end
  // here) plus an unfinished UTF-8 character. States are interned too, and each caches its
  // successor per byte, so the walk over the vocabulary trie becomes mostly table lookups once
  // a state has been seen (string contents, digits, whitespace recur at every token).
  struct State {
    std::vector<int32_t> heads;
    uint32_t partial_val = 0;
    int partial_rem = 0;
    bool live = false;                 // some stack can still take a character
    std::vector<int32_t> next;         // 256 successors: kUnknown, kDead or a state index
  };
  static constexpr int32_t kUnknown = -2, kDead = -1;
  std::vector<State> states;
  std::map<std::tuple<std::vector<int32_t>, uint32_t, int>, int32_t> state_ids;
  int32_t cur = 0;
  static constexpr size_t kMaxStates = 4096;  // (1 KiB each) then the caches start over

  // Whole masks of recent states (the state inside a string, after a comma, ... recurs at many
  // tokens of one generation); cleared when full.
  std::unordered_map<int32_t, std::pair<std::vector<uint8_t>, size_t>> mask_cache;
  static constexpr size_t kMaxCachedMasks = 16;

  std::vector<int32_t> scratch;
  uint8_t* allowed = nullptr;
  size_t n_allowed = 0;

  Impl(std::shared_ptr<const Grammar> gp, std::shared_ptr<const GrammarVocab> vp)
      : grammar_ptr(std::move(gp)), vocab_ptr(std::move(vp)), g(grammar_ptr->impl()), v(vocab_ptr->impl()) {
    alt_starts.resize(g.rule_start.size());
    for (size_t r = 0; r < g.rule_start.size(); ++r) {
      uint32_t p = g.rule_start[r];
      alt_starts[r].push_back(p);
      for (; g.elems[p].op != Op::kEnd; ++p) {
        if (g.elems[p].op == Op::kAlt) alt_starts[r].push_back(p + 1);
      }
    }
    scratch.clear();
    expand_rule(g.root, -1);  // the root rule as if referenced from an empty stack
    cur = intern(scratch, 0, 0);
  }

  bool at_alt_end(uint32_t pos) const {
    const Op op = g.elems[pos].op;
    return op == Op::kEnd || op == Op::kAlt;
  }
  int32_t node(uint32_t pos, int32_t parent) {
    const uint64_t key = (uint64_t{pos} << 32) | static_cast<uint32_t>(parent + 1);
    auto [it, fresh] = node_ids.emplace(key, static_cast<int32_t>(nodes.size()));
    if (fresh) nodes.push_back({pos, parent});
    return it->second;
  }
  int32_t intern(std::vector<int32_t> heads, uint32_t pval, int prem) {
    std::sort(heads.begin(), heads.end());
    heads.erase(std::unique(heads.begin(), heads.end()), heads.end());
    auto key = std::make_tuple(std::move(heads), pval, prem);
    auto it = state_ids.find(key);
    if (it != state_ids.end()) return it->second;
    State st;
    st.heads = std::get<0>(key);
    st.partial_val = pval;
    st.partial_rem = prem;
    st.live = prem != 0 || (!st.heads.empty() && st.heads.back() >= 0);
    st.next.assign(256, kUnknown);
    const auto id = static_cast<int32_t>(states.size());
    states.push_back(std::move(st));
    state_ids.emplace(std::move(key), id);
    return id;
  }
  // Adds to scratch the stacks reached from node idx (whose position may be a rule reference or
  // an alternative's end) down to ones whose top is a character class. No left recursion
  // (refused at parse time) means this terminates.
  void expand(int32_t idx) {
    while (true) {
      if (idx < 0) {
        scratch.push_back(-1);
        return;
      }
      const Node n = nodes[static_cast<size_t>(idx)];
      const grammar::Elem& e = g.elems[n.pos];
      if (e.op == Op::kEnd || e.op == Op::kAlt) {
        idx = n.parent;
        continue;
      }
      if (e.op != Op::kRuleRef) {
        scratch.push_back(idx);
        return;
      }
      const int32_t cont = at_alt_end(n.pos + 1) ? n.parent : node(n.pos + 1, n.parent);
      expand_rule(e.value, cont);
      return;
    }
  }
  void expand_rule(uint32_t rule, int32_t cont) {
    for (uint32_t p : alt_starts[rule]) {
      if (at_alt_end(p)) expand(cont);
      else expand(node(p, cont));
    }
  }
  const grammar::CharClass& top_class(int32_t head) const {
    return g.classes[static_cast<size_t>(g.class_at[nodes[static_cast<size_t>(head)].pos])];
  }

  // One byte on top of the UTF-8 state (val, rem). Returns 0: invalid, 1: partial, 2: complete.
  static int utf8_step(uint8_t byte, uint32_t& val, int& rem) {
    if (rem == 0) {
      if (byte < 0x80) { val = byte; return 2; }
      if ((byte & 0xE0) == 0xC0 && byte >= 0xC2) { val = byte & 0x1Fu; rem = 1; return 1; }
      if ((byte & 0xF0) == 0xE0) { val = byte & 0x0Fu; rem = 2; return 1; }
      if ((byte & 0xF8) == 0xF0 && byte <= 0xF4) { val = byte & 0x07u; rem = 3; return 1; }
      return 0;
    }
    if ((byte & 0xC0) != 0x80) return 0;
    // Second byte of a 3/4-byte form: no overlong encodings, surrogates or code points > U+10FFFF.
    if (rem == 2 && val < 0x10 && ((val == 0 && byte < 0xA0) || (val == 0xD && byte >= 0xA0))) return 0;
    if (rem == 3 && ((val == 0 && byte < 0x90) || (val == 4 && byte >= 0x90))) return 0;
    val = (val << 6) | (byte & 0x3Fu);
    return --rem == 0 ? 2 : 1;
  }

  // The state after one more byte, or kDead.
  int32_t step(int32_t s, uint8_t byte) {
    int32_t cached = states[static_cast<size_t>(s)].next[byte];
    if (cached != kUnknown) return cached;
    const State& st = states[static_cast<size_t>(s)];
    uint32_t val = st.partial_val;
    int rem = st.partial_rem;
    const int kind = utf8_step(byte, val, rem);
    int32_t result = kDead;
    scratch.clear();
    if (kind == 1) {
      // The code points this prefix can still become (overlong forms are refused above).
      const uint32_t lo = std::max(val << (6 * rem), rem == 1 ? 0x80u : rem == 2 ? 0x800u : 0x10000u);
      const uint32_t hi = std::min((val << (6 * rem)) | ((1u << (6 * rem)) - 1), 0x10FFFFu);
      bool feasible = false;
      for (int32_t h : st.heads) feasible = feasible || (h >= 0 && top_class(h).match_range(lo, hi));
      if (feasible) scratch = st.heads;
      if (feasible) result = intern(scratch, val, rem);
    } else if (kind == 2) {
      const std::vector<int32_t> heads = st.heads;  // intern() may move states
      for (int32_t h : heads) {
        if (h < 0) continue;
        const grammar::CharClass& cc = top_class(h);
        if (!cc.match(val)) continue;
        const int32_t parent = nodes[static_cast<size_t>(h)].parent;
        if (at_alt_end(cc.next)) expand(parent);
        else expand(node(cc.next, parent));
      }
      if (!scratch.empty()) result = intern(scratch, 0, 0);
    }
    states[static_cast<size_t>(s)].next[byte] = result;
    return result;
  }

  void walk(uint32_t tnode, int32_t s) {
    const GrammarVocab::Impl::Node& tn = v.nodes[tnode];
    for (uint32_t c = tn.first_child; c < tn.first_child + tn.n_children; ++c) {
      const GrammarVocab::Impl::Node& cn = v.nodes[c];
      const int32_t ns = step(s, cn.byte);
      if (ns < 0) continue;
      for (uint32_t t = cn.first_token; t < cn.first_token + cn.n_tokens; ++t) allowed[v.tokens[t]] = 1;
      n_allowed += cn.n_tokens;
      if (cn.n_children != 0 && states[static_cast<size_t>(ns)].live) walk(c, ns);
    }
  }

  bool can_end(int32_t s) const {
    const State& st = states[static_cast<size_t>(s)];
    return st.partial_rem == 0 && !st.heads.empty() && st.heads.front() == -1;
  }

  // Starts the caches over from the current state when they have grown large.
  void trim() {
    if (states.size() < kMaxStates) return;
    const State keep = states[static_cast<size_t>(cur)];
    std::vector<Node> old_nodes = std::move(nodes);
    nodes.clear();
    node_ids.clear();
    mask_cache.clear();
    states.clear();
    state_ids.clear();
    auto copy = [&](int32_t i) {  // iteratively: stacks may be thousands deep
      std::vector<uint32_t> chain;
      for (; i >= 0; i = old_nodes[static_cast<size_t>(i)].parent) chain.push_back(old_nodes[static_cast<size_t>(i)].pos);
      int32_t n = -1;
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) n = node(*it, n);
      return n;
    };
    std::vector<int32_t> heads;
    for (int32_t h : keep.heads) heads.push_back(copy(h));
    cur = intern(heads, keep.partial_val, keep.partial_rem);
  }

  size_t compute_mask(uint8_t* out, bool allow_end) {
    trim();
    auto hit = mask_cache.find(cur);
    if (hit != mask_cache.end()) {
      std::copy(hit->second.first.begin(), hit->second.first.end(), out);
      n_allowed = hit->second.second;
    } else {
      allowed = out;
      n_allowed = 0;
      std::fill(out, out + v.n_vocab, uint8_t{0});
      walk(0, cur);
      if (mask_cache.size() >= kMaxCachedMasks) mask_cache.clear();
      mask_cache.emplace(cur, std::make_pair(std::vector<uint8_t>(out, out + v.n_vocab), n_allowed));
    }
    if (allow_end && can_end(cur)) {
      for (TokenId t : v.end_tokens) out[t] = 1;
      n_allowed += v.end_tokens.size();
    }
    return n_allowed;
  }

  // Advances over bytes; false (state unchanged) when rejected.
  bool accept_bytes(std::string_view bytes) {
    int32_t s = cur;
    for (char ch : bytes) {
      s = step(s, static_cast<uint8_t>(ch));
      if (s < 0) return false;
    }
    cur = s;
    return true;
  }
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar,
                               std::shared_ptr<const GrammarVocab> vocab) {
  if (!grammar || !vocab) throw Error(ErrorCode::kInvalidArgument, "GrammarMatcher: grammar or vocabulary is null");
  impl_ = std::make_unique<Impl>(std::move(grammar), std::move(vocab));
}
GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(GrammarMatcher&&) noexcept = default;
GrammarMatcher& GrammarMatcher::operator=(GrammarMatcher&&) noexcept = default;

size_t GrammarMatcher::compute_mask(std::vector<uint8_t>& allowed, bool allow_end) {
  allowed.resize(impl_->v.n_vocab);
  return impl_->compute_mask(allowed.data(), allow_end);
}

size_t GrammarMatcher::mask_logits(float* logits, size_t n_vocab, bool allow_end) {
  thread_local std::vector<uint8_t> allowed;
  const size_t n = compute_mask(allowed, allow_end);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n_vocab; ++i) {
    if (i >= allowed.size() || !allowed[i]) logits[i] = ninf;
  }
  return n;
}

void GrammarMatcher::accept_token(TokenId id) {
  const GrammarVocab::Impl& v = impl_->v;
  if (id < 0 || static_cast<size_t>(id) >= v.n_vocab) {
    throw Error(ErrorCode::kOutOfRange, "grammar: token id " + std::to_string(id) + " is outside the vocabulary");
  }
  if (v.is_end[static_cast<size_t>(id)]) {
    if (!impl_->can_end(impl_->cur)) {
      throw Error(ErrorCode::kInvalidArgument, "grammar: end-of-generation token " + std::to_string(id) +
                                                   " before the grammar is complete");
    }
    return;
  }
  const std::string_view b = v.bytes(id);
  if (b.empty() || !impl_->accept_bytes(b)) {
    throw Error(ErrorCode::kInvalidArgument, "grammar: token " + std::to_string(id) + " does not fit the grammar here");
  }
}

bool GrammarMatcher::accept_text(std::string_view text) { return impl_->accept_bytes(text); }
bool GrammarMatcher::can_end() const { return impl_->can_end(impl_->cur); }
bool GrammarMatcher::is_complete() const {
  return impl_->can_end(impl_->cur) && !impl_->states[static_cast<size_t>(impl_->cur)].live;
}

}  // namespace piquant
