// Paged-cache addressing shared by the target and the drafter programs. A cache holds, per
// layer, N pages of S token slots: (L, N, S, kvh, hd). Row r of a batch owns the pages listed in
// its block table (R, P); the token at position q lives in page table[r, q / S], slot q % S.
// Page 0 is the trash page: padding tokens (position -1) write there and nothing reads it.
#pragma once
#include "hlo/builder.h"

namespace dflash::models {

// [page, slot] per token, (R, K, 2) s32, for positions (R, K) (padding -> [0, 0]).
hlo::Value PagedWriteIndex(hlo::Builder& b, const hlo::Value& positions, const hlo::Value& table, int64_t page_size);

// cache with layer `layer`'s slots at `index` (R, K, 2) replaced by rows (R, K, kvh, hd)
// (converted to the cache's dtype).
hlo::Value PagedWrite(hlo::Builder& b, const hlo::Value& cache, int64_t layer, const hlo::Value& index, const hlo::Value& rows);

// Layer `layer`'s slots of every row's pages, in position order: (R, P * S, kvh, hd).
hlo::Value PagedRead(hlo::Builder& b, const hlo::Value& cache, int64_t layer, const hlo::Value& table);

// Causal visibility over the key slots a row reads: query at position q sees slot j iff j <= q.
// positions (R, K) -> pred (R, K, T) with T = P * S.
hlo::Value CausalVisible(hlo::Builder& b, const hlo::Value& positions, int64_t key_slots);

}  // namespace dflash::models
