// Grammar masks on the device: see token_mask.h.
#include "models/token_mask.h"

#include <limits>

namespace dflash::models {

using hlo::DType;
using hlo::Value;

Value AllowedTokens(hlo::Builder& b, const Value& token_mask, int64_t vocab) {
  const int64_t r = token_mask.shape[0], k = token_mask.shape[1], w = token_mask.shape[2];
  // Each word repeated 32 times, shifted right by its bit index: (R, K, W, 32).
  const Value words = b.BroadcastInDim(token_mask, {r, k, w, 32}, {0, 1, 2});
  const Value bit = b.Iota({r, k, w, 32}, DType::kS32, 3);
  const Value set = b.And(b.ShiftRightLogical(words, bit), b.Scalar(1, DType::kS32));
  const Value allowed = b.Reshape(b.Compare(set, b.Scalar(0, DType::kS32), hlo::Cmp::kNE), {r, k, w * 32});
  return w * 32 == vocab ? allowed : b.SliceAxis(allowed, 2, 0, vocab);
}

Value MaskLogits(hlo::Builder& b, const Value& logits, const Value& allowed) {
  return b.Select(allowed, logits, b.Scalar(-std::numeric_limits<float>::max(), DType::kF32));
}

}  // namespace dflash::models
