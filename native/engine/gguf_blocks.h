// GGUF (llama.cpp) tensor encodings the weight loader expands at load: the plain floats (F32,
// F16, BF16) and the block-quantized formats Q8_0, Q4_0, Q4_1 (32 values per block) and the
// K-quants Q4_K, Q5_K, Q6_K (256 values per block in sub-blocks with 6- or 8-bit scales). Each
// decodes to f32 exactly as ggml's reference dequantization does (the same products in the same
// order), so an f32 checkpoint written from gguf-py's dequantize() runs bit-identical weights.
//
// Layouts are row-major over the tensor's HF shape: GGUF's ne[0] is the innermost dimension,
// so blocks run along a row (the input dimension of a weight), never across rows.
#pragma once
#include <cstdint>
#include <string>

namespace dflash::engine {

struct BlockFormat {
  const char* name;       // the GGUF type name, as TensorSource::dtype spells it
  int64_t block_values;   // values per block (1 for the plain floats)
  int64_t block_bytes;    // bytes per block
  // Decodes `blocks` blocks from src into dst (block_values floats each).
  void (*decode)(const uint8_t* src, int64_t blocks, float* dst);
};

// The block-quantized GGUF format called `dtype` (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K), or nullptr
// (the plain floats are not block formats: the loader reads them as they are).
const BlockFormat* FindBlockFormat(const std::string& dtype);

// Bytes a tensor of `values` values takes in `format`; -1 when `values` is not a whole number of
// blocks (a row length GGUF cannot hold in that format).
int64_t BlockBytes(const BlockFormat& format, int64_t values);

// Restores Hugging Face's row order of a Llama q_proj / k_proj weight (or bias) that llama.cpp's
// converter reordered for its interleaved-pair RoPE: within each of `heads` heads of `rows/heads`
// rows, GGUF row 2i + j holds HF row j * (rows/heads/2) + i. In place on `rows` x `cols` floats.
void UnpermuteRopeRows(float* data, int64_t rows, int64_t cols, int64_t heads);

}  // namespace dflash::engine
