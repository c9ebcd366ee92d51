#include "util/stop_filter.hpp"

#include <algorithm>

namespace piquant {

StopFilter::StopFilter(const std::vector<std::string>& stops) {
  for (const std::string& s : stops) {
    if (!s.empty()) stops_.push_back(s);
  }
}

std::string StopFilter::push(std::string_view piece) {
  if (stopped_) return {};
  const size_t before = text_.size();
  text_ += piece;
  // The earliest match that ends in the new piece (matches ending earlier were ruled out).
  size_t at = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    at = std::min(at, text_.find(s, from));
  }
  if (at != std::string::npos) {
    text_.resize(at);
    stopped_ = true;
    std::string out = at > shown_ ? text_.substr(shown_) : std::string();
    shown_ = text_.size();
    return out;
  }
  // Hold back the longest end of the text that is a proper prefix of a stop string. It never
  // reaches into text already shown: that end was itself held back when it was the end.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t h = std::min(s.size() - 1, text_.size()); h > hold; --h) {
      if (text_.compare(text_.size() - h, h, s, 0, h) == 0) {
        hold = h;
        break;
      }
    }
  }
  const size_t end = std::max(shown_, text_.size() - hold);
  std::string out = text_.substr(shown_, end - shown_);
  shown_ = end;
  return out;
}

std::string StopFilter::finish() {
  if (stopped_) return {};
  std::string out = text_.substr(shown_);
  shown_ = text_.size();
  return out;
}

}  // namespace piquant
