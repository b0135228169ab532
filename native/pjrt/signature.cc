// Parameter types of @main: see signature.h.
#include "pjrt/signature.h"

#include <cctype>

#include "pjrt/client.h"

namespace dflash::pjrt {
namespace {

std::optional<DType> ElementType(const std::string& s) {
  if (s == "f32") return DType::kF32;
  if (s == "bf16") return DType::kBF16;
  if (s == "f16") return DType::kF16;
  if (s == "i32" || s == "si32") return DType::kS32;
  if (s == "i64" || s == "si64") return DType::kS64;
  if (s == "ui8") return DType::kU8;
  if (s == "i1") return DType::kPred;
  if (s == "ui32") return DType::kU32;
  if (s == "i8" || s == "si8") return DType::kS8;
  if (s == "f8E4M3FN") return DType::kF8E4M3FN;
  return std::nullopt;
}

// "4x8xf32" / "f32" -> ParamType
std::optional<ParamType> ParseTensor(const std::string& body) {
  ParamType t;
  size_t pos = 0;
  while (pos < body.size() && std::isdigit(static_cast<unsigned char>(body[pos]))) {
    size_t end = pos;
    while (end < body.size() && std::isdigit(static_cast<unsigned char>(body[end]))) ++end;
    if (end >= body.size() || body[end] != 'x') break;
    t.dims.push_back(std::stoll(body.substr(pos, end - pos)));
    pos = end + 1;
  }
  auto et = ElementType(body.substr(pos));
  if (!et) return std::nullopt;
  t.dtype = *et;
  return t;
}

}  // namespace

std::optional<std::vector<ParamType>> ParseMainSignature(const std::string& mlir) {
  size_t at = mlir.find("@main(");
  if (at == std::string::npos) return std::nullopt;
  size_t i = at + 6;
  std::vector<ParamType> out;
  int depth = 0;  // nesting of (), {}, <> inside the argument list
  for (; i < mlir.size(); ++i) {
    const char c = mlir[i];
    if (depth == 0 && c == ')') return out;
    if (c == '(' || c == '{' || c == '[') ++depth;
    if (c == ')' || c == '}' || c == ']') --depth;
    if (depth == 0 && mlir.compare(i, 7, "tensor<") == 0) {
      const size_t close = mlir.find('>', i);
      if (close == std::string::npos) return std::nullopt;
      auto t = ParseTensor(mlir.substr(i + 7, close - i - 7));
      if (!t) return std::nullopt;
      out.push_back(*t);
      i = close;
    }
  }
  return std::nullopt;
}

}  // namespace dflash::pjrt
