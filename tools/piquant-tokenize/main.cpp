// piquant-tokenize: text -> token ids (a JSON array) and back, with any tokenizer piquant reads.
//   piquant-tokenize TOKENIZER_FILE_OR_MODEL [--bos|--no-bos] [--special] TEXT
//   piquant-tokenize TOKENIZER_FILE_OR_MODEL --decode [--special] IDS
// The file is recognised by content (Tokenizer::load): SentencePiece or tiktoken tokenizer.model,
// tokenizer.json, vocab.json (+ merges.txt beside it), llama2.c tokenizer.bin, GGUF, piquant model.
#include <piquant/error.hpp>
#include <piquant/tokenizer.hpp>
#include <piquant/version.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

const char* kUsage = R"(usage: piquant-tokenize TOKENIZER [--bos|--no-bos] [--special] TEXT
       piquant-tokenize TOKENIZER --decode [--special] IDS
  TOKENIZER   tokenizer.model (SentencePiece or tiktoken), tokenizer.json, vocab.json (with
              merges.txt beside it), llama2.c tokenizer.bin, a GGUF or a piquant model file,
              or a directory holding one of these
  TEXT        the text to encode; "-" reads standard input (one final newline, as an editor
              or echo leaves it, is dropped: as llama-tokenize --stdin)
  --bos       prepend BOS;  --no-bos: do not (default: the tokenizer's own convention)
  --special   encode: match special tokens written in the text ("<|eot_id|>") as single tokens;
              decode: show special tokens instead of skipping them
  --decode    IDS are token ids ("[1, 15043]", "1 15043" or "1,15043"; "-" reads standard
              input); prints the text
  --show-pieces  encode: print one line per token, "id -> 'text'" (as llama-tokenize), instead
              of the JSON array
  --version   the version
Encoding prints the ids as a JSON array. Errors go to standard error, with exit status 1.
)";

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "piquant-tokenize: error: %s\n", msg.c_str());
  std::exit(1);
}

std::string read_stdin() {
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), stdin)) > 0) s.append(buf, n);
  if (std::ferror(stdin)) die("cannot read standard input");
  return s;
}

// Token ids separated by anything that is not a digit or '-' (JSON brackets, commas, spaces).
std::vector<piquant::TokenId> parse_ids(const std::string& s) {
  std::vector<piquant::TokenId> ids;
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '[' || c == ']' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    size_t j = i + (c == '-' ? 1 : 0);
    const size_t digits = j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == digits || j - digits > 10) die("bad token id '" + s.substr(i, 20) + "' in IDS");
    const long long v = std::strtoll(s.substr(i, j - i).c_str(), nullptr, 10);
    if (v < INT32_MIN || v > INT32_MAX) die("token id " + s.substr(i, j - i) + " is out of range");
    ids.push_back(static_cast<piquant::TokenId>(v));
    i = j;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  std::vector<std::string> rest;
  piquant::EncodeOptions eo;
  piquant::DecodeOptions dopt;
  bool decode = false, special = false, end_of_options = false, show_pieces = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (!end_of_options && a == "--") {
      end_of_options = true;
    } else if (!end_of_options && (a == "-h" || a == "--help")) {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!end_of_options && a == "--version") {
      std::printf("piquant-tokenize (piquant %s)\n", piquant::version());
      return 0;
    } else if (!end_of_options && a == "--bos") {
      eo.add_bos = true;
    } else if (!end_of_options && a == "--no-bos") {
      eo.add_bos = false;
    } else if (!end_of_options && a == "--special") {
      special = true;
    } else if (!end_of_options && a == "--decode") {
      decode = true;
    } else if (!end_of_options && a == "--show-pieces") {
      show_pieces = true;
    } else if (!end_of_options && a.size() > 1 && a[0] == '-' && !(decode && a[1] >= '0' && a[1] <= '9')) {
      die("unknown option '" + a + "'\n" + kUsage);
    } else if (path.empty()) {
      path = a;
    } else {
      rest.push_back(a);
    }
  }
  if (path.empty()) die(std::string("no tokenizer file given\n") + kUsage);
  if (rest.empty()) die(std::string(decode ? "no IDS given\n" : "no TEXT given\n") + kUsage);
  if (decode && eo.add_bos.has_value()) die("--bos/--no-bos apply to encoding, not --decode");
  if (decode && show_pieces) die("--show-pieces applies to encoding, not --decode");
  try {
    const piquant::Tokenizer tok = piquant::Tokenizer::load(path);
    if (decode) {
      std::string all;
      for (const std::string& r : rest) all += (r == "-" ? read_stdin() : r) + " ";
      dopt.show_special = special;
      const std::string text = tok.decode(parse_ids(all), dopt);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
      return 0;
    }
    if (rest.size() > 1) die("give TEXT as one argument (quote it), or \"-\" for standard input");
    std::string text = rest[0];
    if (text == "-") {
      text = read_stdin();
      if (!text.empty() && text.back() == '\n') {
        text.pop_back();
        if (!text.empty() && text.back() == '\r') text.pop_back();
      }
    }
    eo.parse_special = special;
    const auto ids = tok.encode(text, eo);
    if (show_pieces) {
      piquant::DecodeOptions show;
      show.show_special = true;
      std::string out;
      for (size_t i = 0; i < ids.size(); ++i) {
        out += std::to_string(ids[i]) + " -> '" +
               tok.token_bytes(ids[i], i ? ids[i - 1] : -1, show) + "'\n";
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      return std::fflush(stdout) == 0 ? 0 : 1;
    }
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
  } catch (const piquant::Error& e) {
    die(e.what());
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
