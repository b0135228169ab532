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
