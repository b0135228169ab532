// Paged-cache addressing: see paged.h.
#include "models/paged.h"

#include <algorithm>
#include <stdexcept>

#include "models/layers.h"

namespace dflash::models {

using hlo::DType;
using hlo::Value;

std::vector<int64_t> KeyCacheDims(int64_t layers, int64_t pages, int64_t page_size, int64_t kv_heads, int64_t head_dim) {
  return {layers, pages, page_size, kv_heads, head_dim};
}

std::vector<int64_t> ValueCacheDims(int64_t layers, int64_t pages, int64_t page_size, int64_t kv_heads, int64_t head_dim) {
  return {layers, pages, page_size, kv_heads, head_dim};
}

Value PagedWriteIndex(hlo::Builder& b, const Value& positions, const Value& table, int64_t s) {
  const int64_t r = positions.shape[0], k = positions.shape[1];
  if (table.rank() != 2 || table.shape[0] != r)
    throw std::invalid_argument("paged: block table " + hlo::ShapeString(table.shape) + " for positions " + hlo::ShapeString(positions.shape));
  const Value zero = b.Scalar(0, DType::kS32);
  const Value valid = b.Compare(positions, zero, hlo::Cmp::kGE);  // (R, K)
  const Value pc = b.Max(positions, zero);
  const Value page_idx = b.Div(pc, b.Scalar(static_cast<double>(s), DType::kS32));  // (R, K)
  const Value row = b.Iota({r, k, 1}, DType::kS32, 0);
  const Value page = b.Gather(table, b.Concatenate({row, b.Reshape(page_idx, {r, k, 1})}, 2),
                              hlo::GatherDims{{}, {0, 1}, {0, 1}, 2}, {1, 1});  // (R, K)
  const Value page_w = b.Reshape(b.Select(valid, page, zero), {r, k, 1});
  const Value slot_w = b.Reshape(b.Select(valid, b.Rem(pc, b.Scalar(static_cast<double>(s), DType::kS32)), zero), {r, k, 1});
  return b.Concatenate({page_w, slot_w}, 2);
}

Value PagedWrite(hlo::Builder& b, const Value& cache, int64_t layer, const Value& index, const Value& rows) {
  const int64_t r = index.shape[0], k = index.shape[1];
  const Value li = b.Splat(static_cast<double>(layer), {r, k, 1}, DType::kS32);
  const Value idx = b.Concatenate({li, index}, 2);  // (R, K, 3): layer, page, slot; window (kvh, hd)
  return b.Scatter(cache, idx, b.Convert(rows, cache.dtype), hlo::ScatterDims{{2, 3}, {0, 1, 2}, {0, 1, 2}, 2});
}

Value PagedWriteLayers(hlo::Builder& b, const Value& cache, const Value& index, const std::vector<Value>& rows) {
  const int64_t layers = static_cast<int64_t>(rows.size()), r = index.shape[0], k = index.shape[1];
  if (layers != cache.shape[0]) throw std::invalid_argument("paged: " + std::to_string(layers) + " layers of rows for cache " + hlo::ShapeString(cache.shape));
  std::vector<Value> stacked, idx;
  for (int64_t l = 0; l < layers; ++l) {
    stacked.push_back(b.Reshape(b.Convert(rows[l], cache.dtype), {1, r, k, cache.shape[3], cache.shape[4]}));
    idx.push_back(b.Reshape(b.Concatenate({b.Splat(static_cast<double>(l), {r, k, 1}, DType::kS32), index}, 2), {1, r, k, 3}));
  }
  // (L, R, K, 3) indices [layer, page, slot]; updates (L, R, K, kvh, hd), window (kvh, hd).
  return b.Scatter(cache, b.Concatenate(idx, 0), b.Concatenate(stacked, 0), hlo::ScatterDims{{3, 4}, {0, 1, 2}, {0, 1, 2}, 3});
}

Value PagedRead(hlo::Builder& b, const Value& cache, int64_t layer, const Value& table) {
  const int64_t r = table.shape[0], p = table.shape[1], s = cache.shape[2], kvh = cache.shape[3], hd = cache.shape[4];
  const Value idx = b.Concatenate({b.Splat(static_cast<double>(layer), {r, p, 1}, DType::kS32), b.Reshape(table, {r, p, 1})}, 2);
  const Value pages = b.Gather(cache, idx, hlo::GatherDims{{2, 3, 4}, {0, 1}, {0, 1}, 2}, {1, 1, s, kvh, hd});
  return b.Reshape(pages, {r, p * s, kvh, hd});  // (R, P, S, kvh, hd) -> (R, T, kvh, hd)
}

}  // namespace dflash::models
