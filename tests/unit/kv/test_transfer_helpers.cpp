#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include "kv/process_identity.h"
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

TEST_CASE("same-host liveness: running, exited (zombie or reaped), pid reused, other host") {
  const ProcessIdentity self = self_identity();
  REQUIRE(!self.host.empty());
  CHECK(check_liveness(self, self) == Liveness::kAlive);

  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ProcessIdentity child = self;
  child.pid = uint32_t(pid);
  // Not reaped yet: a zombie, which is gone as far as a peer is concerned.
  siginfo_t info{};
  REQUIRE(waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == 0);
  CHECK(check_liveness(child, self) == Liveness::kGone);
  waitpid(pid, nullptr, 0);
  CHECK(check_liveness(child, self) == Liveness::kGone);

  ProcessIdentity reused = self;
  reused.start_time += 1;  // same pid, another process
  CHECK(check_liveness(reused, self) == Liveness::kGone);
  ProcessIdentity elsewhere = self;
  elsewhere.host = "another-boot-id/pid:[1]";
  CHECK(check_liveness(elsewhere, self) == Liveness::kUnknown);
}
