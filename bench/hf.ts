// dflash vs Hugging Face transformers on the same checkpoint, same machine, same run: prefill
// tokens/s (a prompt of --prompt-tokens) and greedy decode tokens/s (--new-tokens), plain
// decoding (no drafter) on both sides. transformers runs from .venv-oracle (torch is not a CI
// dependency); without it the table shows dflash alone and says so.
//   npx vite-node bench/hf.ts -- [--target DIR] [--prompt-tokens 128] [--new-tokens 64]
//   npx vite-node bench/hf.ts -- --random [--preset tiny|small]   (a random-weight checkpoint)
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { packageRoot } from '../lib/native';
import { arg, machine, models, publish, resultFile, run } from './common';


async function main(): Promise<void> {
  const m = models(false);
  const target = m.target;
  const P = Number(arg('prompt-tokens', '128'));
  const N = Number(arg('new-tokens', '64'));
  const reps = Number(arg('reps', '3'));
  const engine = await Engine.load({ target, maxSeqLen: P + N + 16, maxSequences: 1 });
  const V = engine.config.target.vocabSize;
  const prompt = Array.from({ length: P }, (_, i) => (i * 31 + 7) % V);  // same ids as hf_baseline.py
  const prefill: number[] = [], decode: number[] = [];
  let fewest = N;  // dflash stops at EOS; transformers' loop always runs N tokens
  for (let r = 0; r < reps + 1; r++) {
    const d = await engine.generate(prompt, { maxTokens: N, speculative: false }).done();
    if (r === 0) continue;  // warm-up (compiles)
    fewest = Math.min(fewest, d.ids.length);
    prefill.push(P / d.stats.ttft);
    decode.push(1 / d.stats.tpot);
  }
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const mine = { prefill: med(prefill), decode: med(decode) };

  let hf: { prefill_tok_s: number; decode_tok_s: number; torch: string; threads: number } | undefined;
  const root = packageRoot();  // works under vite-node and from dist/bench
  const py = path.join(root, '.venv-oracle', 'bin', 'python');
  if (fs.existsSync(py)) {
    hf = JSON.parse(execFileSync(py, [path.join(root, 'bench', 'hf_baseline.py'), '--model', target, '--prompt-tokens', String(P),
      '--new-tokens', String(N), '--reps', String(reps)], { encoding: 'utf8' }).trim().split('\n').pop()!);
  }
  const c = engine.client;
  const lines = [
    `# dflash vs transformers, plain greedy decoding (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(c),
    `- checkpoint: ${m.describe}; the same directory for both`,
    `- prompt ${P} tokens (the same ids on both sides), ${N} new tokens greedy${fewest < N ? ` (dflash stopped at EOS after ${fewest} in some run)` : ''}; median of ${reps} runs after a warm-up`,
    `- dflash: Engine, speculative off, f32; prefill tok/s = prompt / TTFT, decode tok/s = 1 / TPOT`,
    hf ? `- transformers: torch ${hf.torch}, ${hf.threads} threads, f32, eager model(...) prefill then a KV-cached greedy loop` : '- transformers: .venv-oracle (not a CI dependency) is not installed here: baseline skipped, dflash only',
    '',
    '| measure | dflash | transformers | dflash / transformers |',
    '|---|---|---|---|',
    `| prefill tok/s | ${mine.prefill.toFixed(0)} | ${hf ? hf.prefill_tok_s.toFixed(0) : '-'} | ${hf ? (mine.prefill / hf.prefill_tok_s).toFixed(2) + 'x' : '-'} |`,
    `| decode tok/s | ${mine.decode.toFixed(1)} | ${hf ? hf.decode_tok_s.toFixed(1) : '-'} | ${hf ? (mine.decode / hf.decode_tok_s).toFixed(2) + 'x' : '-'} |`,
  ];
  publish(lines, resultFile('hf', m, c));
  engine.dispose();
}

run(main);
