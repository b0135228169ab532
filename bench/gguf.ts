// The GGUF side of bench/peers.ts: the converter's Python environment (.venv-gguf, made on
// first use from tools/gguf/requirements.txt) and tools/gguf/convert.py runs, cached under
// .cache/peers/ so a second bench run does not convert again.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { packageRoot } from '../lib/native';

export type Dtype = 'f32' | 'bf16' | 'f16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q4_k' | 'q5_k' | 'q6_k' | 'mixed';

const ROOT = packageRoot();
export const CONVERTER = path.join(ROOT, 'tools', 'gguf', 'convert.py');

/** .venv-gguf's python with gguf, safetensors and numpy, made on first use (pip, PyPI). */
export function ggufPython(): string {
  const venv = path.join(ROOT, '.venv-gguf');
  const py = path.join(venv, 'bin', 'python');
  const ok = () => {
    try {
      execFileSync(py, ['-c', 'import gguf, safetensors, numpy'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (fs.existsSync(py) && ok()) return py;
  console.error(`(making ${venv} from tools/gguf/requirements.txt for the GGUF converter)`);
  if (!fs.existsSync(py)) execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
  execFileSync(py, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', path.join(ROOT, 'tools', 'gguf', 'requirements.txt')], { stdio: 'inherit' });
  if (!ok()) throw new Error(`${venv}: gguf / safetensors / numpy do not import after pip install -r tools/gguf/requirements.txt`);
  return py;
}

/** Runs the converter: `checkpoint` -> `gguf` in `dtype`, plus the checkpoint copy with the same
 *  16-bit rounding when `copy16` is given. */
export function convert(checkpoint: string, gguf: string, dtype: Dtype, copy16?: string): void {
  try {
    execFileSync(ggufPython(), [CONVERTER, checkpoint, gguf, '--dtype', dtype, ...(copy16 ? ['--safetensors-out', copy16] : [])],
      { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    const stderr = String((e as { stderr?: string }).stderr ?? '').trim();
    throw new Error(`tools/gguf/convert.py ${checkpoint} (${dtype}) failed: ${stderr.split('\n').slice(-3).join(' | ') || (e as Error).message}`);
  }
}

/** The GGUF (and for 16-bit the checkpoint copy) of `target` under .cache/peers/, converted again
 *  only when the checkpoint or the converter is newer than the cached files. */
export function convertCached(target: string, dtype: Dtype): { gguf: string; copy16?: string } {
  const dir = path.join(ROOT, '.cache', 'peers', path.resolve(target).replace(/[^A-Za-z0-9]+/g, '_').slice(-80));
  const gguf = path.join(dir, `model-${dtype}.gguf`);
  const copy16 = dtype === 'f32' ? undefined : path.join(dir, `checkpoint-${dtype}`);
  if (!fs.existsSync(path.join(target, 'config.json'))) throw new Error(`--target ${target}: no config.json there`);
  const weights = fs.readdirSync(target).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(target, f));
  const newest = Math.max(...[CONVERTER, path.join(target, 'config.json'), ...weights].map((f) => fs.statSync(f).mtimeMs));
  const fresh = (f?: string) => !f || (fs.existsSync(f) && fs.statSync(f).mtimeMs >= newest);
  if (!fresh(gguf) || !fresh(copy16 && path.join(copy16, 'model.safetensors'))) {
    fs.mkdirSync(dir, { recursive: true });
    convert(target, gguf, dtype, copy16);
  }
  return { gguf, copy16 };
}
