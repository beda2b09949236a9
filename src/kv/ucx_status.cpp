#include "kv/ucx_status.h"

#include <string>

#include <spdlog/spdlog.h>

namespace pdctl::kv {

Status ucx_status(ucs_status_t st, std::string_view what) {
  if (st == UCS_OK) return Status::ok();
  std::string msg = std::string(what) + ": " + ucs_status_string(st) + " (UCS " + std::to_string(int(st)) + ")";
  // Link and endpoint failures come in ranges rather than single codes.
  if (UCS_IS_LINK_ERROR(st) || UCS_IS_ENDPOINT_ERROR(st)) return Status::unavailable(std::move(msg));
  switch (st) {
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_EXCEEDS_LIMIT:
      return Status::resource_exhausted(std::move(msg));
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return Status::invalid_argument(std::move(msg));
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_NOT_IMPLEMENTED:
      return Status::unsupported(std::move(msg));
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_NO_DEVICE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_REJECTED:
    case UCS_ERR_SOME_CONNECTS_FAILED:
      return Status::unavailable(std::move(msg));
    case UCS_ERR_TIMED_OUT:
      return Status::timeout(std::move(msg));
    case UCS_ERR_CANCELED:
      return Status::cancelled(std::move(msg));
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SHMEM_SEGMENT:
      return Status::io(std::move(msg));
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_BUFFER_TOO_SMALL:
    case UCS_ERR_OUT_OF_RANGE:
      return Status::out_of_range(std::move(msg));
    case UCS_ERR_NO_ELEM:
      return Status::not_found(std::move(msg));
    case UCS_ERR_ALREADY_EXISTS:
      return Status::already_exists(std::move(msg));
    default:
      // UCS_INPROGRESS, UCS_ERR_BUSY, UCS_ERR_NO_MESSAGE, UCS_ERR_NO_PROGRESS and anything
      // newer: none of the calls pdctl makes should hand these back as a final status.
      spdlog::warn("unexpected UCX status from {}: {} ({})", what, ucs_status_string(st), int(st));
      return Status::internal(std::move(msg));
  }
}

}  // namespace pdctl::kv
