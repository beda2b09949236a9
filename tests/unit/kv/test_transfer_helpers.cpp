#include <doctest/doctest.h>

#include "kv/transfer_descriptor.h"
#include "kv/ucx_endpoint.h"
#include "kv/ucx_status.h"

using pdctl::Errc;
using namespace pdctl::kv;

TEST_CASE("engine descriptors round-trip and refuse damaged bytes") {
  EngineDescriptor d;
  d.worker_address = std::string("\x01\x02\x00\x03", 4);
  d.process = {"boot/pid:[1]", 1234, 567890};
  d.regions.push_back({0x7f0000001000, 1 << 20, std::string("rkey\0one", 8)});
  d.regions.push_back({0x7f0000200000, 4096, "k2"});
  const std::string bytes = encode_descriptor(d);
  auto back = decode_descriptor(bytes);
  REQUIRE(back.has_value());
  CHECK(*back == d);

  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK(decode_descriptor(bytes.substr(0, cut)).status().code() == Errc::kCorrupt);
  }
  CHECK(decode_descriptor(bytes + "x").status().code() == Errc::kCorrupt);
  std::string other_version = bytes;
  other_version[4] = 9;
  CHECK(decode_descriptor(other_version).status().code() == Errc::kCorrupt);
}

TEST_CASE("UCX status codes map to pdctl errors") {
  CHECK(ucx_status(UCS_OK, "x").is_ok());
  CHECK(ucx_status(UCS_ERR_CONNECTION_RESET, "put").code() == Errc::kUnavailable);
  CHECK(ucx_status(UCS_ERR_ENDPOINT_TIMEOUT, "put").code() == Errc::kUnavailable);
  CHECK(ucx_status(UCS_ERR_UNREACHABLE, "ep").code() == Errc::kUnavailable);
  CHECK(ucx_status(UCS_ERR_CANCELED, "flush").code() == Errc::kCancelled);
  CHECK(ucx_status(UCS_ERR_NO_MEMORY, "map").code() == Errc::kResourceExhausted);
  CHECK(ucx_status(UCS_ERR_TIMED_OUT, "x").code() == Errc::kTimeout);
  CHECK(ucx_status(UCS_ERR_NO_DEVICE, "x").code() == Errc::kUnavailable);
  pdctl::Status s = ucx_status(UCS_ERR_IO_ERROR, "ucp_put_nbx");
  CHECK(s.code() == Errc::kIo);
  CHECK(s.message().find("ucp_put_nbx") == 0);
  // Not a final status for any call pdctl makes: reported as a bug.
  CHECK(ucx_status(UCS_ERR_BUSY, "x").code() == Errc::kInternal);
}

TEST_CASE("endpoint transports are read from ucp_ep_print_info's lanes") {
  // As UCX 1.13 prints it for a posix,cma endpoint without peer-failure handling.
  const std::string info =
      "#\n# UCP endpoint \n#\n#               peer: <no debug data>\n"
      "#                 lane[0]:  0:posix/memory.0 md[0]          -> md[0]/posix/sysdev[255] am am_bw#0\n"
      "#                 lane[1]:  1:cma/memory.0 md[1]            -> md[1]/cma/sysdev[255] rma_bw#0\n"
      "#\n#                 am_send: 0..<egr/short>..93..<egr/bcopy>..8256..<rndv>..(inf)\n"
      "#                  put[0]: 0..<short>..4294967296..<bcopy>..(inf)\n";
  CHECK(summarize_endpoint_info(info) == "posix/memory (am am_bw), cma/memory (rma_bw)");
  CHECK(summarize_endpoint_info("") == "");
}
