#include "dist/shard.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/aligned.hpp"
#include "common/pack.hpp"
#include "dist/collective.hpp"
#include "dist/load_slicer.hpp"
#include "format/gguf.hpp"
#include "load/gguf_model.hpp"
#include "format/mapped_file.hpp"
#include "model/quantize_model.hpp"
#include "piquant/error.hpp"

namespace piquant {

namespace k = kernels;

namespace {

constexpr int kVocabUnit = 8;  // classifier rows per unit: two packed row groups

// Column alignment a split of t's inputs needs: the quantized types' block (32 values, or a
// K-quant's 256-value super-block).
int64_t col_block(const Tensor& t) {
  return is_quantized(t.type) ? static_cast<int64_t>(k::block_values(t.type)) : 1;
}
// Row alignment a split of t's outputs needs: the packing's interleave.
int64_t row_block(const Tensor& t) {
  return is_quantized(t.type) && t.layout == TensorLayout::kPacked ? int64_t{k::kRowInterleave} : 1;
}

// Why n cannot split m, or "" when it can.
std::string split_problem(const Model::Impl& m, int n) {
  const ModelConfig& c = m.config;
  if (n < 1) return "the number of ranks must be at least 1";
  if (c.n_kv_heads % n != 0) {
    return std::to_string(c.n_kv_heads) + " KV heads are not divisible by " + std::to_string(n);
  }
  if (c.hidden_dim % n != 0) {
    return "FFN width " + std::to_string(c.hidden_dim) + " is not divisible by " + std::to_string(n);
  }
  const int64_t hd = c.head_dim, q_rows = int64_t{c.n_heads / n} * hd;
  const int64_t kv_rows = int64_t{c.n_kv_heads / n} * hd, h = c.hidden_dim / n;
  if (static_cast<int64_t>(c.vocab_size) < int64_t{kVocabUnit} * n) {
    return "a vocabulary of " + std::to_string(c.vocab_size) + " is too small for " +
           std::to_string(n) + " classifier slices of 8 rows";
  }
  for (const LayerWeights& l : m.layers) {
    if (q_rows % row_block(l.wq) != 0 || kv_rows % row_block(l.wk) != 0 ||
        kv_rows % row_block(l.wv) != 0) {
      return "a rank's " + std::to_string(q_rows) + " query / " + std::to_string(kv_rows) +
             " KV rows do not align to the packed row groups of 4";
    }
    if (q_rows % col_block(l.wo) != 0) {
      return "a rank's " + std::to_string(q_rows) + " attention-output columns are not whole " +
             std::to_string(col_block(l.wo)) + "-value blocks of " + to_string(l.wo.type);
    }
    if (h % row_block(l.w_gate) != 0 || h % row_block(l.w_up) != 0 ||
        h % col_block(l.w_down) != 0) {
      return "a rank's " + std::to_string(h) + " FFN columns are not whole " +
             std::to_string(std::max(col_block(l.w_down), row_block(l.w_gate))) +
             "-value blocks of " + to_string(l.w_down.type);
    }
  }
  return "";
}

std::shared_ptr<k::AlignedBytes> new_buffer(size_t n,
                                            std::vector<std::shared_ptr<const void>>& storage) {
  auto buf = std::make_shared<k::AlignedBytes>(std::max<size_t>(n, 1));
  storage.push_back(buf);
  return buf;
}

// Gives back the pages of a file mapping this process has read (the source of a column copy):
// they are page cache, and count in our resident set until released. Only for addresses inside
// a file-backed mapping (for anonymous memory MADV_DONTNEED would zero the data).
void release_file_pages(const void* p, size_t n) {
#ifdef __linux__
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {0};
    unsigned long off = 0;
    char dev[16] = {0};
    unsigned long inode = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, &off, dev, &inode) != 6) {
      continue;
    }
    if (a < lo || a >= hi) continue;
    if (inode == 0) return;  // anonymous: never
    const long page = sysconf(_SC_PAGESIZE);
    const uintptr_t first = (a + static_cast<uintptr_t>(page) - 1) / static_cast<uintptr_t>(page) *
                            static_cast<uintptr_t>(page);
    const uintptr_t end = std::min<uintptr_t>(a + n, hi) / static_cast<uintptr_t>(page) *
                          static_cast<uintptr_t>(page);
    if (end > first) madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
    return;
  }
#else
  (void)p;
  (void)n;
#endif
}

// A tensor view of a file this process maps: its bytes mapped again on their own (a private,
// read-only mapping of just the view's pages), so that the whole file's mapping can go. The
// kernel maps pages around a fault that are already in the page cache (fault-around, large
// folios): inside the whole file's mapping that took in the neighbouring ranks' bytes when the
// ranks share a machine (and its page cache); a mapping of the slice alone holds the slice.
class ViewMapper {
 public:
  explicit ViewMapper(const std::string& path) {
#ifdef __linux__
    char real[PATH_MAX];
    if (path.empty() || realpath(path.c_str(), real) == nullptr) return;
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      const size_t slash = line.find('/');
      if (slash == std::string::npos || line.compare(slash, std::string::npos, real) != 0) continue;
      unsigned long lo = 0, hi = 0, off = 0;
      char perms[8] = {0};
      if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx", &lo, &hi, perms, &off) == 4) {
        maps_.push_back({lo, hi, off});
      }
    }
    if (!maps_.empty()) fd_ = ::open(real, O_RDONLY | O_CLOEXEC);
#else
    (void)path;
#endif
  }
  ~ViewMapper() {
    if (fd_ >= 0) ::close(fd_);
  }
  ViewMapper(const ViewMapper&) = delete;
  ViewMapper& operator=(const ViewMapper&) = delete;

  /// t with its data in a mapping of its own (kept alive by `storage`); t itself when its bytes
  /// are not in the file's mapping.
  Tensor map(const Tensor& t, std::vector<std::shared_ptr<const void>>& storage) const {
    if (t.empty() || fd_ < 0) return t;
    const uintptr_t a = reinterpret_cast<uintptr_t>(t.data);
    for (const Range& r : maps_) {
      if (a < r.lo || a + t.bytes() > r.hi) continue;
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      const size_t off = r.off + (a - r.lo), first = off / page * page;
      const size_t len = off + t.bytes() - first;
      void* p = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd_, static_cast<off_t>(first));
      if (p == MAP_FAILED) return t;
      madvise(p, len, MADV_WILLNEED);  // the slice streams in at once
      storage.push_back(std::shared_ptr<const void>(p, [len](const void* q) {
        ::munmap(const_cast<void*>(q), len);
      }));
      Tensor v = t;
      v.data = static_cast<const uint8_t*>(p) + (off - first);
      return v;
    }
    return t;
  }
  bool active() const { return fd_ >= 0; }

  /// Reads t's bytes from the file into dst with pread, so that no page of the file is mapped
  /// into the process for them (a fault in the file's mapping can map a whole 2 MiB folio of
  /// the page cache: the neighbours' bytes). False when t is not in the file's mapping.
  bool read(const Tensor& t, uint8_t* dst) const {
    if (t.empty() || fd_ < 0) return false;
    const uintptr_t a = reinterpret_cast<uintptr_t>(t.data);
    for (const Range& r : maps_) {
      if (a < r.lo || a + t.bytes() > r.hi) continue;
      size_t done = 0, off = r.off + (a - r.lo);
      while (done < t.bytes()) {
        const ssize_t got =
            ::pread(fd_, dst + done, t.bytes() - done, static_cast<off_t>(off + done));
        if (got <= 0) return false;
        done += static_cast<size_t>(got);
      }
      return true;
    }
    return false;
  }

 private:
  struct Range {
    uintptr_t lo, hi, off;
  };
  std::vector<Range> maps_;
  int fd_ = -1;
};

}  // namespace

std::vector<int> valid_splits(const Model::Impl& m, int max_n) {
  std::vector<int> out;
  for (int n = 1; n <= max_n; ++n) {
    if (split_problem(m, n).empty()) out.push_back(n);
  }
  return out;
}

void check_split(const Model::Impl& m, int n) {
  const std::string why = split_problem(m, n);
  if (why.empty()) return;
  std::string ok;
  for (int v : valid_splits(m, std::max(m.config.n_kv_heads, 1))) {
    ok += (ok.empty() ? "" : ", ") + std::to_string(v);
  }
  throw Error(ErrorCode::kInvalidArgument,
              std::to_string(n) + " ranks cannot split this model (" + why +
                  "); numbers of ranks that can: " + ok);
}

std::pair<int, int> vocab_range(int vocab, int rank, int n) {
  const int units = vocab / kVocabUnit, per = units / n;
  const int r0 = rank * per * kVocabUnit;
  const int r1 = rank + 1 == n ? vocab : (rank + 1) * per * kVocabUnit;
  return {r0, r1};
}

Tensor slice_rows(const Tensor& t, int64_t r0, int64_t r1) {
  if (r0 < 0 || r1 > t.rows || r0 >= r1 || r0 % row_block(t) != 0) {
    throw Error(ErrorCode::kInternal, t.name + ": bad row slice [" + std::to_string(r0) + ", " +
                                          std::to_string(r1) + ")");
  }
  Tensor before = t;
  before.rows = r0;
  Tensor s = t;
  s.rows = r1 - r0;
  s.data = static_cast<const uint8_t*>(t.data) + before.bytes();
  return s;
}

namespace {
// Bytes copied by the calls below, for shard_model's count: per thread, so two models sharded
// at once on different threads do not mix their counts.
thread_local size_t g_copied = 0;
}  // namespace

namespace {
// A copy of t's bytes (a small tensor of the file: read with pread where it can).
Tensor copy_from(const ViewMapper& mapper, const Tensor& t,
                 std::vector<std::shared_ptr<const void>>& storage) {
  if (t.empty()) return t;
  auto buf = new_buffer(t.bytes(), storage);
  if (!mapper.read(t, buf->data())) std::memcpy(buf->data(), t.data, t.bytes());
  g_copied += t.bytes();
  Tensor s = t;
  s.data = buf->data();
  return s;
}
}  // namespace

Tensor copy_tensor(const Tensor& t, std::vector<std::shared_ptr<const void>>& storage) {
  if (t.empty()) return t;
  auto buf = new_buffer(t.bytes(), storage);
  std::memcpy(buf->data(), t.data, t.bytes());
  g_copied += t.bytes();
  Tensor s = t;
  s.data = buf->data();
  return s;
}

Tensor copy_cols(const Tensor& t, int64_t c0, int64_t c1,
                 std::vector<std::shared_ptr<const void>>& storage) {
  const int64_t blk = col_block(t);
  if (c0 < 0 || c1 > t.cols || c0 >= c1 || c0 % blk != 0 || c1 % blk != 0) {
    throw Error(ErrorCode::kInternal, t.name + ": bad column slice [" + std::to_string(c0) + ", " +
                                          std::to_string(c1) + ")");
  }
  Tensor s = t;
  s.cols = c1 - c0;
  auto buf = new_buffer(s.bytes(), storage);
  const auto* src = static_cast<const uint8_t*>(t.data);
  uint8_t* dst = buf->data();
  size_t n_runs, run_stride, run_off, run_len;  // copy n_runs runs of run_len bytes
  const auto wt = t.type;
  if (!is_quantized(t.type)) {
    const size_t es = t.type == DType::kF32 ? 4 : 2;
    n_runs = static_cast<size_t>(t.rows);
    run_stride = static_cast<size_t>(t.cols) * es;
    run_off = static_cast<size_t>(c0) * es;
    run_len = static_cast<size_t>(c1 - c0) * es;
  } else if (t.layout == TensorLayout::kPacked) {
    const size_t bv = k::block_values(wt);  // 32, or 256 for the K-quants
    const size_t gb = k::packed_size(wt, k::kRowInterleave, bv);  // one group block
    n_runs = (static_cast<size_t>(t.rows) + k::kRowInterleave - 1) / k::kRowInterleave;
    run_stride = static_cast<size_t>(t.cols) / bv * gb;
    run_off = static_cast<size_t>(c0) / bv * gb;
    run_len = static_cast<size_t>(c1 - c0) / bv * gb;
  } else {
    const size_t bv = k::block_values(wt);
    const size_t bb = k::row_bytes(wt, bv);
    n_runs = static_cast<size_t>(t.rows);
    run_stride = k::row_bytes(wt, static_cast<size_t>(t.cols));
    run_off = static_cast<size_t>(c0) / bv * bb;
    run_len = static_cast<size_t>(c1 - c0) / bv * bb;
  }
  for (size_t i = 0; i < n_runs; ++i) {
    std::memcpy(dst + i * run_len, src + i * run_stride + run_off, run_len);
  }
  release_file_pages(t.data, t.bytes());
  g_copied += s.bytes();
  s.data = dst;
  return s;
}

namespace {

// This rank's heads, hidden columns and classifier rows.
ShardInfo shard_info(const ModelConfig& c, int rank, int n) {
  ShardInfo s;
  s.rank = rank;
  s.n_ranks = n;
  s.n_heads = c.n_heads / n;
  s.n_kv_heads = c.n_kv_heads / n;
  s.hidden_dim = c.hidden_dim / n;
  std::tie(s.vocab0, s.vocab1) = vocab_range(c.vocab_size, rank, n);
  return s;
}

}  // namespace

std::unique_ptr<Model::Impl> shard_model(const Model::Impl& full, int rank, int n,
                                         std::shared_ptr<Collective> comm) {
  check_split(full, n);
  if (rank < 0 || rank >= n) {
    throw Error(ErrorCode::kInvalidArgument, "rank " + std::to_string(rank) + " not in [0, " +
                                                 std::to_string(n) + ")");
  }
  if (n > 1 && comm == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "a model split across ranks needs a Collective");
  }
  const ModelConfig& c = full.config;
  g_copied = 0;
  auto m = std::make_unique<Model::Impl>();
  m->path = full.path;
  m->config = c;
  m->rope_layout = full.rope_layout;
  m->tokenizer = full.tokenizer;
  m->source = full.source;
  m->chat_template = full.chat_template;
  m->notices = full.notices;
  m->generation = full.generation;
  m->rope_freqs = full.rope_freqs;
  m->comm = std::move(comm);
  // Row slices of a mapped file (.piq) become mappings of just their pages (ViewMapper); the
  // rest is copied (small tensors; column slices; everything a loader copied or repacked), so
  // the whole model's mapping and buffers go when `full` does.
  const ViewMapper mapper(full.mapped_bytes > 0 ? full.path : std::string());
  const bool mapped = mapper.active();
  auto& st = m->storage;
  auto keep = [&](const Tensor& t) {
    if (t.empty()) return t;
    return mapped && t.bytes() >= 65536 ? mapper.map(t, st) : copy_from(mapper, t, st);
  };
  auto rows = [&](const Tensor& t, int64_t r0, int64_t r1) {
    if (t.empty()) return t;
    const Tensor v = slice_rows(t, r0, r1);
    return mapped ? mapper.map(v, st) : copy_tensor(v, st);
  };
  auto vec = [&](const Tensor& t, int64_t c0, int64_t c1) {  // a bias: [1, width]
    return t.empty() ? t : copy_cols(t, c0, c1, st);
  };

  ShardInfo s = shard_info(c, rank, n);
  const int64_t hd = c.head_dim;
  const int64_t q0 = int64_t{rank} * s.n_heads * hd, q1 = q0 + int64_t{s.n_heads} * hd;
  const int64_t kv0 = int64_t{rank} * s.n_kv_heads * hd, kv1 = kv0 + int64_t{s.n_kv_heads} * hd;
  const int64_t h0 = int64_t{rank} * s.hidden_dim, h1 = h0 + s.hidden_dim;

  m->tok_embd = keep(full.tok_embd);
  m->output_norm = keep(full.output_norm);
  m->output = rows(full.output, s.vocab0, s.vocab1);
  for (const LayerWeights& l : full.layers) {
    LayerWeights o;
    o.attn_norm = keep(l.attn_norm);
    o.wq = rows(l.wq, q0, q1);
    o.wk = rows(l.wk, kv0, kv1);
    o.wv = rows(l.wv, kv0, kv1);
    o.wo = copy_cols(l.wo, q0, q1, st);
    o.bq = vec(l.bq, q0, q1);
    o.bk = vec(l.bk, kv0, kv1);
    o.bv = vec(l.bv, kv0, kv1);
    o.q_norm = keep(l.q_norm);
    o.k_norm = keep(l.k_norm);
    o.ffn_norm = keep(l.ffn_norm);
    o.w_gate = rows(l.w_gate, h0, h1);
    o.w_up = rows(l.w_up, h0, h1);
    o.w_down = copy_cols(l.w_down, h0, h1, st);
    m->layers.push_back(std::move(o));
  }
  if (mapped) m->mapped_bytes = full.mapped_bytes;  // (of the whole file; informative)
  s.copied_bytes = g_copied;
  if (mapped) s.file = full.path;
  m->shard = s;
  return m;
}

std::shared_ptr<const Model> shard_model(const std::shared_ptr<const Model>& full, int rank, int n,
                                         std::shared_ptr<Collective> comm) {
  if (!full) throw Error(ErrorCode::kInvalidArgument, "shard_model: null model");
  return std::make_shared<const Model>(shard_model(full->impl(), rank, n, std::move(comm)));
}

namespace {


// The GGUF loader's hook (load_slicer.hpp): rank r's rows and columns of each tensor, by its
// GGUF name, as shard_model slices a whole model.
class GgufSlicer final : public LoadSlicer {
 public:
  GgufSlicer(std::string path, const ModelConfig& c, int rank, int n,
             std::shared_ptr<Collective> comm)
      : path_(std::move(path)), s_(shard_info(c, rank, n)), comm_(std::move(comm)) {
    const int64_t hd = c.head_dim;
    q0_ = int64_t{rank} * s_.n_heads * hd;
    q1_ = q0_ + int64_t{s_.n_heads} * hd;
    kv0_ = int64_t{rank} * s_.n_kv_heads * hd;
    kv1_ = kv0_ + int64_t{s_.n_kv_heads} * hd;
    h0_ = int64_t{rank} * s_.hidden_dim;
    h1_ = h0_ + s_.hidden_dim;
  }

  RawTensor slice(const std::string& name, bool embedding, const RawTensor& whole) override {
    // The tensors before this one are done (packed, or used in place and faulting back in when
    // read): give back every page of the file mapped so far. Reading a slice maps whole large
    // folios of the page cache (up to 2 MiB), the neighbours' bytes with it, which the loader's
    // release of the slice's own pages leaves mapped.
    if (lo_ < hi_) release_file_pages(lo_, static_cast<size_t>(hi_ - lo_));
    if (!whole.owner && whole.data != nullptr) {  // the file's bytes: where its mapping is
      lo_ = std::min(lo_, whole.data);
      hi_ = std::max(hi_, whole.data + whole.bytes());
    }
    if (name == "token_embd.weight") {
      return embedding ? whole : rows(name, whole, s_.vocab0, s_.vocab1);  // tied classifier
    }
    if (name == "output.weight") return rows(name, whole, s_.vocab0, s_.vocab1);
    if (name.rfind("blk.", 0) != 0) return whole;
    const size_t dot = name.find('.', 4);
    const std::string role = dot == std::string::npos ? "" : name.substr(dot + 1);
    if (role == "attn_q.weight") return rows(name, whole, q0_, q1_);
    if (role == "attn_k.weight" || role == "attn_v.weight") return rows(name, whole, kv0_, kv1_);
    if (role == "attn_output.weight") return cols(name, whole, q0_, q1_);
    if (role == "ffn_gate.weight" || role == "ffn_up.weight") return rows(name, whole, h0_, h1_);
    if (role == "ffn_down.weight") return cols(name, whole, h0_, h1_);
    if (role == "attn_q.bias") return cols(name, whole, q0_, q1_);
    if (role == "attn_k.bias" || role == "attn_v.bias") return cols(name, whole, kv0_, kv1_);
    return whole;  // norms, rope_freqs: whole on every rank
  }

  // Tensors still in the file's mapping (f32 / f16 weights used in place, the embedding, norms)
  // move to mappings of their own bytes (big ones) or copies (small ones), as shard_model does
  // for a .piq file; then every page of the whole file's mapping is released, so that what the
  // rank holds is its slice: the loader's packed copies plus those pages.
  void finish(Model::Impl& m) override {
    const ViewMapper mapper(lo_ < hi_ ? path_ : std::string());
    auto& st = m.storage;
    size_t copied = 0;
    auto fix = [&](Tensor& t) {
      if (t.empty()) return;
      const auto* p = static_cast<const uint8_t*>(t.data);
      if (p < lo_ || p >= hi_) {
        copied += t.bytes();  // the loader's own (packed, widened, a column copy)
      } else if (mapper.active() && t.bytes() >= 65536) {
        t = mapper.map(t, st);
      } else {
        t = copy_from(mapper, t, st);
        copied += t.bytes();
      }
    };
    fix(m.tok_embd);
    fix(m.output_norm);
    fix(m.output);  // (a tied f32 classifier: its rows of the embedding, mapped on their own)
    for (LayerWeights& l : m.layers) {
      for (Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm,
                        &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
        fix(*t);
      }
    }
    if (lo_ < hi_) release_file_pages(lo_, static_cast<size_t>(hi_ - lo_));
    ShardInfo s = s_;
    s.copied_bytes = copied;
    if (mapper.active()) s.file = path_;
    m.shard = s;
    m.comm = comm_;
  }

 private:
  RawTensor rows(const std::string& name, const RawTensor& t, int64_t r0, int64_t r1) const {
    if (r0 < 0 || r1 > t.rows || r0 >= r1) {
      throw Error(ErrorCode::kInternal, name + ": bad row slice [" + std::to_string(r0) + ", " +
                                            std::to_string(r1) + ") of " + std::to_string(t.rows));
    }
    RawTensor s = t;
    s.data = t.data + static_cast<size_t>(r0) * t.row_bytes();
    s.rows = r1 - r0;
    return s;
  }
  RawTensor cols(const std::string& name, const RawTensor& t, int64_t c0, int64_t c1) const {
    const auto bv = static_cast<int64_t>(t.block_values);
    if (c0 < 0 || c1 > t.cols || c0 >= c1) {
      throw Error(ErrorCode::kInternal, name + ": bad column slice [" + std::to_string(c0) +
                                            ", " + std::to_string(c1) + ")");
    }
    if (c0 % bv != 0 || c1 % bv != 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  path_ + ": " + std::to_string(s_.n_ranks) + " ranks cannot split tensor " +
                      name + ": a rank's columns [" + std::to_string(c0) + ", " +
                      std::to_string(c1) + ") are not whole " + std::to_string(bv) +
                      "-value blocks of its GGUF type (convert the file to .piq, or use another "
                      "number of ranks)");
    }
    RawTensor s = t;
    s.cols = c1 - c0;
    const size_t run = s.row_bytes(), stride = t.row_bytes();
    const size_t off = static_cast<size_t>(c0) / t.block_values * t.block_bytes;
    auto buf = std::make_shared<k::AlignedBytes>(std::max<size_t>(s.bytes(), 1));
    for (int64_t r = 0; r < t.rows; ++r) {
      std::memcpy(buf->data() + static_cast<size_t>(r) * run,
                  t.data + static_cast<size_t>(r) * stride + off, run);
    }
    // The source rows' file pages: read once, not needed again.
    if (!t.owner) release_file_pages(t.data, t.bytes());
    s.data = buf->data();
    s.owner = buf;
    return s;
  }

  std::string path_;
  ShardInfo s_;
  std::shared_ptr<Collective> comm_;
  int64_t q0_, q1_, kv0_, kv1_, h0_, h1_;
  const uint8_t* lo_ = reinterpret_cast<const uint8_t*>(UINTPTR_MAX);
  const uint8_t* hi_ = nullptr;
};

// A model with the shapes and weight types a GGUF file's load would give, without data: enough
// for check_split and Model::weight_bytes before anything is read.
std::unique_ptr<Model::Impl> gguf_skeleton(const GgufFile& f) {
  auto m = std::make_unique<Model::Impl>();
  const GgufModelInfo info = read_gguf_model_info(f);
  m->config = info.config;
  const ModelConfig& c = m->config;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    Tensor t;
    t.name = name;
    t.rows = rows;
    t.cols = cols;
    bool converted = false;
    const GgufTensorInfo* ti = f.find_tensor(name);
    const char* type = ti ? gguf_piquant_type(ti->type, &converted) : nullptr;
    t.type = type ? parse_dtype(type) : DType::kF32;  // (missing / refused: the load says so)
    t.layout = is_quantized(t.type) ? TensorLayout::kPacked : TensorLayout::kRows;
    return t;
  };
  auto vec = [&](int64_t n) {
    Tensor t;
    t.rows = 1;
    t.cols = n;
    return t;
  };
  const int64_t d = c.dim, h = c.hidden_dim, hd = c.head_dim;
  const int64_t q = int64_t{c.n_heads} * hd, kv = int64_t{c.n_kv_heads} * hd;
  m->output_norm = vec(d);
  m->output = matrix(c.tied_classifier ? "token_embd.weight" : "output.weight", c.vocab_size, d);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights w;
    w.attn_norm = vec(d);
    w.ffn_norm = vec(d);
    w.wq = matrix(b + "attn_q.weight", q, d);
    w.wk = matrix(b + "attn_k.weight", kv, d);
    w.wv = matrix(b + "attn_v.weight", kv, d);
    w.wo = matrix(b + "attn_output.weight", d, q);
    w.w_gate = matrix(b + "ffn_gate.weight", h, d);
    w.w_up = matrix(b + "ffn_up.weight", h, d);
    w.w_down = matrix(b + "ffn_down.weight", d, h);
    m->layers.push_back(std::move(w));
  }
  return m;
}

}  // namespace

std::shared_ptr<const Model> load_shard(const std::string& path, const LoadOptions& options,
                                        int rank, int n, std::shared_ptr<Collective> comm,
                                        size_t* whole_bytes) {
  if (rank < 0 || rank >= n) {
    throw Error(ErrorCode::kInvalidArgument, "rank " + std::to_string(rank) + " not in [0, " +
                                                 std::to_string(n) + ")");
  }
  bool gguf = false;
  {
    const MappedFile file(path);
    gguf = GgufFile::has_magic(file.data(), file.size());
  }
  if (!gguf) {
    auto full = Model::load(path, options);
    check_split(full->impl(), n);
    if (whole_bytes) *whole_bytes = full->weight_bytes();
    return shard_model(full, rank, n, std::move(comm));
  }
  ModelConfig config;
  {
    const GgufFile f(path);
    const Model skeleton(gguf_skeleton(f));
    check_split(skeleton.impl(), n);
    if (whole_bytes) *whole_bytes = skeleton.weight_bytes();
    config = skeleton.config();
  }
  if (n > 1 && comm == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "a model split across ranks needs a Collective");
  }
  GgufSlicer slicer(path, config, rank, n, std::move(comm));
  auto m = load_model(path, options, &slicer);
  if (!m->impl().shard) throw Error(ErrorCode::kInternal, path + ": the GGUF loader did not slice");
  return m;
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(ErrorCode::kIo, path + ": cannot open");
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  uint64_t h = 1469598103934665603ULL;
  std::vector<char> buf(64 * 1024);
  auto mix = [&](uint64_t at, size_t len) {
    f.seekg(static_cast<std::streamoff>(at));
    f.read(buf.data(), static_cast<std::streamsize>(len));
    const size_t got = static_cast<size_t>(f.gcount());
    f.clear();
    for (size_t i = 0; i < got; ++i) {
      h ^= static_cast<uint8_t>(buf[i]);
      h *= 1099511628211ULL;
    }
  };
  mix(0, static_cast<size_t>(std::min<uint64_t>(size, buf.size())));
  if (size > buf.size()) {
    for (uint64_t i = 0; i < 64; ++i) mix(buf.size() + (size - buf.size()) * i / 64, 4096);
  }
  std::ostringstream o;
  o << "size " << size << " hash " << std::hex << h;
  return o.str();
}

size_t resident_bytes() {
#ifdef __linux__
  std::ifstream f("/proc/self/statm");
  size_t total = 0, res = 0;
  if (f >> total >> res) return res * static_cast<size_t>(sysconf(_SC_PAGESIZE));
#endif
  return 0;
}

size_t peak_resident_bytes() {
#ifdef __linux__
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoul(line.c_str() + 6, nullptr, 10) * 1024;
  }
#endif
  return 0;
}

bool reset_peak_resident() {
#ifdef __linux__
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
#else
  return false;
#endif
}

size_t mapped_resident_bytes(const std::string& path) {
#ifdef __linux__
  if (path.empty()) return 0;
  char real[4096];
  if (realpath(path.c_str(), real) == nullptr) return 0;
  const std::string want(real);
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool in = false;
  size_t kb = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') != std::string::npos && line.find(':') > line.find(' ')) {
      // A mapping's header: "lo-hi perms offset dev inode   path".
      const size_t slash = line.find('/');
      in = slash != std::string::npos && line.compare(slash, std::string::npos, want) == 0;
      continue;
    }
    if (in && line.rfind("Rss:", 0) == 0) kb += std::strtoul(line.c_str() + 4, nullptr, 10);
  }
  return kb * 1024;
#else
  (void)path;
  return 0;
#endif
}

}  // namespace piquant
