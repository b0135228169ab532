// The one schema of the engine's options and of a generation request's options: names (as
// JavaScript spells them), kinds, defaults, accepted ranges and documentation live here and
// nowhere else. The addon validates user objects against it (errors name the option, the value
// received and the accepted range) and exports it to TypeScript, where
// lib/options.generated.ts is generated from it (scripts/gen-options.js; test/00 keeps them
// in step). C++ code gets fully populated structs from Defaults()/Parse().
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace dflash::engine {

struct EngineOptions {
  int32_t page_size;        // tokens per KV-cache page
  int32_t max_seq_len;      // prompt + generated tokens of one sequence (0 = the model's maximum)
  int32_t max_sequences;    // sequences decoded together (the running batch)
  int32_t max_queue;        // requests waiting for admission before submit fails
  int32_t prefill_chunk;    // prompt tokens of one sequence per prefill call
  int32_t prefill_budget;   // prompt tokens prefilled per iteration, all sequences together
  double kv_cache_memory;   // KV pool: bytes (> 1) or a fraction of the memory left after weights
  std::string dtype;        // auto | f32 | bf16 | f16
  std::string kv_dtype;     // auto | f32 | bf16 | f16
  std::string quantized_weights;  // auto | narrow | dequantize (quantized checkpoints)
  std::string cache_dir;    // compiled programs on disk ("" = off)
  bool adaptive;            // adaptive speculation (block size per iteration by expected tokens/s)
  bool batch_invariant;     // every matmul on the kernels whose per-row result ignores the batch
  bool warmup;              // compile the single-stream programs at load
  int32_t compile_threads;  // XLA compiles at once (0 = hardware threads, at most 4)
  int32_t max_loaded_programs;  // programs loaded per replica (0 = bounded by memory maps only)
  int32_t tensor_parallel;  // devices one replica's programs are split over (models/parallel.h)
  int32_t data_parallel;    // replicas, each with its own devices, weights, KV pool and scheduler
  std::string drafter_sharding;  // split | replicated: the drafter over the tensor-parallel devices
  bool prefix_caching;      // share the KV pages of common prompt prefixes (engine/page_allocator.h)
};

struct RequestOptions {
  int32_t max_tokens;   // tokens to generate
  double temperature;   // 0 = greedy
  double top_p;
  int32_t top_k;        // 0 = off
  double seed;          // integer-valued, 0 .. 2^53
  int32_t block_size;   // speculative block (0 = the drafter's; 1 = plain decoding)
  int32_t logprobs;     // -1 off; else the log-probability of every generated token and this many top alternatives
  int32_t prompt_logprobs;  // the same for the prompt's tokens (-1 off)
};

enum class OptionKind { kInteger, kNumber, kBoolean, kString, kEnum };

// A value of a type no option takes (null, an array, an object...), kept for the error message.
struct OtherValue {
  std::string description;  // "null", "an array", ...
};
using OptionValue = std::variant<double, bool, std::string, OtherValue>;

struct OptionSpec {
  std::string name;     // JavaScript name, e.g. "pageSize"
  OptionKind kind;
  OptionValue def;
  double min = 0, max = 0;      // integers and numbers (inclusive)
  bool power_of_two = false;    // integers
  std::vector<std::string> choices;  // enums
  std::string doc;
};

const std::vector<OptionSpec>& EngineOptionSpecs();
const std::vector<OptionSpec>& RequestOptionSpecs();

// Option values by JavaScript name; absent names take their defaults. Throws
// std::invalid_argument naming the option, the value and the accepted range for a bad value or
// an unknown name (`where` prefixes the message, e.g. "Engine.load").
EngineOptions ParseEngineOptions(const std::map<std::string, OptionValue>& values, const std::string& where);
RequestOptions ParseRequestOptions(const std::map<std::string, OptionValue>& values, const std::string& where);
EngineOptions DefaultEngineOptions();
RequestOptions DefaultRequestOptions();

// How a value was received, for error messages: 2.5, "abc", true.
std::string DescribeValue(const OptionValue& v);

}  // namespace dflash::engine
