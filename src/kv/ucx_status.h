#pragma once
// The one place where UCX status codes become pdctl::Status.
#include <string_view>

#include <ucs/type/status.h>

#include "common/status.h"

namespace pdctl::kv {

// Translates `st` into a Status whose message starts with `what` (the UCX call or the object
// that failed). UCS_OK gives an ok Status. Codes that pdctl does not expect from the calls it
// makes are logged as warnings and reported as internal errors.
Status ucx_status(ucs_status_t st, std::string_view what);

// The status carried by a UCX "status pointer" (NULL, an error code, or a request).
inline ucs_status_t ucx_ptr_status(void* ptr) { return UCS_PTR_STATUS(ptr); }

}  // namespace pdctl::kv
