// Page allocator of the paged KV cache: hands out fixed-size pages of the device cache to
// sequences and takes them back. Page 0 is the trash page (padding tokens write there), so it
// is never handed out. Pure bookkeeping on the host; the device arrays never move.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace dflash::engine {

// Thrown when a request needs more pages than are free; the message says how many.
struct OutOfPages : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class PageAllocator {
 public:
  // total_pages includes the trash page 0.
  explicit PageAllocator(int32_t total_pages);

  int32_t total_pages() const { return total_; }
  int32_t free_pages() const { return static_cast<int32_t>(free_.size()); }
  // Pages a sequence of `tokens` tokens needs.
  static int32_t PagesFor(int64_t tokens, int32_t page_size) {
    return static_cast<int32_t>((tokens + page_size - 1) / page_size);
  }

  // Grows `table` (a sequence's block table) to `pages` entries; all or nothing.
  void GrowTo(std::vector<int32_t>& table, int32_t pages);
  // Shrinks `table` to `pages` entries, returning the rest to the free list.
  void ShrinkTo(std::vector<int32_t>& table, int32_t pages);
  void Release(std::vector<int32_t>& table) { ShrinkTo(table, 0); }

 private:
  int32_t total_;
  std::vector<int32_t> free_;     // stack of free page ids (low ids handed out first)
  std::vector<uint8_t> in_use_;   // guards against double frees
};

}  // namespace dflash::engine
