// Control flow of the StableHLO builder (see builder.h): while loops whose regions are built with
// the builder's ordinary methods.
#include <stdexcept>
#include <string>

#include "hlo/builder.h"

namespace dflash::hlo {

std::vector<Value> Builder::While(const std::vector<Value>& init,
                                  const std::function<Value(const std::vector<Value>&)>& cond,
                                  const std::function<std::vector<Value>(const std::vector<Value>&)>& body) {
  if (init.empty()) throw std::invalid_argument("while: no loop-carried values");
  std::vector<std::pair<Shape, DType>> types;
  for (const Value& v : init) types.push_back({v.shape, v.dtype});
  const std::string cond_region = Region(types, [&](const std::vector<Value>& a) {
    const Value c = cond(a);
    if (!c.shape.empty() || c.dtype != DType::kPred) throw std::invalid_argument("while: the condition must be a pred scalar");
    return std::vector<Value>{c};
  });
  const std::string body_region = Region(types, [&](const std::vector<Value>& a) {
    std::vector<Value> next = body(a);
    if (next.size() != init.size()) throw std::invalid_argument("while: the body returns " + std::to_string(next.size()) + " values for " +
                                                                std::to_string(init.size()) + " carried");
    for (size_t i = 0; i < next.size(); ++i)
      if (next[i].shape != init[i].shape || next[i].dtype != init[i].dtype)
        throw std::invalid_argument("while: carried value " + std::to_string(i) + " changes from " + TensorType(init[i]) + " to " +
                                    TensorType(next[i]));
    return next;
  });
  return EmitMulti("while", init, types, "", cond_region + ", " + body_region);
}

std::vector<Value> Builder::If(const Value& pred, const std::function<std::vector<Value>()>& then_fn,
                               const std::function<std::vector<Value>()>& else_fn) {
  if (!pred.shape.empty() || pred.dtype != DType::kPred) throw std::invalid_argument("if: the condition must be a pred scalar");
  std::vector<std::pair<Shape, DType>> types;
  const std::string then_region = Region(std::vector<std::pair<Shape, DType>>{}, [&](const std::vector<Value>&) {
    std::vector<Value> out = then_fn();
    for (const Value& v : out) types.push_back({v.shape, v.dtype});
    return out;
  });
  const std::string else_region = Region(std::vector<std::pair<Shape, DType>>{}, [&](const std::vector<Value>&) {
    std::vector<Value> out = else_fn();
    if (out.size() != types.size()) throw std::invalid_argument("if: the branches return " + std::to_string(types.size()) + " and " +
                                                                std::to_string(out.size()) + " values");
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].shape != types[i].first || out[i].dtype != types[i].second)
        throw std::invalid_argument("if: result " + std::to_string(i) + " is " + TensorType(types[i].first, types[i].second) +
                                    " in one branch and " + TensorType(out[i]) + " in the other");
    return out;
  });
  if (types.empty()) throw std::invalid_argument("if: no results");
  return EmitMulti("if", {pred}, types, "", then_region + ", " + else_region);
}

}  // namespace dflash::hlo
