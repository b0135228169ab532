// The KV page allocator and its prefix index: reference-counted sharing, cached pages kept
// evictable and taken back least recently used, lookups that compare tokens (a hash collision
// never shares a wrong page), duplicates kept private, double frees refused.
#include <gtest/gtest.h>

#include <vector>

#include "engine/page_allocator.h"

namespace dflash::engine {
namespace {

TEST(PageAllocator, SharedCachedPagesAreEvictedLeastRecentlyUsed) {
  PageAllocator a(6, 2);  // pages 1..5, 2 slots each
  std::vector<int32_t> x, y;
  a.GrowTo(x, 3);
  const std::vector<int32_t> t0 = {1, 2}, t1 = {3, 4}, t2 = {5, 6};
  const uint64_t h0 = PrefixHash(7, t0.data(), 2), h1 = PrefixHash(h0, t1.data(), 2), h2 = PrefixHash(h1, t2.data(), 2);
  EXPECT_TRUE(a.Register(x[0], h0, t0.data()));
  EXPECT_TRUE(a.Register(x[1], h1, t1.data()));
  EXPECT_FALSE(a.Register(x[2], h0, t0.data()));  // a duplicate of a cached page: stays private
  EXPECT_EQ(a.cached_pages(), 2);
  // Another sequence shares the first page: two users.
  ASSERT_EQ(a.Find(h0, t0.data()), x[0]);
  a.Share(y, x[0]);
  EXPECT_EQ(a.users(x[0]), 2);
  // Same hash, other tokens: no match (the entry keeps its tokens).
  const std::vector<int32_t> other = {1, 9};
  EXPECT_EQ(a.Find(h0, other.data()), -1);
  a.Release(x);  // page x[0] still used by y; x[1] cached, evictable; x[2] free
  EXPECT_EQ(a.free_pages(), 4);  // 2 never used + x[2] + the evictable x[1]
  EXPECT_EQ(a.evictable_pages(), 1);
  a.Release(y);  // x[0] evictable too, after x[1]
  EXPECT_EQ(a.evictable_pages(), 2);
  // Free pages go first; then the least recently used cached page (x[1], released first).
  std::vector<int32_t> z;
  a.GrowTo(z, 3);
  EXPECT_EQ(a.cached_pages(), 2);
  a.GrowTo(z, 4);
  EXPECT_EQ(a.Find(h1, t1.data()), -1);  // evicted
  EXPECT_GE(a.Find(h0, t0.data()), 1);   // still cached
  a.GrowTo(z, 5);
  EXPECT_EQ(a.cached_pages(), 0);
  EXPECT_THROW(a.GrowTo(z, 6), OutOfPages);
  a.Release(z);
  EXPECT_EQ(a.free_pages(), 5);
  std::vector<int32_t> free_page = {3};
  EXPECT_THROW(a.Release(free_page), std::logic_error);  // a page nobody holds
}

TEST(PageAllocator, ThePrefixHashChainsEveryPageBeforeIt) {
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  const uint64_t first = PrefixHash(0, a.data(), 2);
  EXPECT_EQ(first, PrefixHash(0, b.data(), 2));                                     // same first page
  EXPECT_NE(PrefixHash(first, a.data() + 2, 2), PrefixHash(first, b.data() + 2, 2));  // second page differs
  EXPECT_NE(PrefixHash(1, a.data(), 2), first);                                      // another engine's seed
  EXPECT_NE(PrefixHash(first, a.data(), 2), PrefixHash(PrefixHash(0, a.data() + 2, 2), a.data(), 2));  // order matters
}

}  // namespace
}  // namespace dflash::engine
