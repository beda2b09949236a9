#include "net/uv_error.h"

#include <string>

#include <uv.h>

namespace pdctl::net {

Status uv_error(int code, std::string_view what) {
  std::string msg = std::string(what) + ": " + uv_strerror(code);
  switch (code) {
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_EOF:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_ENETDOWN:
    case UV_EAI_AGAIN:
    case UV_EAI_NONAME:
    case UV_EAI_FAIL:
    case UV_EAI_NODATA:
      return Status::unavailable(std::move(msg));
    case UV_ETIMEDOUT:
      return Status::timeout(std::move(msg));
    case UV_ECANCELED:
      return Status::cancelled(std::move(msg));
    case UV_EINVAL:
    case UV_EAI_FAMILY:
      return Status::invalid_argument(std::move(msg));
    case UV_EMFILE:
    case UV_ENFILE:
    case UV_ENOBUFS:
    case UV_ENOMEM:
      return Status::resource_exhausted(std::move(msg));
    default:
      return Status::io(std::move(msg));
  }
}

}  // namespace pdctl::net
