// Random-weight checkpoints at published shapes, for TypeScript callers (test/40, bench/shapes):
// runs tools/shapes/make_random.py, the one generator (also used by the device kit on GPU hosts),
// with the project's Python (./.venv, made by scripts/setup.sh) or python3 with numpy.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { spawnAsync } from './spawn-async';

// The checkout's root: this file also runs compiled, from dist/test/helpers.
const ROOT = [path.join(__dirname, '..', '..'), path.join(__dirname, '..', '..', '..')]
  .find((d) => fs.existsSync(path.join(d, 'tools', 'shapes', 'make_random.py'))) ?? path.join(__dirname, '..', '..');

function python(): string {
  for (const py of [process.env.DFLASH_PYTHON, path.join(ROOT, '.venv', 'bin', 'python'), 'python3'])
    if (py && spawnSync(py, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0) return py;
  throw new Error('tools/shapes/make_random.py needs a Python with numpy: run scripts/setup.sh (./.venv) or set DFLASH_PYTHON');
}

/** Writes a random `shape` checkpoint (qwen3-0.6b | qwen3-4b | mini) into `out` (+ its DFlash
 *  drafter into `drafter`); returns the target's safetensors sizes and config.json. */
export function makeRandomShape(shape: string, out: string, o: { drafter?: string; dtype?: 'bf16' | 'f32' } = {}) {
  const r = spawnSync(python(), makeArgs(shape, out, o), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`make_random.py --shape ${shape} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return describe(out);
}

/** makeRandomShape() without blocking the event loop (a test worker's must keep answering). */
export async function makeRandomShapeAsync(shape: string, out: string, o: { drafter?: string; dtype?: 'bf16' | 'f32' } = {}) {
  const r = await spawnAsync(python(), makeArgs(shape, out, o));
  if (r.status !== 0) throw new Error(`make_random.py --shape ${shape} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return describe(out);
}

function makeArgs(shape: string, out: string, o: { drafter?: string; dtype?: 'bf16' | 'f32' }): string[] {
  const args = [path.join(ROOT, 'tools', 'shapes', 'make_random.py'), '--shape', shape, '--out', out, '--dtype', o.dtype ?? 'bf16'];
  if (o.drafter) args.push('--drafter', o.drafter);
  return args;
}

function describe(out: string) {
  const file = path.join(out, 'model.safetensors');
  const fd = fs.openSync(file, 'r');
  const len = Buffer.alloc(8);
  fs.readSync(fd, len, 0, 8, 0);
  fs.closeSync(fd);
  const fileBytes = fs.statSync(file).size;
  return {
    fileBytes,
    /** The tensors' bytes: the file less its 8-byte length and JSON header. */
    tensorBytes: fileBytes - 8 - Number(len.readBigUInt64LE()),
    config: JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, any>,
  };
}
