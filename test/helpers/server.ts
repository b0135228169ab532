// Shared by the test/29-server-*.test.ts files: the trained code pair (a real tokenizer with a
// chat template), a server on 127.0.0.1 with an ephemeral port, and reading /metrics values.
import * as path from 'path';

import { Engine } from '../../lib/engine';
import { createServer, DflashServer, ServerOptions } from '../../lib/server/app';

export const ROOT = path.join(__dirname, '..', '..');
export const TARGET = path.join(ROOT, 'models', 'code-pair', 'target');
export const DRAFTER = path.join(ROOT, 'models', 'code-pair', 'drafter');
export const MODEL = 'code-pair';
/** Small, so that "prompt longer than the context" is cheap to provoke. */
export const MAX_SEQ_LEN = 512;

// A fixed speculative block (adaptive off): the server tests compare step counts and seeded
// sampled text between runs, which adaptive speculation (block sizes chosen from measured
// costs) would make timing-dependent. Greedy text is the same either way.
export function loadPair(maxSequences = 4): Promise<Engine> {
  return Engine.load({ target: TARGET, drafter: DRAFTER, maxSeqLen: MAX_SEQ_LEN, maxSequences, adaptive: false });
}

export interface Running {
  server: DflashServer;
  url: string;
  /** Graceful shutdown with a short deadline (the engine stays loaded). */
  close(): Promise<void>;
}

export async function startServer(engine: Engine, options: ServerOptions = {}): Promise<Running> {
  const server = createServer(engine, {
    servedModelName: MODEL, maxSeqLen: MAX_SEQ_LEN, defaults: { temperature: 0 }, ...options,
  });
  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, url, close: () => server.shutdown({ timeoutMs: 2_000 }) };
}

/** The value of one sample in Prometheus text, e.g. metric(text, 'x_total', { status: '200' });
 *  undefined when the series is absent. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** The sum of a metric over all its label sets (0 when absent). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{.*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}

export async function scrape(url: string): Promise<string> {
  const r = await fetch(`${url}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  return r.text();
}

/** Polls `check` until it returns true (or fails after `ms`). */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
