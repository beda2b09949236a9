#include "roles/up/line_prefixer.h"

namespace pdctl::roles::up {

void LinePrefixer::emit(std::string_view line, std::string& out) const {
  out.append(prefix_);
  out.append(line);
  out.push_back('\n');
}

void LinePrefixer::feed(std::string_view bytes, std::string& out) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, nl);
    if (nl == std::string_view::npos) {
      partial_.append(piece);
      bytes = {};
    } else {
      bytes.remove_prefix(nl + 1);
      if (partial_.empty()) {
        if (piece.size() <= max_line_) {
          emit(piece, out);
          continue;
        }
        partial_.append(piece);
      } else {
        partial_.append(piece);
      }
      // A whole line is in partial_ now (possibly over the limit: cut below).
      while (partial_.size() > max_line_) {
        emit(std::string_view(partial_).substr(0, max_line_), out);
        partial_.erase(0, max_line_);
      }
      emit(partial_, out);
      partial_.clear();
      continue;
    }
    while (partial_.size() > max_line_) {
      emit(std::string_view(partial_).substr(0, max_line_), out);
      partial_.erase(0, max_line_);
    }
  }
}

void LinePrefixer::finish(std::string& out) {
  if (partial_.empty()) return;
  emit(partial_, out);
  partial_.clear();
}

}  // namespace pdctl::roles::up
