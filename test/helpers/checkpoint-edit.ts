// Editing copies of the fixture checkpoints at the byte level (a header rewritten, bytes appended,
// a file cut), and running engines on them in a child process (engine-child.js), for the
// hardening and fuzz tests (test/24..27-hardening-*).
import * as fs from 'fs';
import * as path from 'path';

import { spawnAsync } from './spawn-async';

export const ROOT = path.join(__dirname, '..', '..');
export const DIST = path.join(ROOT, 'dist', 'lib');
export const MODELS = path.join(ROOT, 'test', 'fixtures', 'models');

/** Copies a model directory (flat: config, weights, tokenizer files). */
export function copyModel(src: string, dst: string): string {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  return dst;
}

export type Header = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;

/** A safetensors file split into its header (parsed and as text) and its data section. */
export function readRaw(file: string): { header: Header; text: string; data: Buffer } {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const text = bytes.subarray(8, 8 + n).toString('utf8');
  return { header: JSON.parse(text) as Header, text, data: bytes.subarray(8 + n) };
}

/** Writes length + header (an object is serialized, text is used as is) + data. `length`
 *  overrides the 8-byte header length (to write one that lies). */
export function writeRaw(file: string, header: object | string, data: Buffer, length?: bigint): void {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(length ?? BigInt(text.length));
  fs.writeFileSync(file, Buffer.concat([len, text, data]));
}

/** The header edited by `edit` (which changes it in place), written back with the same data. */
export function editHeader(file: string, edit: (h: Header) => void): void {
  const { header, data } = readRaw(file);
  edit(header);
  writeRaw(file, header, data);
}

export interface ChildCase {
  id: string;
  target: string;
  drafter?: string;
  options?: Record<string, unknown>;
  prompt?: number[];
  maxTokens?: number;
}

export interface ChildResult {
  id: string;
  ok: boolean;
  error?: { name: string; message: string; code?: string };
  logits?: string;
  finite?: boolean;
  ids?: number[];
  stats?: Record<string, number | string>;
  events: { kind: string; program: string; detail?: string; later?: boolean }[];
  warnings: { code?: string; message: string }[];
}

/**
 * Runs the cases in one child process (test/helpers/engine-child.js over the compiled package)
 * and resolves to its exit status, signal, stderr and one result per case that finished. A native
 * crash shows as `signal` (or a status other than 0) with the results before it. Awaited, not
 * waited for (see helpers/spawn-async.ts); several may run at once (processes sharing a cache).
 */
export async function runEngines(cases: ChildCase[], scratch: string, timeoutMs = 240_000) {
  const r = await spawnAsync(process.execPath, childArgs(cases, scratch), { timeout: timeoutMs });
  return { status: r.status, signal: r.signal, stderr: r.stderr, results: parseResults(r.stdout) };
}

let written = 0;
function childArgs(cases: ChildCase[], scratch: string): string[] {
  const file = path.join(scratch, `cases-${process.pid}-${written++}.json`);
  fs.writeFileSync(file, JSON.stringify(cases));
  return [path.join(__dirname, 'engine-child.js'), DIST, file];
}

const parseResults = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ChildResult);
