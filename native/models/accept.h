// The verify step's acceptance rule, per batch row, packed for the one device-to-host copy of a
// step: accept (R, K + 1) s32 = [n, t_1 .. t_n, 0 ...] where n = a + 1 tokens are committed —
// the a accepted drafts, then the target's own token (the bonus). Row r scored the block
// tokens[r] = [last, d_1 .. d_{K-1}]; draft i counts only where valid[r, i] (padding of a row
// whose block is shorter than K, or of a plain-decoding row, is never accepted).
#pragma once
#include "hlo/builder.h"

namespace dflash::models {

// [a + 1, tokens[1..a], bonus, 0...]   (tokens (R, K), a s32 (R), bonus s32 (R, 1) -> (R, K + 1))
hlo::Value PackAccept(hlo::Builder& b, const hlo::Value& tokens, const hlo::Value& a, const hlo::Value& bonus);

// Greedy: a = leading i in [1, K) with valid[i] and tokens[i] == argmax[i - 1]; bonus = argmax[a].
// tokens, argmax s32 (R, K); valid pred (R, K).
hlo::Value GreedyAccept(hlo::Builder& b, const hlo::Value& tokens, const hlo::Value& valid, const hlo::Value& argmax);

// Lossless speculative sampling (Leviathan et al. 2023) for every row: p (R, K, V) the target's
// processed distributions (slot i predicts position i + 1), q (R, K, V) the drafter's (slot i is
// the distribution d_i was drawn from), u_accept (R, K) and u_draw (R, K) uniforms. d_i is
// accepted while valid and u_accept_i * q_i(d_i) < p_{i-1}(d_i). The bonus token (slot a + 1) is
// drawn with u_draw_a from norm(max(0, p_a - q_{a+1})) (p_a if that has no mass) after a
// rejection, from p_a after the last valid draft.
hlo::Value SpeculativeAccept(hlo::Builder& b, const hlo::Value& tokens, const hlo::Value& valid, const hlo::Value& p,
                             const hlo::Value& q, const hlo::Value& u_accept, const hlo::Value& u_draw);

}  // namespace dflash::models
