#include "common/mapped_file.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace pdctl {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Large files (model weights) are mapped at a 2 MiB-aligned address with MADV_HUGEPAGE:
// where the page cache holds the file in 2 MiB folios (ext4 and others on recent kernels,
// when the file is read through such a mapping), the kernel then maps them with one TLB
// entry each. Decode streams every weight once per token, and 4 KiB pages cost it ~10% of
// its read bandwidth (TLB misses; the prefetchers stop at each page). Best effort: where
// the kernel declines, this is an ordinary mapping.
void* map_aligned(int fd, size_t size) {
  if (size < kHugePage) return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  void* r = ::mmap(nullptr, size + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const uintptr_t base = reinterpret_cast<uintptr_t>(r);
  const uintptr_t aligned = (base + kHugePage - 1) & ~(kHugePage - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    ::munmap(r, size + kHugePage);
    return ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  // Give back the reservation around the mapping.
  if (aligned > base) ::munmap(r, aligned - base);
  const uintptr_t end = aligned + ((size + 4095) & ~size_t{4095});
  if (base + size + kHugePage > end) ::munmap(reinterpret_cast<void*>(end), base + size + kHugePage - end);
  ::madvise(p, size, MADV_HUGEPAGE);
  return p;
}

}  // namespace

Result<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::io(path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Status::io(path + ": " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::io(path + ": not a regular file");
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  if (f.size_ > 0) {
    void* p = map_aligned(fd, f.size_);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return Status::io(path + ": mmap: " + std::strerror(e));
    }
    f.data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      path_(std::move(other.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace pdctl
