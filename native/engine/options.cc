// The option schemas: see options.h. Each table row is one option; Parse* walks the table, so a
// new option is one row here plus one struct field.
#include "engine/options.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace dflash::engine {
namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1: every integer JS keeps exactly

OptionSpec Int(const char* name, double def, double min, double max, const char* doc, bool pow2 = false) {
  OptionSpec s{name, OptionKind::kInteger, def, min, max, pow2, {}, doc};
  return s;
}
OptionSpec Num(const char* name, double def, double min, double max, const char* doc) {
  return OptionSpec{name, OptionKind::kNumber, def, min, max, false, {}, doc};
}
OptionSpec Bool(const char* name, bool def, const char* doc) { return OptionSpec{name, OptionKind::kBoolean, def, 0, 0, false, {}, doc}; }
OptionSpec Str(const char* name, const char* def, const char* doc) {
  return OptionSpec{name, OptionKind::kString, std::string(def), 0, 0, false, {}, doc};
}
OptionSpec Enum(const char* name, const char* def, std::vector<std::string> choices, const char* doc) {
  return OptionSpec{name, OptionKind::kEnum, std::string(def), 0, 0, false, std::move(choices), doc};
}

// The shortest text that reads back as `v` (JavaScript's own rule): 1e-09, not
// 1.0000000000000001e-09, so a message shows the bound the schema states.
std::string Num2Str(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e21) {  // integers in full, as JavaScript prints them
    std::ostringstream os;
    os << std::fixed << std::setprecision(0) << v;
    return os.str();
  }
  std::string text;
  for (int precision = 1; precision <= 17; ++precision) {
    std::ostringstream os;
    os.precision(precision);
    os << v;
    text = os.str();
    if (std::strtod(text.c_str(), nullptr) == v) break;
  }
  return text;
}

std::string Range(const OptionSpec& s) {
  switch (s.kind) {
    case OptionKind::kInteger:
      return std::string(s.power_of_two ? "a power of two" : "an integer") + " in [" + Num2Str(s.min) + ", " + Num2Str(s.max) + "]";
    case OptionKind::kNumber: return "a number in [" + Num2Str(s.min) + ", " + Num2Str(s.max) + "]";
    case OptionKind::kBoolean: return "true or false";
    case OptionKind::kString: return "a string";
    case OptionKind::kEnum: {
      std::string c;
      for (size_t i = 0; i < s.choices.size(); ++i) c += (i ? ", " : "") + ("'" + s.choices[i] + "'");
      return "one of " + c;
    }
  }
  return "?";
}

// Checks one value against its spec; returns it (numbers as double, etc.).
OptionValue Check(const OptionSpec& s, const OptionValue& v, const std::string& where) {
  auto bad = [&]() -> std::invalid_argument {
    return std::invalid_argument(where + ": option '" + s.name + "' must be " + Range(s) + ", got " + DescribeValue(v));
  };
  switch (s.kind) {
    case OptionKind::kInteger:
    case OptionKind::kNumber: {
      if (!std::holds_alternative<double>(v)) throw bad();
      const double x = std::get<double>(v);
      if (!std::isfinite(x) || x < s.min || x > s.max) throw bad();
      if (s.kind == OptionKind::kInteger) {
        if (x != std::floor(x)) throw bad();
        if (s.power_of_two && (x < 1 || std::exp2(std::round(std::log2(x))) != x)) throw bad();
      }
      return v;
    }
    case OptionKind::kBoolean:
      if (!std::holds_alternative<bool>(v)) throw bad();
      return v;
    case OptionKind::kString:
      if (!std::holds_alternative<std::string>(v)) throw bad();
      return v;
    case OptionKind::kEnum:
      if (!std::holds_alternative<std::string>(v)) throw bad();
      for (const auto& c : s.choices)
        if (c == std::get<std::string>(v)) return v;
      throw bad();
  }
  throw bad();
}

// Applies `values` (defaults for the absent ones) through `set(name, value)`.
void Apply(const std::vector<OptionSpec>& specs, const std::map<std::string, OptionValue>& values, const std::string& where,
           const std::function<void(const std::string&, const OptionValue&)>& set) {
  for (const auto& [name, v] : values) {
    bool known = false;
    for (const auto& s : specs) known |= s.name == name;
    if (!known) {
      std::string names;
      for (size_t i = 0; i < specs.size(); ++i) names += (i ? ", " : "") + specs[i].name;
      throw std::invalid_argument(where + ": unknown option '" + name + "' (known: " + names + ")");
    }
  }
  for (const auto& s : specs) {
    auto it = values.find(s.name);
    set(s.name, it == values.end() ? s.def : Check(s, it->second, where));
  }
}

int32_t I(const OptionValue& v) { return static_cast<int32_t>(std::get<double>(v)); }
double D(const OptionValue& v) { return std::get<double>(v); }

}  // namespace

std::string DescribeValue(const OptionValue& v) {
  if (std::holds_alternative<OtherValue>(v)) return std::get<OtherValue>(v).description;
  if (std::holds_alternative<bool>(v)) return std::get<bool>(v) ? "true" : "false";
  if (std::holds_alternative<std::string>(v)) return "'" + std::get<std::string>(v) + "'";
  const double x = std::get<double>(v);
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return Num2Str(x);
}

const std::vector<OptionSpec>& EngineOptionSpecs() {
  static const std::vector<OptionSpec> specs = {
      Int("pageSize", 16, 1, 1024, "Tokens per KV-cache page.", true),
      Int("maxSeqLen", 0, 0, 1 << 24,
          "Longest prompt + generation of one sequence; 0 = the model's max_position_embeddings. Bounds one sequence, "
          "not the pool: short sequences share the KV pool."),
      Int("maxSequences", 8, 1, 1024, "Sequences decoded together in one device iteration (the running batch)."),
      Int("maxQueue", 1024, 0, 1 << 24,
          "Requests that may wait for admission; one more makes generate() fail with code QUEUE_FULL."),
      Int("prefillChunk", 256, 1, 1 << 16, "Prompt tokens of one sequence per prefill call.", true),
      Int("prefillBudget", 512, 1, 1 << 20,
          "Prompt tokens prefilled per iteration over all admitted sequences, interleaved with decoding."),
      Num("kvCacheMemory", 0, 0, 1e15,
          "KV-cache pool size: bytes when > 1, a fraction of the device memory left after the weights when in (0, 1], "
          "0 = automatic (0.9 of the free device memory on GPU/TPU, 0.25 of the available host memory on CPU), never more "
          "than maxSequences full-length sequences need."),
      Enum("dtype", "auto", {"auto", "f32", "bf16", "f16"},
           "Weights and activations. auto: the checkpoint's dtype (16-bit checkpoints stay 16-bit; f16 computes in f32 on CPU, "
           "bf16 on TPU). Matmuls accumulate in f32; norms, softmax, RoPE and sampling compute in f32."),
      Enum("kvDtype", "auto", {"auto", "f32", "bf16", "f16"}, "KV-cache dtype; auto = dtype."),
      Enum("quantizedWeights", "auto", {"auto", "narrow", "dequantize"},
           "Quantized checkpoints (quantization_config): narrow = the int8 / int4 / fp8 payloads and their scales are what the "
           "device holds, expanded inside each program next to the matmul; dequantize = expanded once at load to dtype. "
           "auto: narrow on GPU/TPU, dequantize on CPU, where XLA materialises the expansion every step (5-7x slower "
           "decode at the Qwen3-0.6B shape, bench/NOTES.md). Outputs are identical either way."),
      Str("cacheDir", "",
          "Directory for compiled programs, so a second start does not recompile; '' = off. (Engine.load defaults it to "
          "$DFLASH_CACHE_DIR or ~/.cache/dflash/programs.)"),
      Bool("adaptive", true,
           "Adaptive speculation: each iteration picks the block size (1 = plain decoding) that maximises expected tokens per "
           "second from measured verify/draft costs and per-position acceptance. Output is identical either way."),
      Bool("batchInvariant", true,
           "Compute every row of a matmul the same way whatever the batch, so a sequence's tokens do not depend on the "
           "other sequences, its block size, or plain vs speculative decoding. On XLA:CPU this pads matmuls to 2 rows "
           "(f32) or 3 (16-bit); for a single f32 stream that costs ~1.8x per token (16-bit: nothing). false trades it "
           "for the fastest single-row f32 path. Without a drafter and with maxSequences 1 there is nothing to be "
           "invariant against: that engine takes the single-row path either way."),
      Bool("warmup", true, "Compile the programs a single stream needs while loading (with progress events)."),
      Int("compileThreads", 0, 0, 64,
          "XLA compiles run at once (precompile() compiles its programs on that many threads; each compile holds its own "
          "working memory, hundreds of MB for a real-size model); 0 = the host's hardware threads, at most 4."),
      Int("maxLoadedPrograms", 0, 0, 1 << 20,
          "Compiled programs kept loaded per replica; past it the least recently used one no step is running is unloaded "
          "and comes back from the disk cache when next needed (every loaded executable holds memory and memory maps). "
          "0 = no count bound: programs are unloaded only when the process nears vm.max_map_count."),
      Int("tensorParallel", 1, 1, 1024,
          "Devices each replica's target and drafter are split over (tensor parallelism, Megatron layout: attention by heads, "
          "MLPs by columns, embedding and LM head by vocabulary, KV caches by KV heads; XLA inserts the all-reduces). "
          "Must divide the attention heads and MLP sizes. vLLM's --tensor-parallel-size."),
      Int("dataParallel", 1, 1, 1024,
          "Replicas of the whole engine, each on its own tensorParallel devices with its own KV pool and scheduler; "
          "requests go to the least loaded. vLLM's --data-parallel-size."),
      Bool("prefixCaching", true,
           "Automatic prefix caching: full KV pages are kept, indexed by a hash chained over every token before them, and "
           "shared by later sequences whose prompt starts with the same tokens (a multi-turn chat, a common system prompt, "
           "n > 1 choices), which prefill only the rest. Unused cached pages are evicted least recently used. Output is "
           "identical with or without a hit."),
      Enum("drafterSharding", "split", {"split", "replicated"},
           "With tensorParallel > 1: split the drafter over the devices as the target (its weights and context cache 1/N "
           "per device, two all-reduces per drafter layer), or keep it whole on every device (no all-reduces, N times its "
           "memory). bench:kernels -- --tp N times both."),
  };
  return specs;
}

const std::vector<OptionSpec>& RequestOptionSpecs() {
  static const std::vector<OptionSpec> specs = {
      Int("maxTokens", 256, 1, 1 << 24, "Tokens to generate at most."),
      Num("temperature", 0, 0, 1e6, "Sampling temperature; 0 = greedy."),
      Num("topP", 1, 1e-9, 1, "Nucleus sampling: keep the smallest set of tokens holding this probability mass."),
      Int("topK", 0, 0, 1 << 24, "Keep the k most likely tokens; 0 = off."),
      Int("seed", 0, 0, kMaxSafeInteger, "Seed of the sampling draws (the same seed gives the same tokens)."),
      Int("blockSize", 0, 0, 1024,
          "Largest speculative block (tokens verified per step); 0 = the drafter's block size, 1 = plain decoding."),
      Int("logprobs", -1, -1, 20,
          "Log-probability of every generated token under the target's own distribution (log_softmax of its logits), and "
          "this many most likely alternatives at each position; -1 = off, 0 = the token's own only. With speculation they "
          "come from the verify pass that accepted the token: the same values plain decoding gives."),
      Int("promptLogprobs", -1, -1, 20,
          "The same for every prompt token after the first (OpenAI's echo), computed by the prefill; -1 = off. Such a "
          "request computes its whole prompt (no prefix-cache reuse)."),
  };
  return specs;
}

EngineOptions ParseEngineOptions(const std::map<std::string, OptionValue>& values, const std::string& where) {
  EngineOptions o{};
  Apply(EngineOptionSpecs(), values, where, [&](const std::string& n, const OptionValue& v) {
    if (n == "pageSize") o.page_size = I(v);
    else if (n == "maxSeqLen") o.max_seq_len = I(v);
    else if (n == "maxSequences") o.max_sequences = I(v);
    else if (n == "maxQueue") o.max_queue = I(v);
    else if (n == "prefillChunk") o.prefill_chunk = I(v);
    else if (n == "compileThreads") o.compile_threads = I(v);
    else if (n == "maxLoadedPrograms") o.max_loaded_programs = I(v);
    else if (n == "prefillBudget") o.prefill_budget = I(v);
    else if (n == "kvCacheMemory") o.kv_cache_memory = D(v);
    else if (n == "dtype") o.dtype = std::get<std::string>(v);
    else if (n == "kvDtype") o.kv_dtype = std::get<std::string>(v);
    else if (n == "quantizedWeights") o.quantized_weights = std::get<std::string>(v);
    else if (n == "cacheDir") o.cache_dir = std::get<std::string>(v);
    else if (n == "adaptive") o.adaptive = std::get<bool>(v);
    else if (n == "batchInvariant") o.batch_invariant = std::get<bool>(v);
    else if (n == "warmup") o.warmup = std::get<bool>(v);
    else if (n == "tensorParallel") o.tensor_parallel = I(v);
    else if (n == "dataParallel") o.data_parallel = I(v);
    else if (n == "drafterSharding") o.drafter_sharding = std::get<std::string>(v);
    else if (n == "prefixCaching") o.prefix_caching = std::get<bool>(v);
    else throw std::logic_error("engine option " + n + " has no field");
  });
  return o;
}

RequestOptions ParseRequestOptions(const std::map<std::string, OptionValue>& values, const std::string& where) {
  RequestOptions o{};
  Apply(RequestOptionSpecs(), values, where, [&](const std::string& n, const OptionValue& v) {
    if (n == "maxTokens") o.max_tokens = I(v);
    else if (n == "temperature") o.temperature = D(v);
    else if (n == "topP") o.top_p = D(v);
    else if (n == "topK") o.top_k = I(v);
    else if (n == "seed") o.seed = D(v);
    else if (n == "blockSize") o.block_size = I(v);
    else if (n == "logprobs") o.logprobs = I(v);
    else if (n == "promptLogprobs") o.prompt_logprobs = I(v);
    else throw std::logic_error("request option " + n + " has no field");
  });
  return o;
}

EngineOptions DefaultEngineOptions() { return ParseEngineOptions({}, "defaults"); }
RequestOptions DefaultRequestOptions() { return ParseRequestOptions({}, "defaults"); }

}  // namespace dflash::engine
