// The grammar matcher: a set of parse stacks (llama.cpp's pushdown automaton), each stack a
// linked list of (position, parent) nodes in one arena so pushing and popping copy nothing.
//
// The token mask walks a byte trie of the vocabulary depth first, carrying the stacks reached by
// the bytes of the path so far: a subtree is cut as soon as no stack survives, so a token costs
// only the part of its bytes not shared with a token already tried, and whole branches of the
// vocabulary (every token starting with a letter where only a digit may follow) cost one step.
// Bytes of a UTF-8 character are gathered before the stacks advance; a token that ends inside a
// character is allowed when some completion of it matches a class at a stack top. The nodes and
// stack lists made while walking live above a mark and are dropped on the way back up.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

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

  struct Node {
    uint32_t pos;
    int32_t parent;
  };
  std::vector<Node> arena;
  std::vector<int32_t> heads;  // the current stacks are heads[0, n_heads); -1: the empty stack
  size_t n_heads = 0;
  uint32_t partial_val = 0;    // an unfinished UTF-8 character at the end of the text so far
  int partial_rem = 0;
  size_t seg_begin = 0;        // where the list being built by expand starts

  // Mask walk output.
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
    // The start: the root rule as if referenced from an empty stack.
    seg_begin = 0;
    expand_rule(g.root, -1);
    n_heads = heads.size();
  }

  bool at_alt_end(uint32_t pos) const {
    const Op op = g.elems[pos].op;
    return op == Op::kEnd || op == Op::kAlt;
  }
  int32_t new_node(uint32_t pos, int32_t parent) {
    arena.push_back({pos, parent});
    return static_cast<int32_t>(arena.size() - 1);
  }
  void push_unique(int32_t idx) {
    for (size_t i = seg_begin; i < heads.size(); ++i) {
      const int32_t h = heads[i];
      if (h == idx) return;
      if (h >= 0 && idx >= 0 && arena[h].pos == arena[idx].pos && arena[h].parent == arena[idx].parent) return;
    }
    heads.push_back(idx);
  }
  // Pushes the stacks reached from `idx` (a node whose position may be a rule reference or an
  // alternative's end) down to ones whose top is a character class. No left recursion (refused
  // at parse time) means this terminates.
  void expand(int32_t idx) {
    while (true) {
      if (idx < 0) {
        push_unique(-1);
        return;
      }
      const Node n = arena[static_cast<size_t>(idx)];
      const grammar::Elem& e = g.elems[n.pos];
      if (e.op == Op::kEnd || e.op == Op::kAlt) {
        idx = n.parent;
        continue;
      }
      if (e.op != Op::kRuleRef) {
        push_unique(idx);
        return;
      }
      const int32_t cont = at_alt_end(n.pos + 1) ? n.parent : new_node(n.pos + 1, n.parent);
      expand_rule(e.value, cont);
      return;
    }
  }
  void expand_rule(uint32_t rule, int32_t cont) {
    for (uint32_t p : alt_starts[rule]) {
      if (at_alt_end(p)) expand(cont);
      else expand(new_node(p, cont));
    }
  }
  // Appends the stacks after code point cp from heads[b, e).
  void advance(size_t b, size_t e, uint32_t cp) {
    seg_begin = heads.size();
    for (size_t i = b; i < e; ++i) {
      const int32_t h = heads[i];
      if (h < 0) continue;
      const Node n = arena[static_cast<size_t>(h)];
      const grammar::CharClass& cc = g.classes[static_cast<size_t>(g.class_at[n.pos])];
      if (!cc.match(cp)) continue;
      if (at_alt_end(cc.next)) expand(n.parent);
      else expand(new_node(cc.next, n.parent));
    }
  }
  bool partial_feasible(size_t b, size_t e, uint32_t val, int rem) const {
    // The code points this prefix can still become (overlong forms are refused by utf8_step).
    const uint32_t lo = std::max(val << (6 * rem), rem == 1 ? 0x80u : rem == 2 ? 0x800u : 0x10000u);
    const uint32_t hi = std::min((val << (6 * rem)) | ((1u << (6 * rem)) - 1), 0x10FFFFu);
    for (size_t i = b; i < e; ++i) {
      const int32_t h = heads[i];
      if (h < 0) continue;
      const grammar::CharClass& cc = g.classes[static_cast<size_t>(g.class_at[arena[static_cast<size_t>(h)].pos])];
      if (cc.match_range(lo, hi)) return true;
    }
    return false;
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

  void walk(uint32_t tnode, size_t b, size_t e, uint32_t pval, int prem) {
    const GrammarVocab::Impl::Node& tn = v.nodes[tnode];
    for (uint32_t c = tn.first_child; c < tn.first_child + tn.n_children; ++c) {
      const GrammarVocab::Impl::Node& cn = v.nodes[c];
      uint32_t val = pval;
      int rem = prem;
      const int step = utf8_step(cn.byte, val, rem);
      if (step == 0) continue;
      const size_t arena_mark = arena.size(), heads_mark = heads.size();
      size_t nb = b, ne = e;
      if (step == 2) {
        advance(b, e, val);
        nb = heads_mark;
        ne = heads.size();
        if (nb == ne) continue;  // nothing added to the arena either
      } else if (!partial_feasible(b, e, val, rem)) {
        continue;
      }
      for (uint32_t t = cn.first_token; t < cn.first_token + cn.n_tokens; ++t) {
        allowed[v.tokens[t]] = 1;
      }
      n_allowed += cn.n_tokens;
      if (cn.n_children != 0) {
        bool live = step == 1;
        for (size_t i = nb; i < ne && !live; ++i) live = heads[i] >= 0;
        if (live) walk(c, nb, ne, step == 2 ? 0 : val, step == 2 ? 0 : rem);
      }
      arena.resize(arena_mark);
      heads.resize(heads_mark);
    }
  }

  bool can_end() const {
    if (partial_rem != 0) return false;
    for (size_t i = 0; i < n_heads; ++i) if (heads[i] < 0) return true;
    return false;
  }

  size_t compute_mask(uint8_t* out, bool allow_end) {
    allowed = out;
    n_allowed = 0;
    std::fill(out, out + v.n_vocab, uint8_t{0});
    heads.resize(n_heads);
    const size_t arena_mark = arena.size();
    walk(0, 0, n_heads, partial_val, partial_rem);
    arena.resize(arena_mark);
    heads.resize(n_heads);
    if (allow_end && can_end()) {
      for (TokenId t : v.end_tokens) out[t] = 1;
      n_allowed += v.end_tokens.size();
    }
    return n_allowed;
  }

  // Advances the persistent state over bytes; false (state unchanged) when rejected.
  bool accept_bytes(std::string_view bytes) {
    const std::vector<Node> arena0 = arena;
    const std::vector<int32_t> heads0(heads.begin(), heads.begin() + static_cast<long>(n_heads));
    const uint32_t pv0 = partial_val;
    const int pr0 = partial_rem;
    auto undo = [&] {
      arena = arena0;
      heads = heads0;
      n_heads = heads0.size();
      partial_val = pv0;
      partial_rem = pr0;
      return false;
    };
    heads.resize(n_heads);
    for (char ch : bytes) {
      const int step = utf8_step(static_cast<uint8_t>(ch), partial_val, partial_rem);
      if (step == 0) return undo();
      if (step == 1) {
        if (!partial_feasible(0, n_heads, partial_val, partial_rem)) return undo();
        continue;
      }
      advance(0, n_heads, partial_val);
      heads.erase(heads.begin(), heads.begin() + static_cast<long>(n_heads));
      n_heads = heads.size();
      partial_val = 0;
      if (n_heads == 0) return undo();
    }
    compact();
    return true;
  }

  // Copies the nodes the current stacks use into a fresh arena (the rest is garbage).
  void compact() {
    std::vector<Node> fresh;
    std::vector<int32_t> remap(arena.size(), -1);
    std::function<int32_t(int32_t)> copy = [&](int32_t i) -> int32_t {
      if (i < 0) return -1;
      if (remap[static_cast<size_t>(i)] >= 0) return remap[static_cast<size_t>(i)];
      const int32_t parent = copy(arena[static_cast<size_t>(i)].parent);
      fresh.push_back({arena[static_cast<size_t>(i)].pos, parent});
      return remap[static_cast<size_t>(i)] = static_cast<int32_t>(fresh.size() - 1);
    };
    for (size_t i = 0; i < n_heads; ++i) heads[i] = copy(heads[i]);
    arena = std::move(fresh);
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
    if (!impl_->can_end()) {
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
bool GrammarMatcher::can_end() const { return impl_->can_end(); }
bool GrammarMatcher::is_complete() const {
  if (!impl_->can_end()) return false;
  for (size_t i = 0; i < impl_->n_heads; ++i) if (impl_->heads[i] >= 0) return false;
  return true;
}

}  // namespace piquant
