// Internal helpers shared by the builder's .cc files: literal formatting and argument checks.
// Not part of the public API.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hlo/builder.h"

namespace dflash::hlo {

std::string JoinInts(const std::vector<int64_t>& v);       // "1, 2, 3"
std::string I64Array(const std::vector<int64_t>& v);       // "array<i64: 1, 2, 3>"
std::string FloatLiteral(double v, DType dtype);           // decimal, or hex bits for inf/nan
std::string ElementLiteral(double v, DType dtype);         // one dense<> element of dtype
void CheckShape(const char* op, const Shape& shape);       // no negative dims
int64_t NormAxis(const char* op, int64_t axis, int64_t rank);  // negative axes count from the end

}  // namespace dflash::hlo
