// Attention over paged caches with the context length as data, not as a shape: a row's pages are
// read one chunk of key slots at a time by a while loop whose trip count the program computes
// from its inputs (the largest visible key slot of the batch), with an online softmax (running
// max, sum and weighted values, as flash attention keeps them). A program therefore serves every
// context length up to its block table's width, and the engine compiles one program where it
// used to compile one per pages bucket (docs/ARCHITECTURE.md, "Programs").
//
// Exactness: a chunk with no visible key leaves the running state bit-for-bit unchanged (its
// weights are exactly 0, the rescale factor exactly 1), so a row's output does not depend on how
// many chunks its batch neighbours need, nor on the table's width; every program of an engine
// scores the same chunk size, so the score kernels (whose results on XLA:CPU change with the
// number of key slots of a dot: layers.h) are the same in all of them.
#pragma once
#include <cstdint>
#include <optional>

#include "hlo/builder.h"
#include "models/numerics.h"

namespace dflash::models {

// Key slots scored per loop iteration: the smallest multiple of the page size that is at least
// `min_slots` (Numerics::key_chunk_slots; whole pages per iteration, and never under 32 slots,
// below which XLA:CPU's score kernels change).
int64_t KeyChunkSlots(int64_t page_size, int64_t min_slots);
// Block-table entries per row for rows reaching `max_positions` positions: whole chunks.
int64_t TableWidth(int64_t max_positions, int64_t page_size, int64_t min_chunk_slots);

// Which key slots (positions) query (r, t) sees: lo[r, t] <= j <= hi[r, t], both (R, Tq) s32
// (hi = -1: none, for padding queries).
struct KeyRange {
  hlo::Value lo, hi;
};

// Keys that are not in the pages (the drafter's block): k, v (R, Te, kvh, hd), visible pred
// (R, Tq, Te). Folded into the softmax after the pages.
struct ExtraKeys {
  hlo::Value k, v, visible;
};

// q: (R, Tq, heads, hd) in act; k_cache, v_cache: (L, N, S, kvh, hd); layer `layer`'s slots of
// row r are its block table's pages (table (R, P), P * S a whole number of chunks, or less than
// one chunk: then read as one) in position order. Scores f32, scaled by hd^-0.5; query head h
// reads kv head h / (heads / kvh). A query that sees no key gets zeros. `sinks` (heads), when
// given: one more logit per head in every softmax's denominator, with no value (gpt-oss).
// Returns (R, Tq, heads * hd) in act.
hlo::Value PagedAttention(hlo::Builder& b, const hlo::Value& q, const hlo::Value& k_cache, const hlo::Value& v_cache, int64_t layer,
                          const hlo::Value& table, const KeyRange& range, const Numerics& n,
                          const std::optional<ExtraKeys>& extra = std::nullopt, const hlo::Value& sinks = {});

// Key slots a query at `positions` (R, K) sees: causal, and within the last `window` positions
// when window > 0 (sliding attention: keys in (p - window, p]).
KeyRange CausalRange(hlo::Builder& b, const hlo::Value& positions, int64_t window = 0);

}  // namespace dflash::models
