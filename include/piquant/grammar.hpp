#pragma once
/// \file piquant/grammar.hpp
/// Constrained generation: a GBNF grammar (llama.cpp's syntax) or a JSON Schema limits the tokens
/// a Session may sample, so the output parses by construction. See docs/structured-output.md.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "piquant/tokenizer.hpp"

namespace piquant {

/// A compiled grammar: immutable, shared by any number of matchers and sessions.
class Grammar {
 public:
  /// Parses GBNF text (rules `name ::= ...`, alternation `|`, groups, `* + ? {m} {m,} {m,n}`,
  /// "literals", [classes] with ranges and ^negation, `.`, escapes \n \t \r \\ \" \xHH \uHHHH
  /// \UHHHHHHHH, UTF-8, # comments). Throws Error(kInvalidArgument) naming line:column for
  /// syntax errors, undefined rules, left recursion and rules that can never end.
  static std::shared_ptr<const Grammar> parse(std::string_view gbnf, const std::string& root = "root");
  /// Converts a JSON Schema (text) to a grammar; see json_schema_to_gbnf.
  static std::shared_ptr<const Grammar> from_json_schema(std::string_view schema_json);
  /// Any JSON object (`piquant-run -j`, response_format {"type": "json_object"}).
  static std::shared_ptr<const Grammar> json_object();

  const std::string& gbnf() const;  ///< the source text
  size_t rule_count() const;        ///< rules after expanding repetitions

  struct Impl;
  explicit Grammar(std::unique_ptr<Impl> impl);
  ~Grammar();
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// GBNF text for a JSON Schema: type (object, array, string, number, integer, boolean, null, or a
/// list of them), properties, required, additionalProperties (false, true or a schema), enum,
/// const, items, minItems/maxItems, minLength/maxLength, pattern (literals, classes,
/// groups, |, * + ? {m,n}, anchored), anyOf/oneOf, allOf of one schema, $ref to #/$defs/... or
/// #/definitions/...; annotations (title, description, examples, default, $schema, $id,
/// $comment, format) are ignored. Any other keyword throws Error(kUnsupported) naming it and its
/// JSON pointer; malformed schemas throw Error(kInvalidArgument) with the pointer.
std::string json_schema_to_gbnf(std::string_view schema_json);

/// For a server: the grammar for an OpenAI `response_format` object (JSON text).
/// {"type": "text"} -> nullptr; {"type": "json_object"} -> any JSON object;
/// {"type": "json_schema", "json_schema": {"schema": {...}, ...}} -> that schema.
std::shared_ptr<const Grammar> grammar_from_response_format(std::string_view response_format_json);

/// How a model writes a tool call (from its chat template), for grammar_from_tools.
struct ToolCallFormat {
  std::string prefix;                      ///< e.g. "<tool_call>\n" (Qwen 2.5 / Qwen3); "" for Llama 3.1
  std::string suffix;                      ///< e.g. "\n</tool_call>"
  std::string arguments_key = "arguments"; ///< Llama 3.1's JSON calls use "parameters"
};

/// For a server: a grammar for one call of one of the OpenAI `tools` (JSON array text):
/// prefix {"name": "<function>", "<arguments_key>": <its parameters schema>} suffix.
/// `only_function` non-empty restricts it to that function (tool_choice naming one). Throws
/// Error naming the tool index for a malformed list or an unsupported parameter schema.
std::shared_ptr<const Grammar> grammar_from_tools(std::string_view tools_json,
                                                  const ToolCallFormat& format = {},
                                                  const std::string& only_function = "");

/// The vocabulary as a byte trie, built once per tokenizer and shared by matchers.
class GrammarVocab {
 public:
  static std::shared_ptr<const GrammarVocab> build(const Tokenizer& tokenizer);
  size_t size() const;  ///< tokens (the tokenizer's vocab_size)

  struct Impl;
  explicit GrammarVocab(std::unique_ptr<Impl> impl);
  ~GrammarVocab();
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// The state of one constrained generation: which text the grammar still admits.
class GrammarMatcher {
 public:
  GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const GrammarVocab> vocab);
  ~GrammarMatcher();
  GrammarMatcher(GrammarMatcher&&) noexcept;
  GrammarMatcher& operator=(GrammarMatcher&&) noexcept;

  /// allowed[id] = 1 for each token whose bytes keep the output inside the grammar (a token may
  /// span several grammar elements or end inside a UTF-8 character); end-of-generation tokens
  /// count only when the grammar can end here and `allow_end`. Returns how many are allowed.
  size_t compute_mask(std::vector<uint8_t>& allowed, bool allow_end = true);
  /// Sets the logits of disallowed tokens to -infinity; returns how many remain.
  size_t mask_logits(float* logits, size_t n_vocab, bool allow_end = true);
  /// Advances over a token; throws Error(kInvalidArgument) if the grammar rejects it.
  void accept_token(TokenId id);
  /// Advances over text; returns false (and changes nothing) if the grammar rejects it.
  bool accept_text(std::string_view text);
  /// The text so far is a complete sentence of the grammar.
  bool can_end() const;
  /// Nothing but the end can follow (the grammar is complete).
  bool is_complete() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace piquant
