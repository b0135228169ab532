// Paged-cache addressing shared by the target and the drafter programs. A cache holds, per
// layer, N pages of S token slots: (L, N, S, kvh, hd). Row r of a batch owns the pages listed in
// its block table (R, P); the token at position q lives in page table[r, q / S], slot q % S.
// Page 0 is the trash page: padding tokens (position -1) write there and nothing reads it.
#pragma once
#include <cstdint>
#include <vector>

#include "hlo/builder.h"

namespace dflash::models {

// The key and value caches' shapes: (L, N, S, kvh, hd) for `layers` layers of `pages` pages.
std::vector<int64_t> KeyCacheDims(int64_t layers, int64_t pages, int64_t page_size, int64_t kv_heads, int64_t head_dim);
std::vector<int64_t> ValueCacheDims(int64_t layers, int64_t pages, int64_t page_size, int64_t kv_heads, int64_t head_dim);


// [page, slot] per token, (R, K, 2) s32, for positions (R, K) (padding -> [0, 0]).
hlo::Value PagedWriteIndex(hlo::Builder& b, const hlo::Value& positions, const hlo::Value& table, int64_t page_size);

// cache with layer `layer`'s slots at `index` (R, K, 2) replaced by rows (R, K, kvh, hd)
// (converted to the cache's dtype).
hlo::Value PagedWrite(hlo::Builder& b, const hlo::Value& cache, int64_t layer, const hlo::Value& index, const hlo::Value& rows);

// The same for every layer at once: rows[l] (R, K, kvh, hd) into layer l, one scatter.
hlo::Value PagedWriteLayers(hlo::Builder& b, const hlo::Value& cache, const hlo::Value& index, const std::vector<hlo::Value>& rows);

// Layer `layer`'s slots of every row's pages, in position order: (R, P * S, kvh, hd). The
// programs read pages chunk by chunk (paged_attention.h); this whole read is the plain reference
// the tests compare them with.
hlo::Value PagedRead(hlo::Builder& b, const hlo::Value& cache, int64_t layer, const hlo::Value& table);

}  // namespace dflash::models
