// Command line of random-checkpoint.ts:
//   npx vite-node tools/shapes/make-random.ts -- --shape qwen3-0.6b|qwen3-4b --out DIR [--drafter DIR] [--dtype bf16|f32]
import { DRAFTER_4B, Dtype, SHAPES, writeDrafter, writeTarget } from './random-checkpoint';

{
  const arg = (k: string, d?: string) => { const i = process.argv.indexOf(`--${k}`); return i >= 0 ? process.argv[i + 1] : d; };
  const shape = SHAPES[arg('shape', 'qwen3-0.6b')!];
  if (!shape) throw new Error(`--shape must be one of ${Object.keys(SHAPES).join(', ')}`);
  const out = arg('out');
  if (!out) throw new Error('--out DIR is required');
  const dtype = (arg('dtype', 'bf16') === 'f32' ? 'F32' : 'BF16') as Dtype;
  const t0 = Date.now();
  const bytes = writeTarget(out, shape, dtype);
  console.log(`${shape.name}-shaped target: ${(bytes / 1e9).toFixed(2)} GB in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${out}`);
  const drafter = arg('drafter');
  if (drafter) console.log(`drafter: ${(writeDrafter(drafter, shape, DRAFTER_4B, dtype) / 1e9).toFixed(2)} GB -> ${drafter}`);
}
