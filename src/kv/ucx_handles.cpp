#include "kv/ucx_handles.h"

#include <sys/mman.h>
#include <unistd.h>

#include <memory>

#include <spdlog/spdlog.h>

#include "kv/ucx_status.h"

namespace pdctl::kv {

namespace {

struct ConfigDeleter {
  void operator()(ucp_config_t* c) const { ucp_config_release(c); }
};
using ConfigPtr = std::unique_ptr<ucp_config_t, ConfigDeleter>;

}  // namespace

// ---------------------------------------------------------------- context

Result<UcxContext> UcxContext::create(const UcxContextOptions& options) {
  ucp_config_t* raw = nullptr;
  // NULL prefix: read the UCX_* environment variables as every UCX tool does.
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_config_read(nullptr, nullptr, &raw), "ucp_config_read"));
  ConfigPtr config(raw);
  if (!options.transports.empty()) {
    PDCTL_RETURN_IF_ERROR(ucx_status(ucp_config_modify(config.get(), "TLS", options.transports.c_str()),
                                     "UCX_TLS=" + options.transports));
  }
  for (const auto& [name, value] : options.settings) {
    PDCTL_RETURN_IF_ERROR(ucx_status(ucp_config_modify(config.get(), name.c_str(), value.c_str()),
                                     "UCX_" + name + "=" + value));
  }

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  // RMA for the KV puts, AM for notices, WAKEUP so that the worker can sleep on an fd.
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 0;  // one worker, driven by one thread
  params.name = "pdctl";
  ucp_context_h h = nullptr;
  Status st = ucx_status(ucp_init(&params, config.get(), &h), "ucp_init");
  if (!st) {
    return std::move(st).with_context(options.transports.empty() ? "UCX context"
                                                                 : "UCX context with UCX_TLS=" + options.transports);
  }
  return UcxContext(h);
}

UcxContext& UcxContext::operator=(UcxContext&& o) noexcept {
  if (this != &o) {
    if (h_) ucp_cleanup(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

UcxContext::~UcxContext() {
  if (h_) ucp_cleanup(h_);
}

// ---------------------------------------------------------------- worker

Result<UcxWorker> UcxWorker::create(const UcxContext& context) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h h = nullptr;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_worker_create(context.get(), &params, &h), "ucp_worker_create"));
  return UcxWorker(h);
}

UcxWorker& UcxWorker::operator=(UcxWorker&& o) noexcept {
  if (this != &o) {
    if (h_) ucp_worker_destroy(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

UcxWorker::~UcxWorker() {
  if (h_) ucp_worker_destroy(h_);
}

Result<std::string> UcxWorker::address() const {
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_worker_get_address(h_, &addr, &len), "ucp_worker_get_address"));
  std::string out(reinterpret_cast<const char*>(addr), len);
  ucp_worker_release_address(h_, addr);
  return out;
}

Result<int> UcxWorker::event_fd() const {
  int fd = -1;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_worker_get_efd(h_, &fd), "ucp_worker_get_efd"));
  return fd;
}

// ---------------------------------------------------------------- memory

Result<UcxMemory> UcxMemory::map(const UcxContext& context, void* address, size_t length) {
  if (length == 0) return Status::invalid_argument("cannot register an empty memory region");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = address;
  params.length = length;
  if (address == nullptr) {
    params.field_mask |= UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    params.flags = UCP_MEM_MAP_ALLOCATE;
  }
  ucp_mem_h memh = nullptr;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_mem_map(context.get(), &params, &memh), "ucp_mem_map"));

  UcxMemory m;
  m.context_ = context.get();
  m.memh_ = memh;
  m.allocated_ = address == nullptr;
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_mem_query(memh, &attr), "ucp_mem_query"));
  m.data_ = static_cast<std::byte*>(attr.address);
  // UCX may round an allocation up; the caller asked for `length` and gets exactly that.
  m.size_ = length;
  return m;
}

UcxMemory::UcxMemory(UcxMemory&& o) noexcept
    : context_(std::exchange(o.context_, nullptr)),
      memh_(std::exchange(o.memh_, nullptr)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      allocated_(std::exchange(o.allocated_, false)) {}

UcxMemory& UcxMemory::operator=(UcxMemory&& o) noexcept {
  if (this != &o) {
    reset();
    context_ = std::exchange(o.context_, nullptr);
    memh_ = std::exchange(o.memh_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    allocated_ = std::exchange(o.allocated_, false);
  }
  return *this;
}

UcxMemory::~UcxMemory() { reset(); }

void UcxMemory::reset() {
  if (memh_) {
    Status st = ucx_status(ucp_mem_unmap(context_, memh_), "ucp_mem_unmap");
    if (!st) spdlog::warn("{}", st.to_string());
  }
  memh_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

Result<std::string> UcxMemory::pack_rkey() const {
  void* buf = nullptr;
  size_t len = 0;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_rkey_pack(context_, memh_, &buf, &len), "ucp_rkey_pack"));
  std::string out(static_cast<const char*>(buf), len);
  ucp_rkey_buffer_release(buf);
  return out;
}

// ---------------------------------------------------------------- remote key

Result<UcxRemoteKey> UcxRemoteKey::unpack(ucp_ep_h ep, std::string_view packed) {
  ucp_rkey_h h = nullptr;
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_ep_rkey_unpack(ep, packed.data(), &h), "ucp_ep_rkey_unpack"));
  return UcxRemoteKey(h);
}

size_t UcxRemoteKey::prefault(uint64_t remote_base, size_t size) const {
  void* local = nullptr;
  // Only a region this process reaches through a mapping (posix/sysv shared memory) has a
  // local address; for cma, tcp and verbs the kernel or the NIC does the copy.
  if (h_ == nullptr || size == 0 || ucp_rkey_ptr(h_, remote_base, &local) != UCS_OK || local == nullptr) return 0;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(local) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(local) + size;
  // Fills the page table writable without changing a byte (Linux 5.14+).
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0) return size;
  return 0;
}

UcxRemoteKey& UcxRemoteKey::operator=(UcxRemoteKey&& o) noexcept {
  if (this != &o) {
    if (h_) ucp_rkey_destroy(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

UcxRemoteKey::~UcxRemoteKey() {
  if (h_) ucp_rkey_destroy(h_);
}

}  // namespace pdctl::kv
