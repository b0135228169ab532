// Element types of the StableHLO text builder and their MLIR spellings. Kept separate from
// pjrt::DType so that the builder has no runtime dependency; models map between the two.
#pragma once
#include <cstdint>
#include <string>

namespace dflash::hlo {

// kS8 and kF8E4M3FN are storage types only: weights kept narrow on the device (models/quant.h),
// converted to f32 inside the program before any arithmetic.
enum class DType { kF32, kBF16, kF16, kS32, kS64, kU8, kU32, kPred, kS8, kF8E4M3FN };

// MLIR element type name: f32, bf16, f16, i32, i64, ui8, ui32, i1, i8, f8E4M3FN.
const char* MlirName(DType t);
// Short human name used in error messages: f32, bf16, f16, s32, s64, u8, u32, pred, s8, f8e4m3fn.
const char* DTypeName(DType t);

inline bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kBF16 || t == DType::kF16; }
inline bool IsSigned(DType t) { return t == DType::kS32 || t == DType::kS64 || t == DType::kS8; }
inline bool IsUnsigned(DType t) { return t == DType::kU8 || t == DType::kU32; }
inline bool IsInteger(DType t) { return IsSigned(t) || IsUnsigned(t); }

}  // namespace dflash::hlo
