// Packed log-probabilities: see logprobs.h.
#include "models/logprobs.h"

#include <cstring>
#include <stdexcept>

namespace dflash::models {

using hlo::DType;
using hlo::Value;

Value PackedLogprobs(hlo::Builder& b, const Value& logits, const Value& tokens, int64_t top) {
  if (logits.rank() != 3 || tokens.shape != hlo::Shape{logits.shape[0], logits.shape[1]} || top < 0)
    throw std::invalid_argument("logprobs: logits " + hlo::ShapeString(logits.shape) + ", tokens " + hlo::ShapeString(tokens.shape));
  const int64_t r = logits.shape[0], k = logits.shape[1], v = logits.shape[2];
  // log_softmax in f32: x - (max + log sum exp(x - max))
  const Value x = b.Convert(logits, DType::kF32);
  const Value m = b.Reshape(b.Reduce(x, {2}, hlo::ReduceKind::kMax), {r, k, 1});
  const Value shifted = b.Sub(x, m);
  const Value lse = b.Reshape(b.Log(b.Reduce(b.Exp(shifted), {2}, hlo::ReduceKind::kSum)), {r, k, 1});
  const Value logp = b.Sub(shifted, lse);  // (R, K, V)
  // log p of each slot's token: the one column where the vocabulary index equals it.
  const Value hit = b.Compare(b.Iota({r, k, v}, DType::kS32, 2), b.Reshape(tokens, {r, k, 1}), hlo::Cmp::kEQ);
  const Value chosen = b.Reduce(b.Select(hit, logp, b.Scalar(0, DType::kF32)), {2}, hlo::ReduceKind::kSum);  // (R, K)
  std::vector<Value> parts{b.BitcastConvert(chosen, DType::kS32)};
  if (top > 0) {
    const auto [vals, ids] = b.TopK(logp, top);  // (R, K, top) each
    parts.push_back(b.Reshape(ids, {r, k * top}));
    parts.push_back(b.Reshape(b.BitcastConvert(vals, DType::kS32), {r, k * top}));
  }
  return parts.size() == 1 ? parts[0] : b.Concatenate(parts, 1);
}

SlotLogprobs UnpackSlot(const int32_t* packed, int64_t k, int64_t top, int64_t slot) {
  SlotLogprobs s;
  std::memcpy(&s.logprob, packed + slot, sizeof(float));
  if (top > 0) {
    s.top_ids = packed + k + slot * top;
    s.top_bits = packed + k + k * top + slot * top;
  }
  return s;
}

}  // namespace dflash::models
