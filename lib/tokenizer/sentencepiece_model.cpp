// SentencePiece's tokenizer.model: a protobuf ModelProto, read with a minimal wire-format reader.
// Fields used (sentencepiece_model.proto):
//   ModelProto      1: pieces (repeated SentencePiece), 2: trainer_spec, 3: normalizer_spec
//   SentencePiece   1: piece (string), 2: score (float), 3: type (NORMAL=1 UNKNOWN=2 CONTROL=3
//                   USER_DEFINED=4 UNUSED=5 BYTE=6)
//   TrainerSpec     3: model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4), 35: byte_fallback,
//                   40: unk_id, 41: bos_id, 42: eos_id, 43: pad_id
//   NormalizerSpec  1: name, 2: precompiled_charsmap, 3: add_dummy_prefix (default true),
//                   4: remove_extra_whitespaces (default true), 5: escape_whitespaces
#include <cstring>

#include "piquant/error.hpp"
#include "tokenizer/loaders.hpp"

namespace piquant {
namespace {

class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& source, std::string where)
      : d_(data), source_(source), where_(std::move(where)) {}

  bool done() const { return pos_ >= d_.size(); }

  /// Reads a field header; returns the field number and sets the wire type.
  uint32_t next(int* wire) {
    const uint64_t key = varint();
    *wire = static_cast<int>(key & 7);
    const uint64_t field = key >> 3;
    if (field == 0 || field > 0x1FFFFFFF) fail("invalid field number " + std::to_string(field));
    return static_cast<uint32_t>(field);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= d_.size()) fail("truncated varint");
      const auto b = static_cast<unsigned char>(d_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > d_.size() - pos_) {
      fail("length-delimited field of " + std::to_string(n) + " bytes overruns the " +
           std::to_string(d_.size() - pos_) + " bytes left (truncated file?)");
    }
    std::string_view s = d_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  uint32_t fixed32() {
    if (d_.size() - pos_ < 4) fail("truncated 32-bit field");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(d_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return v;
  }
  float float32() {
    const uint32_t b = fixed32();
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1:
        if (d_.size() - pos_ < 8) fail("truncated 64-bit field");
        pos_ += 8;
        break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }
  void expect(int wire, int want, const char* field) {
    if (wire != want) {
      fail(std::string(field) + " has wire type " + std::to_string(wire) + ", expected " +
           std::to_string(want));
    }
  }
  [[noreturn]] void fail(const std::string& m) const {
    throw Error(ErrorCode::kFormat, source_ + ": SentencePiece model, " + where_ + " at byte " +
                                        std::to_string(pos_) + ": " + m);
  }

 private:
  std::string_view d_;
  const std::string& source_;
  std::string where_;
  size_t pos_ = 0;
};

}  // namespace

std::shared_ptr<const Tokenizer::Impl> parse_sentencepiece_model(std::string_view bytes,
                                                                 const std::string& source) {
  auto t = std::make_shared<SentencePieceImpl>();
  t->name = "sentencepiece";
  t->add_bos_default = true;
  t->byte_fallback = false;
  t->add_dummy_prefix = true;
  t->remove_extra_whitespaces = true;
  int model_type = 1;  // proto default: UNIGRAM
  int64_t unk_id = 0, bos_id = 1, eos_id = 2;
  std::string normalizer_name;
  bool has_charsmap = false;

  ProtoReader r(bytes, source, "ModelProto");
  while (!r.done()) {
    int wire;
    const uint32_t f = r.next(&wire);
    if (f == 1) {
      r.expect(wire, 2, "pieces");
      ProtoReader p(r.bytes(), source, "piece " + std::to_string(t->pieces.size()));
      std::string piece;
      float score = 0;
      uint64_t type = 1;
      while (!p.done()) {
        int w;
        const uint32_t pf = p.next(&w);
        if (pf == 1) p.expect(w, 2, "piece"), piece = std::string(p.bytes());
        else if (pf == 2) p.expect(w, 5, "score"), score = p.float32();
        else if (pf == 3) p.expect(w, 0, "type"), type = p.varint();
        else p.skip(w);
      }
      static const TokenKind kKinds[] = {TokenKind::kNormal,      TokenKind::kNormal,
                                         TokenKind::kUnknown,     TokenKind::kControl,
                                         TokenKind::kUserDefined, TokenKind::kUnused,
                                         TokenKind::kByte};
      if (type < 1 || type > 6) p.fail("unknown piece type " + std::to_string(type));
      t->pieces.push_back(std::move(piece));
      t->scores.push_back(score);
      t->kinds.push_back(kKinds[type]);
    } else if (f == 2) {
      r.expect(wire, 2, "trainer_spec");
      ProtoReader p(r.bytes(), source, "trainer_spec");
      while (!p.done()) {
        int w;
        const uint32_t pf = p.next(&w);
        auto int_field = [&](const char* name) {
          p.expect(w, 0, name);
          return static_cast<int64_t>(static_cast<int32_t>(p.varint()));
        };
        if (pf == 3) model_type = static_cast<int>(int_field("model_type"));
        else if (pf == 35) t->byte_fallback = int_field("byte_fallback") != 0;
        else if (pf == 40) unk_id = int_field("unk_id");
        else if (pf == 41) bos_id = int_field("bos_id");
        else if (pf == 42) eos_id = int_field("eos_id");
        else p.skip(w);
      }
    } else if (f == 3) {
      r.expect(wire, 2, "normalizer_spec");
      ProtoReader p(r.bytes(), source, "normalizer_spec");
      while (!p.done()) {
        int w;
        const uint32_t pf = p.next(&w);
        if (pf == 1) p.expect(w, 2, "name"), normalizer_name = std::string(p.bytes());
        else if (pf == 2) p.expect(w, 2, "precompiled_charsmap"), has_charsmap = !p.bytes().empty();
        else if (pf == 3) p.expect(w, 0, "add_dummy_prefix"), t->add_dummy_prefix = p.varint() != 0;
        else if (pf == 4) p.expect(w, 0, "remove_extra_whitespaces"), t->remove_extra_whitespaces = p.varint() != 0;
        else p.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  if (t->pieces.empty()) r.fail("no pieces: not a SentencePiece model (or an empty one)");
  if (model_type != 2) {
    static const char* const kNames[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    throw Error(ErrorCode::kUnsupported,
                source + ": SentencePiece model type " +
                    (model_type >= 1 && model_type <= 4 ? kNames[model_type] : "?") +
                    " is not supported (only BPE)");
  }
  if (has_charsmap && normalizer_name != "identity") {
    throw Error(ErrorCode::kUnsupported, source + ": SentencePiece normalizer '" +
                                             normalizer_name +
                                             "' (a precompiled charsmap) is not supported; only "
                                             "identity normalization is");
  }
  const auto n = static_cast<int64_t>(t->pieces.size());
  auto id = [&](int64_t v) { return v >= 0 && v < n ? static_cast<TokenId>(v) : -1; };
  t->unk = id(unk_id);
  t->bos = id(bos_id);
  t->eos = id(eos_id);
  t->end_of_generation = {t->eos};
  t->finish(source);
  return t;
}

}  // namespace piquant
