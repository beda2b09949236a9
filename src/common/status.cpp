#include "common/status.h"

namespace pdctl {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::kOk: return "ok";
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kNotFound: return "not_found";
    case Errc::kOutOfRange: return "out_of_range";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kCorrupt: return "corrupt";
    case Errc::kIo: return "io_error";
    case Errc::kResourceExhausted: return "resource_exhausted";
    case Errc::kTimeout: return "timeout";
    case Errc::kCancelled: return "cancelled";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kAlreadyExists: return "already_exists";
    case Errc::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(errc_name(code_)) + ": " + message_;
}

}  // namespace pdctl
