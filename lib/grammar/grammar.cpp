// Grammar: the public face of a parsed GBNF grammar (lib/grammar/gbnf_parser.cpp).
#include "grammar/grammar_impl.hpp"
#include "piquant/error.hpp"

namespace piquant {
Grammar::Grammar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Grammar::~Grammar() = default;

std::shared_ptr<const Grammar> Grammar::parse(std::string_view gbnf, const std::string& root) {
  auto impl = std::make_unique<Impl>();
  grammar::parse_gbnf(gbnf, root, *impl);
  return std::make_shared<const Grammar>(std::move(impl));
}

std::shared_ptr<const Grammar> Grammar::from_json_schema(std::string_view schema_json) {
  return parse(json_schema_to_gbnf(schema_json));
}

std::shared_ptr<const Grammar> Grammar::json_object() {
  return from_json_schema(R"({"type": "object"})");
}

const std::string& Grammar::gbnf() const { return impl_->source; }
size_t Grammar::rule_count() const { return impl_->rule_start.size(); }

}  // namespace piquant
