#pragma once
// Stop strings over streamed text (GenerateOptions::stop). Pieces of generated text go in; what
// comes out is the text that is safe to show: the end of the text that could still be the start
// of a stop string is held back until later pieces decide it, so a caller that prints what comes
// out never prints any part of a stop string (as llama.cpp's server does). Used by
// Session::generate and Conversation::send.
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

class StopFilter {
 public:
  explicit StopFilter(const std::vector<std::string>& stops);

  /// Adds a piece; returns the text that became safe to show (possibly empty). When the piece
  /// completes a stop string, stopped() turns true, text() ends just before the earliest match
  /// and the return value is whatever was held back before it.
  std::string push(std::string_view piece);
  /// At the end of generation (no stop string found): the text still held back.
  std::string finish();

  bool stopped() const { return stopped_; }
  /// All text taken in, up to (not including) the stop string once one was found.
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  std::string text_;
  size_t shown_ = 0;  ///< text_[0, shown_) has been returned
  bool stopped_ = false;
};

}  // namespace piquant
