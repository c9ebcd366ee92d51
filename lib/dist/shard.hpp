#pragma once
// Tensor parallelism: one model split across N ranks (processes, one per machine in real use),
// Megatron style. Rank r of N holds
//   attention: the KV-head group [r*kv/N, (r+1)*kv/N) with its query heads: rows of Wq, Wk, Wv
//              (and biases), the matching input columns of Wo;
//   FFN:       hidden columns [r*h/N, (r+1)*h/N): rows of W_gate and W_up, input columns of W_down;
//   classifier: a range of vocabulary rows (multiples of 8 rows; the last rank takes the rest);
//   everything else (embeddings, norms, RoPE) whole.
// Per layer the forward pass then sums the ranks' partial outputs once after Wo and once after
// W_down (Collective::sum), and gathers the logits once per pass (Collective::gather).
// Slicing works on a loaded Model::Impl, tensor by tensor: a row range of a tensor is a view of
// its bytes when they are a file mapping (.piq: only the slice's pages are ever read), else a
// copy; a column range is always a copy (the source pages of a mapping are released after).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/model_impl.hpp"

namespace piquant {

class Collective;

/// The Ns in [1, max_n] that can split a model of this config and these weight types.
std::vector<int> valid_splits(const Model::Impl& m, int max_n);
/// Throws Error(kInvalidArgument) saying why `n` ranks cannot split the model and which N would.
void check_split(const Model::Impl& m, int n);
/// Classifier rows [first, second) of rank r of n (units of 8 rows; the last rank takes the rest).
std::pair<int, int> vocab_range(int vocab, int rank, int n);

/// Rows [r0, r1) of t (a view: r0 must be a multiple of the packing's row interleave).
Tensor slice_rows(const Tensor& t, int64_t r0, int64_t r1);
/// Columns [c0, c1) of t, copied into a buffer appended to `storage` (c0, c1 multiples of the
/// type's block for quantized types).
Tensor copy_cols(const Tensor& t, int64_t c0, int64_t c1,
                 std::vector<std::shared_ptr<const void>>& storage);
/// A copy of t's bytes appended to `storage`.
Tensor copy_tensor(const Tensor& t, std::vector<std::shared_ptr<const void>>& storage);

/// Rank `rank`'s slice of `full` (check_split first). `comm` goes into the slice's Impl: the
/// forward pass of the slice calls it (it may be null for a test of the slicing alone only when
/// n == 1).
std::unique_ptr<Model::Impl> shard_model(const Model::Impl& full, int rank, int n,
                                         std::shared_ptr<Collective> comm);
/// The same for a loaded Model; `full` may be released by the caller afterwards.
std::shared_ptr<const Model> shard_model(const std::shared_ptr<const Model>& full, int rank, int n,
                                         std::shared_ptr<Collective> comm);

/// Rank `rank`'s slice of the model file at `path`, loaded so that the rank never holds much more
/// than its slice: a GGUF file through a LoadSlicer (lib/dist/load_slicer.hpp: the loader reads,
/// dequantizes and packs only the slice's rows and columns of each tensor), any other format
/// whole and then shard_model (a .piq file maps only the slice's pages of the file). The split
/// is checked first (check_split, from the file's metadata alone for a GGUF file: Error
/// (kInvalidArgument) naming the numbers of ranks that can). `whole_bytes` (optional) receives
/// the whole model's Model::weight_bytes, what one process would hold.
std::shared_ptr<const Model> load_shard(const std::string& path, const LoadOptions& options,
                                        int rank, int n, std::shared_ptr<Collective> comm,
                                        size_t* whole_bytes = nullptr);

/// A fingerprint of a model file the ranks compare at start: its size, and an FNV-1a hash of its
/// first 64 KiB (the header) and of 64 samples of 4 KiB spread over the rest (tensor data).
std::string file_fingerprint(const std::string& path);

/// Resident set size of this process in bytes (/proc/self/statm), 0 where unknown.
size_t resident_bytes();
/// The peak resident set size of this process in bytes (VmHWM in /proc/self/status), 0 where
/// unknown; reset_peak_resident() sets it to the current resident size (Linux 4.0+: writes 5 to
/// /proc/self/clear_refs) and says whether it could.
size_t peak_resident_bytes();
bool reset_peak_resident();
/// Bytes of `path` this process has resident through its mappings of the file (the Rss of those
/// mappings in /proc/self/smaps; pages shared with other processes count in each): with
/// ShardInfo::copied_bytes, the weight memory a rank really holds. 0 where unknown.
size_t mapped_resident_bytes(const std::string& path);

}  // namespace piquant
