#include "format/gguf_writer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "piquant/error.hpp"

namespace piquant {
namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufWriteValue& v, const std::string& key) {
  switch (v.type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool:
      put<uint8_t>(out, static_cast<uint8_t>(v.bits)); break;
    case GgufType::kUint16: case GgufType::kInt16:
      put<uint16_t>(out, static_cast<uint16_t>(v.bits)); break;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32:
      put<uint32_t>(out, static_cast<uint32_t>(v.bits)); break;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64:
      put<uint64_t>(out, v.bits); break;
    case GgufType::kString: put_string(out, v.str); break;
    case GgufType::kArray:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.items.size());
      for (const GgufWriteValue& item : v.items) {
        if (item.type != v.elem_type) {
          throw Error(ErrorCode::kInvalidArgument,
                      "GGUF writer: array " + key + " declared " + to_string(v.elem_type) +
                          " holds a " + to_string(item.type));
        }
        put_value(out, item, key);
      }
      break;
  }
}

void pad(std::string& out, size_t alignment) {
  while (out.size() % alignment != 0) out += '\0';
}

// The header both writers write: magic, version, counts, the key-values (plus
// general.alignment when the alignment is not GGUF's default 32 and the caller did not set the
// key), the tensor infos with their data offsets (each tensor starts aligned), padded to the
// alignment. `bytes_of(t)` is a tensor's data size.
template <class Tensors, class BytesOf>
std::string write_header(uint32_t version,
                         const std::vector<std::pair<std::string, GgufWriteValue>>& kvs,
                         const Tensors& tensors, BytesOf bytes_of, uint32_t alignment) {
  bool has_alignment_key = false;
  for (const auto& kv : kvs) has_alignment_key |= kv.first == "general.alignment";
  const bool add_alignment = alignment != 32 && !has_alignment_key;
  std::string out = "GGUF";
  put<uint32_t>(out, version);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, kvs.size() + (add_alignment ? 1 : 0));
  for (const auto& kv : kvs) {
    put_string(out, kv.first);
    put<uint32_t>(out, static_cast<uint32_t>(kv.second.type));
    put_value(out, kv.second, kv.first);
  }
  if (add_alignment) {
    put_string(out, "general.alignment");
    put<uint32_t>(out, static_cast<uint32_t>(GgufType::kUint32));
    put<uint32_t>(out, alignment);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(out, d);
    put<uint32_t>(out, t.type);
    put<uint64_t>(out, offset);
    offset = (offset + bytes_of(t) + alignment - 1) / alignment * alignment;
  }
  pad(out, alignment);
  return out;
}

}  // namespace

GgufWriteValue GgufWriteValue::scalar(GgufType t, uint64_t bits) {
  GgufWriteValue v;
  v.type = t;
  v.bits = bits;
  return v;
}

GgufWriteValue GgufWriteValue::f32(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return scalar(GgufType::kFloat32, b);
}

GgufWriteValue GgufWriteValue::f64(double f) {
  uint64_t b;
  std::memcpy(&b, &f, 8);
  return scalar(GgufType::kFloat64, b);
}

GgufWriteValue GgufWriteValue::string(std::string s) {
  GgufWriteValue v;
  v.type = GgufType::kString;
  v.str = std::move(s);
  return v;
}

GgufWriteValue GgufWriteValue::array(GgufType elem, std::vector<GgufWriteValue> items) {
  GgufWriteValue v;
  v.type = GgufType::kArray;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

GgufWriteValue GgufWriteValue::strings(const std::vector<std::string>& s) {
  std::vector<GgufWriteValue> items;
  items.reserve(s.size());
  for (const std::string& x : s) items.push_back(string(x));
  return array(GgufType::kString, std::move(items));
}

GgufWriteValue GgufWriteValue::floats(const std::vector<float>& f) {
  std::vector<GgufWriteValue> items;
  items.reserve(f.size());
  for (float x : f) items.push_back(f32(x));
  return array(GgufType::kFloat32, std::move(items));
}

GgufWriteValue GgufWriteValue::int32s(const std::vector<int32_t>& n) {
  std::vector<GgufWriteValue> items;
  items.reserve(n.size());
  for (int32_t x : n) items.push_back(i32(x));
  return array(GgufType::kInt32, std::move(items));
}

void GgufWriter::add(const std::string& key, GgufWriteValue value) {
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, uint32_t type, std::vector<uint64_t> dims,
                            std::string bytes) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (info == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: tensor " + name + " has unknown ggml type " + std::to_string(type));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  const uint64_t ne0 = dims.empty() ? 1 : dims[0];
  if (ne0 % info->block_size != 0 || n / info->block_size * info->type_size != bytes.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: tensor " + name + " holds " + std::to_string(bytes.size()) +
                    " bytes, which does not match its " + info->name + " shape");
  }
  tensors_.push_back({name, type, std::move(dims), std::move(bytes)});
}

std::string GgufWriter::to_bytes() const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "GGUF writer: alignment " +
                                                 std::to_string(alignment_) +
                                                 " is not a power of two");
  }
  auto bytes_of = [](const Tensor& t) { return static_cast<uint64_t>(t.bytes.size()); };
  std::string out = write_header(version_, kv_, tensors_, bytes_of, alignment_);
  for (const Tensor& t : tensors_) {
    out += t.bytes;
    pad(out, alignment_);
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const std::string bytes = to_bytes();
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw Error(ErrorCode::kIo, path + ": cannot write the GGUF file");
}

GgufStreamWriter::GgufStreamWriter(std::string path, uint32_t alignment)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp"), alignment_(alignment) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: alignment " + std::to_string(alignment_) + " is not a power of two");
  }
}

GgufStreamWriter::~GgufStreamWriter() {
  if (f_ != nullptr) std::fclose(f_);
  if (!finished_ && started_) std::remove(tmp_path_.c_str());
}

void GgufStreamWriter::add(const std::string& key, GgufWriteValue value) {
  if (started_) throw Error(ErrorCode::kInvalidArgument, "GGUF writer: metadata after tensor data");
  kv_.emplace_back(key, std::move(value));
}

uint64_t GgufStreamWriter::declare_tensor(const std::string& name, uint32_t type,
                                          std::vector<uint64_t> dims) {
  if (started_) throw Error(ErrorCode::kInvalidArgument, "GGUF writer: tensor declared after data");
  const GgmlTypeInfo* info = ggml_type_info(type);
  if (info == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: tensor " + name + " has unknown ggml type " + std::to_string(type));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  const uint64_t ne0 = dims.empty() ? 1 : dims[0];
  if (ne0 % info->block_size != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: tensor " + name + ": rows of " + std::to_string(ne0) +
                    " values are not whole " + info->name + " blocks of " +
                    std::to_string(info->block_size));
  }
  const uint64_t bytes = n / info->block_size * info->type_size;
  tensors_.push_back({name, type, std::move(dims), bytes});
  return bytes;
}

void GgufStreamWriter::write_raw(const void* data, size_t size) {
  if (size != 0 && std::fwrite(data, 1, size, f_) != size) {
    throw Error(ErrorCode::kIo, tmp_path_ + ": write failed (disk full?)");
  }
  pos_ += size;
}

void GgufStreamWriter::start() {
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) throw Error(ErrorCode::kIo, tmp_path_ + ": cannot create the file");
  started_ = true;
  const std::string out =
      write_header(3, kv_, tensors_, [](const Info& t) { return t.bytes; }, alignment_);
  write_raw(out.data(), out.size());
}

void GgufStreamWriter::append(const void* data, size_t size) {
  if (!started_) start();
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    if (current_ >= tensors_.size()) {
      throw Error(ErrorCode::kInvalidArgument, "GGUF writer: more data than the declared tensors");
    }
    const Info& t = tensors_[current_];
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size, t.bytes - written_));
    write_raw(p, n);
    p += n, size -= n, written_ += n;
    if (written_ == t.bytes) {
      static const char zeros[64] = {};
      const uint64_t padded = (t.bytes + alignment_ - 1) / alignment_ * alignment_;
      for (uint64_t left = padded - t.bytes; left > 0;) {
        const size_t z = static_cast<size_t>(std::min<uint64_t>(left, sizeof zeros));
        write_raw(zeros, z);
        left -= z;
      }
      ++current_, written_ = 0;
    }
  }
}

void GgufStreamWriter::finish() {
  if (!started_) start();
  if (current_ != tensors_.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF writer: tensor " + tensors_[current_].name + " is incomplete (" +
                    std::to_string(written_) + " of " + std::to_string(tensors_[current_].bytes) +
                    " bytes)");
  }
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    throw Error(ErrorCode::kIo, tmp_path_ + ": write failed on close");
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw Error(ErrorCode::kIo, "cannot rename " + tmp_path_ + " to " + path_);
  }
  finished_ = true;
}

}  // namespace piquant
