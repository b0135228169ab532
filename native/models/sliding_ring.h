// A target's sliding-window attention layers (gpt-oss: every other layer, window 128) keep their
// K/V in a ring of pages per sequence instead of the shared page pool (docs/ARCHITECTURE.md,
// "Layer groups"): a layer with window w only ever reads keys (q - w, q], so a sequence needs
// the last w - 1 positions plus the positions one step writes, however long it grows. The ring
// is a fixed-size per-sequence state, as a Gated DeltaNet's is: one ring per state slot (the
// sequence's Sequence::slot; the last slot is the trash ring of padding rows), saved and restored
// whole for prefix caching. Logical page j of a sequence lives in ring page j mod ring_pages, so a
// ring copied to another slot still maps every position it holds.
//
//   ring cache (Ls, 1 + M * ring_pages, S, kvh, hd): page 0 is the trash page (padding positions
//   write there, as in the shared pool); slot m's ring is pages [1 + m * ring_pages, 1 + (m + 1) * ring_pages).
#pragma once
#include <cstdint>
#include <vector>

#include "hlo/builder.h"

namespace dflash::models {

// Ring pages per sequence for a widest window `window`, pages of `page_size` slots and steps of at
// most `step_tokens` positions: every key a step's queries see, (first - window, last], and every
// position it writes lie in distinct ring pages.
inline int64_t RingPages(int64_t window, int64_t page_size, int64_t step_tokens) {
  return (window + step_tokens - 1 + page_size - 1) / page_size + 1;
}

// (Ls, 1 + slots * ring_pages, S, kvh, hd): the K (or V) ring cache of `layers` sliding layers.
inline std::vector<int64_t> RingCacheDims(int64_t layers, int64_t slots, int64_t ring_pages, int64_t page_size, int64_t kv_heads,
                                          int64_t head_dim) {
  return {layers, 1 + slots * ring_pages, page_size, kv_heads, head_dim};
}

// The block table of the rows' rings, (R, P) s32: entry j of row r is ring page
// 1 + slot[r] * ring_pages + j mod ring_pages. slot: (R) s32.
inline hlo::Value RingTable(hlo::Builder& b, const hlo::Value& slot, int64_t ring_pages, int64_t width) {
  const int64_t r = slot.shape[0];
  const hlo::DType s32 = hlo::DType::kS32;
  const hlo::Value j = b.Rem(b.Iota({r, width}, s32, 1), b.Scalar(static_cast<double>(ring_pages), s32));
  const hlo::Value base = b.Add(b.Mul(b.Reshape(slot, {r, 1}), b.Scalar(static_cast<double>(ring_pages), s32)), b.Scalar(1, s32));
  return b.Add(j, base);
}

}  // namespace dflash::models
