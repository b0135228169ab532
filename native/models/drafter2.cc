// DFlash2 pieces of the drafter program: see drafter2.h.
#include "models/drafter2.h"

#include <limits>
#include <stdexcept>

#include "models/sampling.h"

namespace dflash::models {

using hlo::Builder;
using hlo::Cmp;
using hlo::DType;
using hlo::ReduceKind;
using hlo::Value;

void AppendDFlash2ConvSpecs(std::vector<WeightSpec>& s, const std::string& layer_prefix, const DrafterConfig& d, pjrt::DType t) {
  const int64_t H = d.hidden_size, K = d.dflash2.conv_kernel_size, G = H / d.dflash2.conv_group_size;
  for (const char* conv : {"attention_conv.", "mlp_conv."}) {
    s.push_back({layer_prefix + conv + "base_kernel", {2, K, H}, t});
    s.push_back({layer_prefix + conv + "kernel_projection.weight", {2 * K * G, H}, t});
  }
}

void AppendDFlash2SelectorSpecs(std::vector<WeightSpec>& s, const DrafterConfig& d, pjrt::DType t) {
  const int64_t rank = d.dflash2.selector_rank, V = d.dflash2.vocab_size;
  s.push_back({"candidate_selector.hidden_projection.weight", {rank, d.hidden_size}, t});
  s.push_back({"candidate_selector.predecessor_codebook", {V, rank}, t});
  s.push_back({"candidate_selector.successor_codebook", {V, rank}, t});
}

GroupedConv TakeGroupedConv(const WeightInputs& w, const std::string& prefix, const DrafterConfig& d) {
  return {Weight(w, prefix + "base_kernel"), Weight(w, prefix + "kernel_projection.weight"), d.dflash2.conv_kernel_size,
          d.dflash2.conv_group_size};
}

Value ConvCoefficients(Builder& b, const Value& x, const GroupedConv& conv, const Numerics& nm) {
  const int64_t R = x.dim(0), T = x.dim(1), G = x.dim(2) / conv.group;
  return b.Reshape(Dense(b, x, conv.projection, nm), {R, T, 2, conv.kernel, G});
}

Value GroupedCausalConv(Builder& b, const Value& x, const Value& base, const Value& coeffs, int64_t side, int64_t group,
                        const Numerics& nm) {
  const int64_t R = x.dim(0), T = x.dim(1), H = x.dim(2), K = base.dim(1);
  if (group <= 0 || H % group != 0) throw std::invalid_argument("dflash2 conv: the group size must divide the hidden size");
  const int64_t G = H / group;
  if (base.shape != hlo::Shape{2, K, H} || coeffs.shape != hlo::Shape{R, T, 2, K, G} || side < 0 || side > 1)
    throw std::invalid_argument("dflash2 conv: base must be (2, K, H) and coefficients (R, T, 2, K, H / group)");
  const Value xf = b.Convert(x, DType::kF32), bf = b.Convert(base, DType::kF32), cf = b.Convert(coeffs, DType::kF32);
  Value y;
  for (int64_t tap = 0; tap < K && tap < T; ++tap) {  // taps reaching before the block read zeros
    // Row t reads row t - tap of the same block: shift down by tap, zeros in front.
    const Value shifted = tap == 0 ? xf : b.Concatenate({b.Splat(0, {R, tap, H}, DType::kF32), b.SliceAxis(xf, 1, 0, T - tap)}, 1);
    // The dynamic coefficient of group g serves channels [g * group, (g + 1) * group).
    Value dyn = b.Reshape(b.Slice(cf, {0, 0, side, tap, 0}, {R, T, side + 1, tap + 1, G}), {R, T, G});
    dyn = b.Reshape(b.BroadcastInDim(dyn, {R, T, G, group}, {0, 1, 2}), {R, T, H});
    const Value fixed = b.Reshape(b.Slice(bf, {side, tap, 0}, {side + 1, tap + 1, H}), {H});
    const Value term = b.Mul(b.Add(dyn, fixed), shifted);
    y = tap == 0 ? term : b.Add(y, term);
  }
  return b.Convert(y, nm.act());
}

std::pair<Value, Value> TopK(Builder& b, const Value& x, int64_t k) {
  const int64_t ax = x.rank() - 1;
  if (k < 1 || k > x.shape[ax]) throw std::invalid_argument("top-k: k must be in [1, " + std::to_string(x.shape[ax]) + "]");
  hlo::Shape one = x.shape;
  one[ax] = 1;
  const Value iota = b.Iota(x.shape, DType::kS32, ax);
  const Value taken = b.Scalar(-std::numeric_limits<double>::infinity(), x.dtype);
  std::vector<Value> values, ids;
  Value cur = x;
  for (int64_t i = 0; i < k; ++i) {
    const Value id = b.Reshape(b.Argmax(cur, ax), one);  // the first of equal maxima: the lower id
    values.push_back(b.Reshape(b.Reduce(cur, {ax}, ReduceKind::kMax), one));
    ids.push_back(id);
    if (i + 1 < k) cur = b.Select(b.Compare(iota, id, Cmp::kEQ), taken, cur);
  }
  return {b.Concatenate(values, ax), b.Concatenate(ids, ax)};
}

namespace {

// lm_head logits * output_multiplier, then softcap * tanh(logits / softcap) (z-lab compute_logits).
Value TransformLogits(Builder& b, Value logits, const DFlash2Config& c) {
  if (c.output_multiplier != 1.0f) logits = b.Mul(logits, b.Scalar(c.output_multiplier, DType::kF32));
  if (c.final_logit_softcapping > 0.0f) {
    const Value cap = b.Scalar(c.final_logit_softcapping, DType::kF32);
    logits = b.Mul(b.Tanh(b.Div(logits, cap)), cap);
  }
  return logits;
}

// softmax(score / temperature) over the candidates   (score (R, K), temperature (R, 1) > 0)
Value CandidateProbs(Builder& b, const Value& score, const Value& temperature) {
  const int64_t R = score.dim(0);
  const Value z = b.Div(score, temperature);
  const Value e = b.Exp(b.Sub(z, b.Reshape(b.Reduce(z, {1}, ReduceKind::kMax), {R, 1})));
  return b.Div(e, b.Reshape(b.Reduce(e, {1}, ReduceKind::kSum), {R, 1}));
}

}  // namespace

DraftHead DFlash2Head(Builder& b, const WeightInputs& w, const std::string& prefix, const DrafterConfig& d, const Value& hn,
                      const Value& lm_head, const Value& last, const Value* params, const Value* uniforms, bool want_logits,
                      const Numerics& nm) {
  const DFlash2Config& c = d.dflash2;
  const int64_t R = hn.dim(0), B = hn.dim(1), V = lm_head.dim(0), n = B - 1, K = c.selector_top_k, rank = c.selector_rank;
  const std::string sel = prefix + "candidate_selector.";
  DraftHead out;
  const Value rows = b.SliceAxis(hn, 1, 1, n);  // (R, n, H): block rows 1..B-1 propose
  Value row_logits;                             // (R, n, V) f32
  if (want_logits) {
    out.logits = TransformLogits(b, DenseF32(b, hn, lm_head, nm), c);
    row_logits = b.SliceAxis(out.logits, 1, 1, n);
  } else {
    row_logits = TransformLogits(b, DenseF32(b, rows, lm_head, nm), c);
  }
  const auto [unary, cand] = TopK(b, row_logits, K);                                               // (R, n, K)
  const Value gate = b.Convert(Dense(b, rows, Weight(w, sel + "hidden_projection.weight"), nm), DType::kF32);  // (R, n, rank)
  const Value pred = Weight(w, sel + "predecessor_codebook");                                         // (V, rank)
  const Value succ = b.Convert(b.Take(Weight(w, sel + "successor_codebook"), cand), DType::kF32);     // (R, n, K, rank)

  Value greedy, temperature;
  if (params) {
    const Value t = b.SliceAxis(*params, 1, 0, 1);  // (R, 1)
    const Value is_greedy = b.Compare(t, b.Scalar(0, DType::kF32), Cmp::kLE);
    greedy = b.Reshape(is_greedy, {R});
    temperature = b.Select(is_greedy, b.Scalar(1, DType::kF32), t);  // greedy rows: an unused, finite q
  }
  const Value slot = b.Iota({R, K}, DType::kS32, 1);
  std::vector<Value> tokens, qs;
  Value prev = last;  // (R): the token the next row's pair term is conditioned on
  for (int64_t i = 0; i < n; ++i) {
    const Value v = b.Mul(b.Convert(b.Take(pred, prev), DType::kF32), b.Reshape(b.SliceAxis(gate, 1, i, 1), {R, rank}));
    // Elementwise product and row sums (no dot): each row's score is computed the same way
    // whatever the batch (numerics.h, batch invariance).
    const Value pair = b.Reduce(b.Mul(b.Reshape(b.SliceAxis(succ, 1, i, 1), {R, K, rank}), b.Reshape(v, {R, 1, rank})), {2}, ReduceKind::kSum);
    const Value score = b.Add(b.Reshape(b.SliceAxis(unary, 1, i, 1), {R, K}), pair);  // (R, K)
    Value pick = b.Argmax(score, 1);                                                      // (R)
    if (params) {
      const Value q = CandidateProbs(b, score, temperature);
      const Value drawn = SampleRows(b, q, b.Reshape(b.SliceAxis(*uniforms, 1, i + 1, 1), {R}));
      pick = b.Select(greedy, pick, drawn);
      qs.push_back(b.Reshape(q, {R, 1, K}));
    }
    const Value hit = b.Compare(slot, b.Reshape(pick, {R, 1}), Cmp::kEQ);
    prev = b.Reduce(b.Select(hit, b.Reshape(b.SliceAxis(cand, 1, i, 1), {R, K}), b.Scalar(0, DType::kS32)), {1}, ReduceKind::kSum);
    tokens.push_back(b.Reshape(prev, {R, 1}));
  }
  out.proposals = b.Concatenate(tokens, 1);  // (R, n)
  if (params) {
    // q of block row i + 1 over the vocabulary: the candidates' probabilities, zero elsewhere
    // (candidates are distinct, so the scatter writes each cell at most once).
    const Value row = b.Reshape(b.Iota({R * n, K}, DType::kS32, 0), {R * n * K, 1});
    const Value at = b.Concatenate({row, b.Reshape(cand, {R * n * K, 1})}, 1);
    const Value q = b.Scatter(b.Splat(0, {R * n, V}, DType::kF32), at, b.Reshape(b.Concatenate(qs, 1), {R * n * K}),
                              hlo::ScatterDims{{}, {0, 1}, {0, 1}, 1});
    out.probs = b.Concatenate({b.Splat(0, {R, 1, V}, DType::kF32), b.Reshape(q, {R, n, V})}, 1);  // (R, B, V)
  }
  return out;
}

}  // namespace dflash::models
