// What the sampling tests compare seeded draws against: the target's own processed distribution
// after a prompt (its logits over the temperature, the top k of them — of the allowed tokens
// when a grammar restricts them — renormalised), and the total variation distance of counts.
import type { Engine } from '../../lib/engine';
import { scoreLogits } from '../../lib/internal/probe';

export async function targetDistribution(engine: Engine, ids: number[], temperature: number, topK: number,
  allowed?: (id: number) => boolean): Promise<Map<number, number>> {
  const { logits } = await scoreLogits(engine, [Int32Array.from(ids)]);
  const V = engine.config.target.vocabSize;
  const row = Array.from(logits[0].subarray((ids.length - 1) * V, ids.length * V)).map((x, i) => [x / temperature, i] as const);
  const top = (allowed ? row.filter(([, i]) => allowed(i)) : row).sort((a, b) => b[0] - a[0]).slice(0, topK);
  const z = top.reduce((s, [x]) => s + Math.exp(x - top[0][0]), 0);
  return new Map(top.map(([x, i]) => [i, Math.exp(x - top[0][0]) / z]));
}

/** Half the L1 distance between n draws' counts and a distribution. */
export function totalVariation(counts: Map<number, number>, n: number, dist: Map<number, number>): number {
  let tv = 0;
  for (const k of new Set([...counts.keys(), ...dist.keys()])) tv += Math.abs((counts.get(k) ?? 0) / n - (dist.get(k) ?? 0));
  return tv / 2;
}

/** Counts of two-token draws: the first token, and the second per first token. */
export class TwoTokenDraws {
  readonly first = new Map<number, number>();
  readonly second = new Map<number, Map<number, number>>();
  add(t1: number, t2: number): void {
    this.first.set(t1, (this.first.get(t1) ?? 0) + 1);
    if (!this.second.has(t1)) this.second.set(t1, new Map());
    this.second.get(t1)!.set(t2, (this.second.get(t1)!.get(t2) ?? 0) + 1);
  }
  /** Each first token drawn at least minDraws times: how often, and the total variation of its
   *  second tokens from dist(first token). */
  async secondTokenDistances(minDraws: number, dist: (t1: number) => Promise<Map<number, number>>): Promise<Array<{ t1: number; n: number; tv: number }>> {
    const out = [];
    for (const [t1, counts] of this.second) {
      const n = [...counts.values()].reduce((a, b) => a + b, 0);
      if (n >= minDraws) out.push({ t1, n, tv: totalVariation(counts, n, await dist(t1)) });
    }
    return out;
  }
}

export interface SteeredDraws {
  /** Counts of the first and second generated tokens over the runs. */
  first: Map<number, number>;
  second: Map<number, number>;
  /** Runs whose second verify accepted the drafted token (three tokens in two steps). */
  accepted: number;
  /** The target's exact distributions of the first and second tokens, and the accept rate it
   *  predicts for the drafted token: sum over t1 of p(t1) p(drafted | prompt, t1). */
  p1: Map<number, number>;
  p2: Map<number, number>;
  acceptRate: number;
}

/** Speculative sampling through a drafter steered to `drafted` (it proposes that token, q = 1):
 *  `n` seeded generations of three tokens after `prompt`, block 4. A sequence's first step is
 *  plain (t1); the second verifies [t1, drafted, ...], so t2 is an accepted draft or a draw from
 *  the residual. */
export async function steeredDraws(engine: Engine, prompt: number[], drafted: number, n: number, temperature: number, topK: number): Promise<SteeredDraws> {
  const first = new Map<number, number>(), second = new Map<number, number>();
  let accepted = 0;
  for (let seed = 1; seed <= n; seed++) {
    const d = await engine.generate(prompt, { maxTokens: 3, temperature, topK, seed, speculative: { blockSize: 4 } }).done();
    first.set(d.ids[0], (first.get(d.ids[0]) ?? 0) + 1);
    second.set(d.ids[1], (second.get(d.ids[1]) ?? 0) + 1);
    accepted += d.stats.steps < 3 ? 1 : 0;
  }
  const dist = (ids: number[]) => targetDistribution(engine, ids, temperature, topK);
  const p1 = await dist(prompt);
  const p2 = new Map<number, number>();
  let acceptRate = 0;
  for (const [t1, w] of p1) {
    const next = await dist([...prompt, t1]);
    for (const [t2, v] of next) p2.set(t2, (p2.get(t2) ?? 0) + w * v);
    acceptRate += w * (next.get(drafted) ?? 0);
  }
  return { first, second, accepted, p1, p2, acceptRate };
}
