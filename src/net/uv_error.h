#pragma once
// Internal to src/net: libuv error codes as Status values, converted in one place.
#include <string_view>

#include "common/status.h"

namespace pdctl::net {

// `what` names the operation ("connect 10.0.0.2:30001"); the message adds libuv's text.
Status uv_error(int code, std::string_view what);

}  // namespace pdctl::net
