// The first put into a peer's UCX-allocated region over shared memory, alone: a receiving
// process allocates a 256 MiB region with UCP_MEM_MAP_ALLOCATE and touches it (as decode
// does with its KV pool); the sender puts `MiB` from touched memory in 1 MiB puts, three
// passes, and prints GB/s and its own minor page faults per pass. With `prefault` 1 it first
// fills its mapping of the peer's region (ucp_rkey_ptr + MADV_POPULATE_WRITE), as the
// transfer engine now does when a peer becomes ready.
//   ninja -C build bench_shm_first_touch && UCX_TLS=posix,cma,self build/bench/bench_shm_first_touch 16 0
// Blocking waits and a busy flush loop are fine here: a benchmark, not product code.
#include <ucp/api/ucp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
static void wr(int fd, const void* p, size_t n) { size_t o = 0; while (o < n) { ssize_t r = write(fd, (const char*)p + o, n - o); if (r <= 0) exit(9); o += r; } }
static void rd(int fd, void* p, size_t n) { size_t o = 0; while (o < n) { ssize_t r = read(fd, (char*)p + o, n - o); if (r <= 0) exit(9); o += r; } }
static void blob_w(int fd, const void* p, size_t n) { wr(fd, &n, sizeof n); wr(fd, p, n); }
static std::string blob_r(int fd) { size_t n; rd(fd, &n, sizeof n); std::string s(n, 0); rd(fd, s.data(), n); return s; }
static void setup(ucp_context_h* c, ucp_worker_h* w) {
  ucp_params_t p{}; p.field_mask = UCP_PARAM_FIELD_FEATURES; p.features = UCP_FEATURE_RMA;
  if (ucp_init(&p, nullptr, c) != UCS_OK) exit(2);
  ucp_worker_params_t wp{}; wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE; wp.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (ucp_worker_create(*c, &wp, w) != UCS_OK) exit(3);
}
static long minflt() { rusage u; getrusage(RUSAGE_SELF, &u); return u.ru_minflt; }
int main(int argc, char** argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s MiB [prefault 0|1]\n", argv[0]); return 1; }
  const size_t region = 256ul << 20, total = size_t(atol(argv[1])) << 20, put = 1 << 20;
  if (total == 0 || total > region) { fprintf(stderr, "MiB: 1..256\n"); return 1; }
  const bool prefault = argc > 2 && atoi(argv[2]);
  int a[2], b[2]; if (pipe(a) || pipe(b)) return 1;  // a: recv->send, b: send->recv
  pid_t pid = fork();
  ucp_context_h ctx; ucp_worker_h w; setup(&ctx, &w);
  if (pid == 0) {  // receiver: decode's pool
    ucp_mem_map_params_t mp{}; mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_ADDRESS;
    mp.address = nullptr; mp.length = region; mp.flags = UCP_MEM_MAP_ALLOCATE; ucp_mem_h mh;
    if (ucp_mem_map(ctx, &mp, &mh) != UCS_OK) return 4;
    ucp_mem_attr_t at{}; at.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS; ucp_mem_query(mh, &at);
    memset(at.address, 0, region);
    void* rk; size_t rkn; ucp_rkey_pack(ctx, mh, &rk, &rkn);
    ucp_address_t* addr; size_t an; ucp_worker_get_address(w, &addr, &an);
    blob_w(a[1], addr, an); blob_w(a[1], rk, rkn); uint64_t base = (uint64_t)at.address; wr(a[1], &base, 8);
    char x; rd(b[0], &x, 1);  // sender done
    return 0;
  }
  std::string addr = blob_r(a[0]), rk = blob_r(a[0]); uint64_t base; rd(a[0], &base, 8);
  ucp_ep_params_t ep{}; ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS; ep.address = (const ucp_address_t*)addr.data();
  ucp_ep_h e; if (ucp_ep_create(w, &ep, &e) != UCS_OK) return 5;
  ucp_rkey_h rkey; if (ucp_ep_rkey_unpack(e, rk.data(), &rkey) != UCS_OK) return 6;
  std::vector<char> src(total, 1);  // prefill's pool pages (touched)
  auto flush = [&] { ucp_request_param_t p{}; void* r = ucp_ep_flush_nbx(e, &p);
    if (UCS_PTR_IS_PTR(r)) { while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(w); ucp_request_free(r); } };
  flush();  // wire-up
  void* local = nullptr; ucs_status_t ps = ucp_rkey_ptr(rkey, base, &local);
  printf("rkey_ptr: %s (%p)\n", ucs_status_string(ps), local);
  if (prefault && ps == UCS_OK) {
    auto t0 = std::chrono::steady_clock::now(); long f0 = minflt();
    int rc = madvise((void*)((uintptr_t)local & ~4095ul), region, MADV_POPULATE_WRITE);
    printf("prefault 256 MiB: rc %d, %.1f ms, %ld faults\n", rc, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(), minflt() - f0);
  }
  for (int pass = 0; pass < 3; ++pass) {
    long f0 = minflt(); auto t0 = std::chrono::steady_clock::now();
    for (size_t o = 0; o < total; o += put) {
      ucp_request_param_t p{}; void* r = ucp_put_nbx(e, src.data() + o, put, base + o, rkey, &p);
      if (UCS_PTR_IS_PTR(r)) ucp_request_free(r);
    }
    flush();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    printf("pass %d: %zu MiB in %.2f ms = %.2f GB/s, %ld minor faults\n", pass, total >> 20, ms, total / ms / 1e6, minflt() - f0);
  }
  char x = 1; wr(b[1], &x, 1); waitpid(pid, nullptr, 0); return 0;
}
