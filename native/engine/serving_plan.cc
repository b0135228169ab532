#include "engine/serving_plan.h"

#include <algorithm>

namespace dflash::engine {

int64_t NextPow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

int64_t PrefillBucket(int64_t len) { return std::max<int64_t>(16, NextPow2(len)); }

std::string PlannedProgram::Describe() const {
  const std::string r = std::to_string(rows) + (rows == 1 ? " row" : " rows");
  switch (kind) {
    case Kind::kPrefill: return "prefill chunk of " + std::to_string(tokens) + " tokens";
    case Kind::kPrefillContext: return "drafter context of a " + std::to_string(tokens) + "-token chunk";
    case Kind::kDecode: return "decode " + r;
    case Kind::kVerify: return "verify " + r + " x " + std::to_string(tokens) + " tokens";
    case Kind::kDraft: return "draft " + r + " (after " + (tokens == 1 ? std::string("a plain step") : "a " + std::to_string(tokens) + "-token block") + ")";
  }
  return "";
}

std::vector<PlannedProgram> ServingPlan(const ServingPlanOptions& o) {
  using K = PlannedProgram::Kind;
  std::vector<PlannedProgram> out;
  const int64_t pos = std::clamp<int64_t>(o.context, 1, std::max<int64_t>(1, o.max_seq_len)) - 1;
  const bool spec = o.block >= 2;
  // A chunk of bucket k holds more than k / 2 tokens: it reaches past position k / 2.
  for (int64_t k = PrefillBucket(1); k <= PrefillBucket(o.prefill_chunk) && (k == PrefillBucket(1) || k / 2 <= pos); k *= 2) {
    out.push_back({K::kPrefill, 1, k, 0});
    if (spec) out.push_back({K::kPrefillContext, 1, k, 0});
  }
  for (int64_t rows = 1; rows <= NextPow2(o.max_sequences); rows *= 2) {
    out.push_back({K::kDecode, rows, 1, 0});
    if (!spec) continue;
    out.push_back({K::kVerify, rows, o.block, 0});
    out.push_back({K::kDraft, rows, 1, o.block});
    out.push_back({K::kDraft, rows, o.block, o.block});
  }
  return out;
}

}  // namespace dflash::engine
