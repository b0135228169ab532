// File bytes mapped for one tensor, and host memory for one tensor being assembled: each mapped
// and unmapped on its own, so a load never holds a second copy of the model (engine/weights.h).
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace dflash::engine {

// A read-only mapping of bytes [offset, offset + size) of a file (the mapping itself starts at
// the page boundary below offset). Unmapped on destruction, which drops the file pages from
// this process's resident set.
class MappedRange {
 public:
  MappedRange(const std::string& path, int64_t offset, int64_t size) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw std::runtime_error("cannot stat " + path);
    }
    if (offset < 0 || size < 0 || offset + size > st.st_size) {
      ::close(fd);
      throw std::runtime_error("bytes [" + std::to_string(offset) + ", " + std::to_string(offset + size) + ") lie past the end of " +
                               path + " (" + std::to_string(st.st_size) + " bytes; file truncated?)");
    }
    const int64_t page = ::sysconf(_SC_PAGESIZE);
    const int64_t start = offset / page * page;
    skip_ = offset - start;
    len_ = static_cast<size_t>(skip_ + size);
    if (len_ > 0) {
      base_ = ::mmap(nullptr, len_, PROT_READ, MAP_PRIVATE, fd, start);
      if (base_ == MAP_FAILED) {
        base_ = nullptr;
        ::close(fd);
        throw std::runtime_error("cannot mmap " + path + ": " + std::strerror(errno));
      }
      ::madvise(base_, len_, MADV_SEQUENTIAL);
    }
    ::close(fd);
  }
  ~MappedRange() {
    if (base_) ::munmap(base_, len_);
  }
  MappedRange(const MappedRange&) = delete;
  MappedRange& operator=(const MappedRange&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(base_) + skip_; }

 private:
  void* base_ = nullptr;
  size_t len_ = 0;
  int64_t skip_ = 0;
};

// Host memory for one tensor being assembled, mapped and unmapped on its own: a heap block of
// this size would stay in the allocator's free lists (and the resident set) after the load.
class StagingBuffer {
 public:
  explicit StagingBuffer(size_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map " + std::to_string(size_) + " bytes to assemble a weight: " + std::strerror(errno));
    data_ = static_cast<uint8_t*>(p);
  }
  ~StagingBuffer() {
    if (data_) ::munmap(data_, size_);
  }
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;
  uint8_t* data() { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_;
};

}  // namespace dflash::engine
