// The program set a server runs, as a plan that needs no device and no weights: which prefill
// chunks, decodes, verifies and drafts `precompile()` makes for its options (Runtime::ServingShapes
// turns each entry into a program shape; `dflash doctor --target` prints the plan). Every program
// reads its rows' pages in a loop bounded by the data (models/paged_attention.h), so the context
// length only bounds the prefill chunks; greedy, sampled and grammar-constrained rows share every
// program.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dflash::engine {

struct PlannedProgram {
  enum class Kind {
    kPrefill,         // one row, a chunk of `tokens` prompt tokens (a bucket)
    kPrefillContext,  // the drafter appends the features of such a chunk to its context
    kDecode,          // `rows` rows, one token each (plain decoding)
    kVerify,          // `rows` rows, a block of `tokens` tokens each
    kDraft,           // `rows` rows append `tokens` feature rows and draft a block of `block`
  };
  Kind kind;
  int64_t rows = 1, tokens = 1, block = 0;
  std::string Describe() const;  // e.g. "verify 4 rows x 16 tokens"
};

struct ServingPlanOptions {
  int64_t context = 0;        // tokens per sequence precompiled for (<= max_seq_len)
  int64_t max_seq_len = 0;    // the engine's maxSeqLen (resolved: > 0)
  int64_t max_sequences = 1;  // rows of the running batch
  int64_t prefill_chunk = 1;  // prompt tokens per prefill call
  int64_t block = 0;          // the drafter's block; 0 = no drafter
};

// The smallest power of two >= x (row and block buckets); prefill chunks run in such buckets of
// at least 16 tokens.
int64_t NextPow2(int64_t x);
int64_t PrefillBucket(int64_t len);

// In the order precompile() compiles them: prefill chunks (each with its drafter context), then
// per rows bucket (powers of two up to max_sequences) decode, the verify of a full block and the
// drafts after a plain step and after a block.
std::vector<PlannedProgram> ServingPlan(const ServingPlanOptions& o);

}  // namespace dflash::engine
