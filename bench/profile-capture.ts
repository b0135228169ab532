// Child process of bench/profile.ts: loads one engine with XLA_FLAGS set by the parent (so the CPU
// plugin dumps every module it compiles), times the programs asked for with lib/internal/probe.ts,
// and prints one JSON line: per program the engine's median time and the dumped module it ran.
// A fresh process per engine, because the plugin reads XLA_FLAGS once, when it loads.
//   node dist/bench/profile-capture.js --dump DIR --target DIR [--drafter DIR] --programs v1,v16,d16
//     [--context 256] [--reps 11] [--batch-invariant true|false] [--kv BYTES]
import * as fs from 'fs';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { timeDraft, timeVerify } from '../lib/internal/probe';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

async function main(): Promise<void> {
  const dump = opt('dump', '');
  if (!dump || !(process.env.XLA_FLAGS ?? '').includes(dump)) throw new Error('--dump DIR must be the --xla_dump_to of XLA_FLAGS');
  const drafter = opt('drafter', '') || undefined;
  const context = Number(opt('context', '256'));
  const reps = Number(opt('reps', '11'));
  const engine = await Engine.load({
    target: opt('target', ''), drafter, maxSeqLen: 2048, maxSequences: 1, cacheDir: false, warmup: false,
    batchInvariant: opt('batch-invariant', 'true') === 'true', kvCacheMemory: Number(opt('kv', String(512e6))),
  });
  const modules = () => new Set(fs.existsSync(dump) ? fs.readdirSync(dump).filter((f) => f.endsWith('.before_optimizations.txt')) : []);
  let seen = modules();
  const programs = [];
  for (const id of opt('programs', 'v1').split(',')) {
    const m = id.match(/^([vd])(\d+)$/);
    if (!m) throw new Error(`--programs: ${id} is not v<K> (verify K tokens) or d<B> (draft a block of B)`);
    const size = Number(m[2]);
    const seconds = m[1] === 'v' ? await timeVerify(engine, size, context, reps) : await timeDraft(engine, size, context, reps);
    const now = modules();
    // The probe compiles its program on first use: the largest new module is that program (a
    // background compile, if any, is a smaller helper program).
    const fresh = [...now].filter((f) => !seen.has(f)).map((f) => path.join(dump, f));
    fresh.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size);
    if (!fresh.length) throw new Error(`${id}: no new module in ${dump} (was the program compiled earlier in this process?)`);
    programs.push({ id, kind: m[1] === 'v' ? 'score' : 'draft', size, engineMs: seconds * 1e3, module: fresh[0] });
    seen = now;
  }
  const st = engine.stats();
  const t = engine.config.target, d = engine.config.drafter;
  console.log(JSON.stringify({
    dtype: st.dtype, dtypeReason: st.dtypeReason, context, reps, programs,
    target: { hidden: t.hiddenSize, intermediate: t.intermediateSize, vocab: t.vocabSize, layers: t.numLayers,
      qDim: t.numHeads * t.headDim, kvDim: t.numKvHeads * t.headDim },
    drafter: d ? { intermediate: d.intermediateSize, qDim: d.numHeads * d.headDim, kvDim: d.numKvHeads * d.headDim,
      layers: d.numLayers, featDim: d.targetLayerIds.length * t.hiddenSize, blockSize: d.blockSize } : null,
  }));
  await engine.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
