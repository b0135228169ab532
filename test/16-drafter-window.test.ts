// Sliding-window drafter layers as z-lab's published drafters were benchmarked: the numpy drafter
// reference (tools/oracle/drafter_ref.py, the oracle of dflash's drafter graph in 07) reproduces
// the committed logits of z-lab's own DFlashDraftModel code run with flash-attention-2's window
// (emulated on CPU by tools/oracle/check_drafter_window.py): windows of 3, 6, 12 and 64 over
// contexts of 1 to 40 rows, shorter and longer than the window, windows smaller than the block,
// contexts fed in one call or in several calls through z-lab's cropped draft cache. The window a
// config declares is read the same way by lib/config.ts, the numpy reference and z-lab's code.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { drafterConfigFromHF, targetConfigFromHF } from '../lib/config';

const ROOT = path.join(__dirname, '..');
const MODELS = path.join(__dirname, 'fixtures', 'models');
const PYTHON = [path.join(ROOT, '.venv', 'bin', 'python'), 'python3'].find((p) => p === 'python3' || fs.existsSync(p))!;

interface WindowGolden {
  drafter: string;
  target: string;
  features: number[][];
  cases: { windows: (number | null)[]; steps: number[]; last_token: number; block_size: number; logits: number[] }[];
}
const golden: WindowGolden = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'drafter-window.json'), 'utf8'));

function reference(features: number[][], last: number, block: number, windows?: (number | null)[]): number[] {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-window-')), 'case.json');
  fs.writeFileSync(file, JSON.stringify({ features, last_token: last, block_size: block, ...(windows ? { windows } : {}) }));
  const out = execFileSync(PYTHON, [path.join(ROOT, 'tools', 'oracle', 'drafter_ref.py'), '--drafter', path.join(MODELS, golden.drafter),
    '--target', path.join(MODELS, golden.target), '--input', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(out).logits as number[][]).flat();
}

const worst = (got: number[], want: number[]) => got.reduce((m, g, i) => Math.max(m, Math.abs(g - want[i]) - 1e-4 * Math.abs(want[i])), 0);

describe("the numpy drafter reference against z-lab's drafter code with flash-attention's window", () => {
  for (const c of golden.cases) {
    const ctx = c.steps[c.steps.length - 1];
    it(`windows ${JSON.stringify(c.windows)}, context ${ctx} (fed as ${JSON.stringify(c.steps)})`, () => {
      const ref = reference(golden.features.slice(0, ctx), c.last_token, c.block_size, c.windows);
      expect(ref.length).toBe(c.logits.length);
      expect(worst(ref, c.logits)).toBeLessThan(1e-4);
    });
  }

  it('the goldens exercise the window: windowed logits differ from full attention where keys fall outside it', () => {
    const full = new Map(golden.cases.filter((c) => c.windows.every((w) => w === null)).map((c) => [JSON.stringify(c.steps), c.logits]));
    const narrow = golden.cases.filter((c) => c.windows[0] === 3);
    expect(narrow.length).toBeGreaterThan(0);
    for (const c of narrow) expect(worst(c.logits, full.get(JSON.stringify(c.steps))!)).toBeGreaterThan(1);
  });

  it('the window the fixture config declares is the one lib/config.ts, the reference and z-lab read', () => {
    const dcfg = JSON.parse(fs.readFileSync(path.join(MODELS, golden.drafter, 'config.json'), 'utf8'));
    const tcfg = JSON.parse(fs.readFileSync(path.join(MODELS, golden.target, 'config.json'), 'utf8'));
    const windows = drafterConfigFromHF(dcfg, targetConfigFromHF(tcfg), undefined, { slidingWindows: true }).slidingWindows;
    expect(windows).toEqual([6, null]);
    const c = golden.cases.find((x) => JSON.stringify(x.windows) === JSON.stringify(windows) && x.steps.length === 1 && x.steps[0] === 17)!;
    expect(worst(reference(golden.features.slice(0, 17), c.last_token, c.block_size), c.logits)).toBeLessThan(1e-4);  // windows from the config
  });
});
