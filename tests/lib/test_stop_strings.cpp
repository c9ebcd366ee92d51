// Stop strings (GenerateOptions::stop): the filter that holds back what could begin one, the
// text API that never streams any part of one, generate_ids, and piquant-run's -r / -f.
#include <catch2/catch.hpp>
#include <piquant/piquant.hpp>

#include <cstdio>

#include "test_util.hpp"
#include "util/stop_filter.hpp"

namespace {

// Feeds `pieces` through a filter; returns what came out, joined, and the filter.
std::string feed(piquant::StopFilter& f, const std::vector<std::string>& pieces,
                 std::vector<std::string>* outs = nullptr) {
  std::string shown;
  for (const std::string& p : pieces) {
    const std::string o = f.push(p);
    if (outs) outs->push_back(o);
    shown += o;
  }
  return shown;
}

// A piece callback that appends every piece to `out`.
piquant::PieceCallback append_to(std::string& out) {
  return [&out](std::string_view piece) {
    out += piece;
    return true;
  };
}

std::shared_ptr<const piquant::Model> demo() { return piquant::Model::synthetic(); }

// Greedy with a presence penalty larger than any logit gap: a new token every step. The random
// demo model alone repeats its last token, which makes poor text for finding stop strings in.
piquant::GenerateOptions lively(int n) {
  piquant::GenerateOptions go;
  go.max_tokens = n;
  go.sampler.temperature = 0;
  go.sampler.presence_penalty = 1000;
  go.stop_at_end_of_generation = false;
  return go;
}

}  // namespace

TEST_CASE("the stop filter holds back what could begin a stop string", "[lib][stop]") {
  SECTION("a stop string split over three pieces: no part of it is shown") {
    piquant::StopFilter f({"User:"});
    std::vector<std::string> outs;
    const std::string shown = feed(f, {"Hello U", "se", "r: more"}, &outs);
    CHECK(outs == std::vector<std::string>{"Hello ", "", ""});
    CHECK(shown == "Hello ");
    CHECK(f.stopped());
    CHECK(f.text() == "Hello ");
    CHECK(f.push("later").empty());
    CHECK(f.finish().empty());
  }
  SECTION("a false start is released when the next piece rules it out") {
    piquant::StopFilter f({"abc"});
    std::vector<std::string> outs;
    feed(f, {"xa", "bd", "e"}, &outs);
    CHECK(outs == std::vector<std::string>{"x", "abd", "e"});
    CHECK_FALSE(f.stopped());
    CHECK(f.finish().empty());
  }
  SECTION("text held back at the end comes out at finish") {
    piquant::StopFilter f({"abc", "zz"});
    CHECK(feed(f, {"xab"}) == "x");
    CHECK(f.finish() == "ab");
    CHECK(f.text() == "xab");
  }
  SECTION("the earliest match wins, wherever it starts") {
    piquant::StopFilter f({"cd", "bcde"});
    CHECK(feed(f, {"abcdef"}) == "a");
    CHECK(f.text() == "a");
  }
  SECTION("a match that starts inside the held-back text") {
    piquant::StopFilter f({"aab"});
    CHECK(feed(f, {"aa", "aab"}) == "aa");
    CHECK(f.stopped());
    CHECK(f.text() == "aa");
  }
  SECTION("no stop strings (or only empty ones): everything passes at once") {
    piquant::StopFilter f({"", ""});
    CHECK(feed(f, {"a", "b"}) == "ab");
    CHECK(f.finish().empty());
  }
}

TEST_CASE("generate streams exactly its result text and stops before a stop string",
          "[lib][stop][session]") {
  auto model = demo();
  const std::vector<piquant::TokenId> prompt = {1, 40, 41, 42};
  std::string full;
  std::vector<piquant::TokenId> full_ids;
  {
    piquant::Session s(model, piquant::SessionOptions{128, 1});
    const auto r = s.generate(prompt, nullptr, lively(32));
    full = r.text;
    full_ids = r.generated_ids;
  }
  REQUIRE(full.size() >= 12);
  REQUIRE(full.find(full.substr(full.size() / 2, 3)) > 0);  // something is streamed first
  // A stop string of 3 characters from the middle of the text, spanning token boundaries.
  const std::string stop = full.substr(full.size() / 2, 3);
  const size_t at = full.find(stop);
  CAPTURE(full, stop);

  piquant::Session s(model, piquant::SessionOptions{128, 1});
  piquant::GenerateOptions go = lively(32);
  go.stop = {stop};
  std::string streamed;
  const auto r = s.generate(prompt, append_to(streamed), go);
  CHECK(r.stop == piquant::GenerateResult::StopReason::kStopString);
  CHECK(r.text == full.substr(0, at));
  CHECK(streamed == r.text);
  CHECK(r.generated_ids.size() < full_ids.size());

  SECTION("a stop string that never completes: the held-back text is flushed at the end") {
    piquant::Session s2(model, piquant::SessionOptions{128, 1});
    piquant::GenerateOptions go2 = lively(32);
    go2.stop = {std::string(1, full.back()) + "\x01\x02"};
    std::string streamed2;
    const auto r2 = s2.generate(prompt, append_to(streamed2), go2);
    CHECK(r2.stop == piquant::GenerateResult::StopReason::kMaxTokens);
    CHECK(r2.text == full);
    CHECK(streamed2 == full);
  }
  SECTION("generate_ids stops after the token that completes the stop string") {
    piquant::Session s3(model, piquant::SessionOptions{128, 1});
    std::vector<piquant::TokenId> seen;
    const auto r3 = s3.generate_ids(prompt, [&](piquant::TokenId id) {
      seen.push_back(id);
      return true;
    }, go);
    CHECK(r3.stop == piquant::GenerateResult::StopReason::kStopString);
    CHECK(seen == r3.generated_ids);
    REQUIRE(!seen.empty());
    CHECK(std::equal(seen.begin(), seen.end(), full_ids.begin()));
    CHECK(seen == r.generated_ids);  // the text API stopped after the same token
  }
}

TEST_CASE("generate continues the prompt's text", "[lib][stop][session]") {
  // The text API and the token API agree: the streamed text is the decode of the ids that
  // follow the prompt (SentencePiece keeps the first word's space after a prompt).
  auto model = demo();
  const std::vector<piquant::TokenId> prompt = {1, 40, 41, 42};
  piquant::Session a(model, piquant::SessionOptions{128, 1});
  piquant::Session b(model, piquant::SessionOptions{128, 1});
  const auto rt = a.generate(prompt, nullptr, lively(16));
  const auto ri = b.generate_ids(prompt, nullptr, lively(16));
  CHECK(rt.generated_ids == ri.generated_ids);
  const auto& tok = model->tokenizer();
  std::vector<piquant::TokenId> all = prompt;
  all.insert(all.end(), ri.generated_ids.begin(), ri.generated_ids.end());
  CHECK(tok.decode(prompt) + rt.text == tok.decode(all));
}

TEST_CASE("a stop string ends a chat reply without showing any of it", "[lib][stop][chat]") {
  auto model = demo();
  std::string reply;
  {
    piquant::Session session(model, piquant::SessionOptions{256, 1});
    piquant::Conversation chat(session, piquant::ChatTemplate::by_name("chatml"));
    reply = chat.send("Hello there", nullptr, lively(24)).text;
  }
  REQUIRE(reply.size() >= 8);
  const std::string stop = reply.substr(reply.size() / 2, 2);
  piquant::Session session(model, piquant::SessionOptions{256, 1});
  piquant::Conversation chat(session, piquant::ChatTemplate::by_name("chatml"));
  piquant::GenerateOptions go = lively(24);
  go.stop = {stop};
  std::string streamed;
  const auto r = chat.send("Hello there", append_to(streamed), go);
  CHECK(r.stop == piquant::GenerateResult::StopReason::kStopString);
  CHECK(r.text == reply.substr(0, reply.find(stop)));
  CHECK(streamed == r.text);
  CHECK(chat.messages().back().content == r.text);
  // The conversation goes on from there.
  CHECK_NOTHROW(chat.send("More", nullptr, lively(4)));
}

#ifdef PIQUANT_RUN_PATH
TEST_CASE("piquant-run -r stops at a text and -f reads the prompt from a file",
          "[e2e][stop][cli]") {
  using piquant::test::run_program;
  const std::vector<std::string> base = {"-n", "24", "--temp", "0", "--presence-penalty", "1000",
                                         "-t", "1", "--ignore-eos"};
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_program(PIQUANT_RUN_PATH, args, 120);
  };
  const auto plain = run({"-p", "Once upon a time"});
  REQUIRE(plain.exit_code == 0);
  const std::string prompt = "Once upon a time";
  REQUIRE(plain.out.rfind(prompt, 0) == 0);
  REQUIRE(plain.out.back() == '\n');
  const std::string gen = plain.out.substr(prompt.size(), plain.out.size() - prompt.size() - 1);
  REQUIRE(gen.size() >= 10);
  const std::string stop = gen.substr(gen.size() / 2, 3);
  CAPTURE(gen, stop);
  const auto cut = run({"-p", prompt, "-r", stop});
  REQUIRE(cut.exit_code == 0);
  CHECK(cut.out == prompt + gen.substr(0, gen.find(stop)) + "\n");

  // Escapes are processed as llama.cpp does (-r "\n" is a newline): the same stop string
  // written as \xHH bytes cuts at the same place; with --no-escape it is taken literally.
  std::string hex;
  for (unsigned char ch : stop) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", ch);
    hex += buf;
  }
  const auto escaped = run({"-p", prompt, "-r", hex});
  CHECK(escaped.out == cut.out);
  const auto literal = run({"-p", prompt, "-r", hex, "--no-escape"});
  CHECK(literal.out == plain.out);

  piquant::test::TempDir dir;
  piquant::test::write_file(dir.file("prompt.txt"), prompt);
  const auto from_file = run({"-f", dir.file("prompt.txt")});
  REQUIRE(from_file.exit_code == 0);
  CHECK(from_file.out == plain.out);

  const auto missing = run({"-f", dir.file("nope.txt")});
  CHECK(missing.exit_code != 0);
  CHECK_THAT(missing.err, Catch::Contains("nope.txt") && Catch::Contains("cannot open"));
  const auto directory = run({"-f", dir.path()});
  CHECK(directory.exit_code != 0);
  CHECK_THAT(directory.err, Catch::Contains("is a directory"));
  const auto both = run({"-p", "x", "-f", dir.file("prompt.txt")});
  CHECK(both.exit_code != 0);
  CHECK_THAT(both.err, Catch::Contains("-p or -f"));
}
#endif
