// Page allocator of the paged KV cache, with automatic prefix caching. Hands out fixed-size pages
// of the device cache to sequences and takes them back; page 0 is the trash page (padding
// tokens write there), so it is never handed out. Pure bookkeeping on the host; the device arrays
// never move.
//
// Prefix caching (vLLM's automatic prefix caching): a page whose every slot holds a committed
// token can be registered under a hash chained over the tokens of every page before it and its
// own (PrefixHash). Another sequence whose prompt starts with the same tokens shares it (Share:
// reference counted, read only — sequences write only past their cached prefix) instead of
// computing it again. A registered page no sequence uses stays cached, evictable: GrowTo hands
// out free pages first, then the least recently used evictable ones (dropping their entries).
// Each entry keeps its page's tokens, so a hash collision can never share a wrong page, and
// whether the drafter's context rows of the page were written too (a page filled while
// decoding plainly has the target's K/V only).
#pragma once
#include <cstdint>
#include <list>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace dflash::engine {

// Thrown when a request needs more pages than are free; the message says how many.
struct OutOfPages : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The hash of a page given the hash of the page before it (`seed` for the first page: the
// engine's identity, so two models never share) and its page_size tokens.
uint64_t PrefixHash(uint64_t previous, const int32_t* tokens, int32_t page_size);

class PageAllocator {
 public:
  // total_pages includes the trash page 0; page_size: token slots per page (for cache entries).
  explicit PageAllocator(int32_t total_pages, int32_t page_size = 1);

  int32_t total_pages() const { return total_; }
  // Pages GrowTo can hand out: free ones and cached ones no sequence uses.
  int32_t free_pages() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t cached_pages() const { return static_cast<int32_t>(by_hash_.size()); }
  int32_t evictable_pages() const { return static_cast<int32_t>(lru_.size()); }
  // Pages a sequence of `tokens` tokens needs.
  static int32_t PagesFor(int64_t tokens, int32_t page_size) {
    return static_cast<int32_t>((tokens + page_size - 1) / page_size);
  }

  // Grows `table` (a sequence's block table) to `pages` entries; all or nothing.
  void GrowTo(std::vector<int32_t>& table, int32_t pages);
  // Shrinks `table` to `pages` entries; each page dropped loses a user (back to the free list,
  // or, when cached, to the evictable ones).
  void ShrinkTo(std::vector<int32_t>& table, int32_t pages);
  void Release(std::vector<int32_t>& table) { ShrinkTo(table, 0); }

  // ---- the prefix index ----
  // The page registered under `hash` holding exactly `tokens` (page_size of them), or -1.
  int32_t Find(uint64_t hash, const int32_t* tokens) const;
  // Appends cached page `page` to `table` as one more user of it (no longer evictable).
  void Share(std::vector<int32_t>& table, int32_t page);
  // Registers a full page a sequence holds under `hash` (its tokens kept for Find). Returns false
  // (and registers nothing) when another page is cached under that hash already, or `page` is.
  bool Register(int32_t page, uint64_t hash, const int32_t* tokens);
  bool registered(int32_t page) const { return page > 0 && page < total_ && entries_[page].cached; }
  // The drafter's context rows of a registered page are written too.
  void MarkContext(int32_t page);
  bool has_context(int32_t page) const { return registered(page) && entries_[page].context; }
  int32_t users(int32_t page) const { return refs_.at(page); }

 private:
  struct Entry {
    bool cached = false, context = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;
  };
  int32_t Take();  // a free page, else the least recently used evictable one (its entry dropped)
  void Unregister(int32_t page);

  int32_t total_, page_size_;
  std::vector<int32_t> free_;                     // stack of free page ids (low ids handed out first)
  std::vector<int32_t> refs_;                     // users of each page (0: free or evictable)
  std::list<int32_t> lru_;                        // evictable cached pages, least recently used first
  std::vector<std::list<int32_t>::iterator> lru_pos_;
  std::vector<uint8_t> in_lru_;
  std::vector<Entry> entries_;
  std::unordered_map<uint64_t, int32_t> by_hash_;
};

}  // namespace dflash::engine
