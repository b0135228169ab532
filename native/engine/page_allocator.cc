// Page allocator: see page_allocator.h.
#include "engine/page_allocator.h"

#include <string>

namespace dflash::engine {

PageAllocator::PageAllocator(int32_t total_pages) : total_(total_pages) {
  if (total_pages < 2) throw std::invalid_argument("PageAllocator: need at least 2 pages (page 0 is reserved)");
  in_use_.assign(total_pages, 0);
  in_use_[0] = 1;  // trash page
  for (int32_t p = total_pages - 1; p >= 1; --p) free_.push_back(p);
}

void PageAllocator::GrowTo(std::vector<int32_t>& table, int32_t pages) {
  const int32_t need = pages - static_cast<int32_t>(table.size());
  if (need <= 0) return;
  if (need > free_pages()) {
    throw OutOfPages("KV cache exhausted: need " + std::to_string(need) + " more pages, " +
                     std::to_string(free_pages()) + " of " + std::to_string(total_ - 1) +
                     " free (raise maxSeqLen/numPages or run fewer sequences at once)");
  }
  for (int32_t i = 0; i < need; ++i) {
    const int32_t p = free_.back();
    free_.pop_back();
    in_use_[p] = 1;
    table.push_back(p);
  }
}

void PageAllocator::ShrinkTo(std::vector<int32_t>& table, int32_t pages) {
  if (pages < 0) pages = 0;
  while (static_cast<int32_t>(table.size()) > pages) {
    const int32_t p = table.back();
    table.pop_back();
    if (p <= 0 || p >= total_ || !in_use_[p]) throw std::logic_error("PageAllocator: bad or double free of page " + std::to_string(p));
    in_use_[p] = 0;
    free_.push_back(p);
  }
}

}  // namespace dflash::engine
