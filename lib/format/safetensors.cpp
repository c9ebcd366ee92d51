#include "format/safetensors.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace piquant {
namespace {

using json = nlohmann::json;

// Element sizes of every safetensors dtype, so unsupported tensors are still size-checked and
// reported by name only when someone asks for them.
size_t any_dtype_size(const std::string& d) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4},  {"F16", 2}, {"BF16", 2}, {"I64", 8},     {"U64", 8},
      {"I32", 4}, {"U32", 4},  {"I16", 2}, {"U16", 2},  {"I8", 1},      {"U8", 1},
      {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  const auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

FileDType dtype_from_name(const std::string& d) {
  if (d == "F32") return FileDType::kF32;
  if (d == "F16") return FileDType::kF16;
  if (d == "BF16") return FileDType::kBF16;
  return FileDType::kUnsupported;
}

// Larger than any real header (a 405B model's is ~100 KB); keeps a hostile length from making
// the parser allocate gigabytes.
constexpr uint64_t kMaxHeader = 100u << 20;

[[noreturn]] void fail(const std::string& source, const std::string& msg) {
  throw Error(ErrorCode::kFormat, source + ": " + msg);
}

uint64_t as_u64(const json& v, const std::string& source, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  fail(source, what + " must be a non-negative integer, got " + v.dump());
}

}  // namespace

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& source) {
  if (size < 8) {
    fail(source, "file of " + std::to_string(size) +
                     " bytes is too small for a safetensors header (truncated?)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8) {
    fail(source, "header length " + std::to_string(n) + " exceeds the " +
                     std::to_string(size - 8) + " bytes after it (truncated or not safetensors)");
  }
  if (n > kMaxHeader) fail(source, "header length " + std::to_string(n) + " is implausibly large");
  SafetensorsHeader h;
  h.data_start = 8 + static_cast<size_t>(n);
  const size_t data_size = size - h.data_start;
  json j;
  try {
    j = json::parse(data + 8, data + h.data_start);
  } catch (const json::exception& e) {
    fail(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(source, "header must be a JSON object, got " + std::string(j.type_name()));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail(source, "__metadata__ must be an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        h.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      }
      continue;
    }
    const std::string where = "tensor " + key;
    if (!v.is_object()) fail(source, where + ": entry must be an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) fail(source, where + ": missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) fail(source, where + ": missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      fail(source, where + ": data_offsets must be [begin, end]");
    }
    SafetensorsHeader::Entry e;
    e.name = key;
    e.dtype_name = v["dtype"].get<std::string>();
    e.dtype = dtype_from_name(e.dtype_name);
    const size_t esize = any_dtype_size(e.dtype_name);
    if (esize == 0) {
      throw Error(ErrorCode::kUnsupported, source + ": " + where + " has unknown dtype \"" +
                                               e.dtype_name + "\"");
    }
    e.numel = 1;
    for (const json& d : v["shape"]) {
      const uint64_t dim = as_u64(d, source, where + " shape entry");
      if (dim > (uint64_t{1} << 40)) fail(source, where + ": shape dimension " + d.dump() + " too large");
      e.shape.push_back(static_cast<int64_t>(dim));
      e.numel = checked_mul(e.numel, static_cast<size_t>(dim), source + ": " + where);
    }
    const uint64_t begin = as_u64(v["data_offsets"][0], source, where + " data_offsets[0]");
    const uint64_t end = as_u64(v["data_offsets"][1], source, where + " data_offsets[1]");
    if (begin > end) {
      fail(source, where + ": data_offsets [" + std::to_string(begin) + ", " +
                       std::to_string(end) + "] end before begin");
    }
    if (end > data_size) {
      fail(source, where + ": data_offsets [" + std::to_string(begin) + ", " +
                       std::to_string(end) + "] beyond the data area of " +
                       std::to_string(data_size) + " bytes (truncated file?)");
    }
    const size_t want = checked_mul(e.numel, esize, source + ": " + where);
    if (want != end - begin) {
      std::string shape = "[";
      for (size_t i = 0; i < e.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(e.shape[i]);
      fail(source, where + ": shape " + shape + "] x " + e.dtype_name + " (" +
                       std::to_string(esize) + " bytes) needs " + std::to_string(want) +
                       " bytes but data_offsets span " + std::to_string(end - begin));
    }
    e.begin = static_cast<size_t>(begin);
    e.end = static_cast<size_t>(end);
    h.tensors.push_back(std::move(e));
  }
  // Overlaps: sort the non-empty ranges by start; each must begin at or after the previous end.
  std::vector<const SafetensorsHeader::Entry*> order;
  for (const auto& e : h.tensors) {
    if (e.end > e.begin) order.push_back(&e);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->end) {
      fail(source, "tensors " + order[i - 1]->name + " [" + std::to_string(order[i - 1]->begin) +
                       ", " + std::to_string(order[i - 1]->end) + ") and " + order[i]->name +
                       " [" + std::to_string(order[i]->begin) + ", " +
                       std::to_string(order[i]->end) + ") overlap");
    }
  }
  return h;
}

void TensorView::require_supported() const {
  if (dtype == FileDType::kUnsupported) {
    throw Error(ErrorCode::kUnsupported, file + ": tensor " + name + " has dtype " + dtype_name +
                                             "; piquant reads F32, F16 and BF16 tensors");
  }
}

void TensorView::to_f32(float* dst) const { to_f32(0, numel, dst); }

void TensorView::to_f32(size_t first, size_t n, float* dst) const {
  require_supported();
  if (first > numel || n > numel - first) {
    throw Error(ErrorCode::kOutOfRange, file + ": tensor " + name + ": elements [" +
                                            std::to_string(first) + ", +" + std::to_string(n) +
                                            ") beyond its " + std::to_string(numel));
  }
  convert_to_f32(dtype, data + first * dtype_size(dtype), dst, n);
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<const MappedFile>(path)),
      header_(parse_safetensors(file_->data(), file_->size(), path)) {
  tensors_.reserve(header_.tensors.size());
  for (const auto& e : header_.tensors) {
    TensorView t;
    t.name = e.name;
    t.dtype = e.dtype;
    t.dtype_name = e.dtype_name;
    t.shape = e.shape;
    t.data = file_->data() + header_.data_start + e.begin;
    t.size = e.end - e.begin;
    t.numel = e.numel;
    t.file = path;
    by_name_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

namespace {

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
std::string dir_of(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

SafetensorsModel SafetensorsModel::open(const std::string& path) {
  std::string p = path;
  if (is_dir(p)) {
    if (exists(p + "/model.safetensors.index.json")) {
      p += "/model.safetensors.index.json";
    } else if (exists(p + "/model.safetensors")) {
      p += "/model.safetensors";
    } else {
      throw Error(ErrorCode::kIo, path + ": no model.safetensors or model.safetensors.index.json");
    }
  }
  SafetensorsModel m;
  m.source_ = p;
  if (!ends_with(p, ".json")) {
    auto f = std::make_shared<const SafetensorsFile>(p);
    for (const auto& t : f->tensors()) m.by_name_[t.name] = &t;
    m.files_.push_back(std::move(f));
    return m;
  }
  json idx;
  try {
    idx = json::parse(read_whole_file(p));
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kFormat, p + ": not valid JSON: " + e.what());
  }
  if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object()) {
    throw Error(ErrorCode::kFormat, p + ": missing \"weight_map\" object");
  }
  const std::string dir = dir_of(p);
  std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards;
  const json& wm = idx["weight_map"];
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    if (!it.value().is_string()) {
      throw Error(ErrorCode::kFormat, p + ": weight_map entry " + it.key() + " is not a file name");
    }
    const std::string shard = it.value().get<std::string>();
    // Shards live beside the index; refuse paths so a file cannot point outside its directory.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      throw Error(ErrorCode::kFormat, p + ": weight_map entry " + it.key() + " names \"" + shard +
                                          "\", expected a file name beside the index");
    }
    auto& f = shards[shard];
    if (!f) {
      f = std::make_shared<const SafetensorsFile>(dir + "/" + shard);
      m.files_.push_back(f);
    }
    const TensorView* t = f->find(it.key());
    if (t == nullptr) {
      throw Error(ErrorCode::kFormat, p + ": weight_map puts tensor " + it.key() + " in " + shard +
                                          " but that shard does not contain it");
    }
    m.by_name_[it.key()] = t;
  }
  return m;
}

const TensorView* SafetensorsModel::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& SafetensorsModel::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (t == nullptr) throw Error(ErrorCode::kFormat, source_ + ": tensor " + name + " not found");
  return *t;
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& kv : by_name_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t SafetensorsModel::total_bytes() const {
  uint64_t total = 0;
  for (const auto& kv : by_name_) total += kv.second->size;
  return total;
}

// ---- writer --------------------------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, FileDType dtype, std::vector<int64_t> shape,
                            const void* data, size_t bytes) {
  if (dtype == FileDType::kUnsupported) {
    throw Error(ErrorCode::kInvalidArgument, "SafetensorsWriter: " + name + ": unsupported dtype");
  }
  Item it;
  it.name = name;
  it.dtype = dtype_name(dtype);
  it.shape = std::move(shape);
  it.bytes.assign(static_cast<const char*>(data), bytes);
  items_.push_back(std::move(it));
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape,
                                const float* values, FileDType dtype) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  if (dtype == FileDType::kF32) {
    add(name, dtype, std::move(shape), values, n * 4);
    return;
  }
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) {
    h[i] = dtype == FileDType::kF16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
  }
  add(name, dtype, std::move(shape), h.data(), n * 2);
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::string SafetensorsWriter::serialize() const {
  json h = json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  size_t off = 0;
  for (const Item& it : items_) {
    h[it.name] = {{"dtype", it.dtype}, {"shape", it.shape}, {"data_offsets", {off, off + it.bytes.size()}}};
    off += it.bytes.size();
  }
  std::string header = h.dump();
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out += header;
  for (const Item& it : items_) out += it.bytes;
  return out;
}

void SafetensorsWriter::write(const std::string& path) const { write_file_atomic(path, serialize()); }

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCode::kIo, tmp + ": cannot create: " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) {
      std::remove(tmp.c_str());
      throw Error(ErrorCode::kIo, tmp + ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw Error(ErrorCode::kIo, path + ": cannot rename from " + tmp + ": " + std::strerror(e));
  }
}

}  // namespace piquant

namespace piquant {

std::string read_whole_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) throw Error(ErrorCode::kIo, path + ": cannot open: " + std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  if (bad) throw Error(ErrorCode::kIo, path + ": read error");
  return out;
}

}  // namespace piquant
