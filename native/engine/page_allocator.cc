// Page allocator and prefix index: see page_allocator.h.
#include "engine/page_allocator.h"

#include <algorithm>
#include <string>

namespace dflash::engine {

uint64_t PrefixHash(uint64_t previous, const int32_t* tokens, int32_t page_size) {
  // splitmix64 over (previous, token...): every token moves all 64 bits, order matters.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t h = mix(previous + 0x9e3779b97f4a7c15ull);
  for (int32_t i = 0; i < page_size; ++i) h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 0x632be59bd9b4e019ull * (i + 1)));
  return h;
}

PageAllocator::PageAllocator(int32_t total_pages, int32_t page_size) : total_(total_pages), page_size_(page_size) {
  if (total_pages < 2) throw std::invalid_argument("PageAllocator: need at least 2 pages (page 0 is reserved)");
  if (page_size < 1) throw std::invalid_argument("PageAllocator: page_size must be >= 1");
  refs_.assign(total_pages, 0);
  refs_[0] = 1;  // the trash page is never handed out
  lru_pos_.resize(total_pages);
  in_lru_.assign(total_pages, 0);
  entries_.resize(total_pages);
  for (int32_t p = total_pages - 1; p >= 1; --p) free_.push_back(p);
}

int32_t PageAllocator::Take() {
  if (!free_.empty()) {
    const int32_t p = free_.back();
    free_.pop_back();
    return p;
  }
  const int32_t p = lru_.front();  // the least recently used cached page
  lru_.pop_front();
  in_lru_[p] = 0;
  Unregister(p);
  return p;
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
    const int32_t p = Take();
    refs_[p] = 1;
    table.push_back(p);
  }
}

void PageAllocator::ShrinkTo(std::vector<int32_t>& table, int32_t pages) {
  if (pages < 0) pages = 0;
  while (static_cast<int32_t>(table.size()) > pages) {
    const int32_t p = table.back();
    table.pop_back();
    if (p <= 0 || p >= total_ || refs_[p] <= 0) throw std::logic_error("PageAllocator: bad or double free of page " + std::to_string(p));
    if (--refs_[p] > 0) continue;  // another sequence still shares it
    if (entries_[p].cached) {
      lru_pos_[p] = lru_.insert(lru_.end(), p);  // most recently used last
      in_lru_[p] = 1;
    } else {
      free_.push_back(p);
    }
  }
}

int32_t PageAllocator::Find(uint64_t hash, const int32_t* tokens) const {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return -1;
  const Entry& e = entries_[it->second];
  return std::equal(e.tokens.begin(), e.tokens.end(), tokens) ? it->second : -1;
}

void PageAllocator::Share(std::vector<int32_t>& table, int32_t page) {
  if (!registered(page)) throw std::logic_error("PageAllocator: page " + std::to_string(page) + " is not cached");
  if (in_lru_[page]) {
    lru_.erase(lru_pos_[page]);
    in_lru_[page] = 0;
  }
  ++refs_[page];
  table.push_back(page);
}

bool PageAllocator::Register(int32_t page, uint64_t hash, const int32_t* tokens) {
  if (page <= 0 || page >= total_ || refs_[page] <= 0) throw std::logic_error("PageAllocator: register of a page nobody holds");
  if (entries_[page].cached || by_hash_.count(hash)) return false;
  Entry& e = entries_[page];
  e.cached = true;
  e.context = false;
  e.hash = hash;
  e.tokens.assign(tokens, tokens + page_size_);
  by_hash_.emplace(hash, page);
  return true;
}

void PageAllocator::MarkContext(int32_t page) {
  if (registered(page)) entries_[page].context = true;
}

void PageAllocator::Unregister(int32_t page) {
  Entry& e = entries_[page];
  if (!e.cached) return;
  by_hash_.erase(e.hash);
  e = Entry{};
}

}  // namespace dflash::engine
