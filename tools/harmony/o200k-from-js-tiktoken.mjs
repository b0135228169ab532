// Writes o200k_base.tiktoken (what openai-harmony downloads at run time) from the ranks the npm
// package js-tiktoken ships, so the goldens can be made offline. openai-harmony checks the file's
// sha256, so a file it accepts is byte for byte the published one.
//   node tools/harmony/o200k-from-js-tiktoken.mjs <js-tiktoken package dir> <out dir>
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [pkg, out] = process.argv.slice(2);
if (!pkg || !out) throw new Error('usage: o200k-from-js-tiktoken.mjs <js-tiktoken package dir> <out dir>');
const ranks = createRequire(import.meta.url)(path.resolve(pkg, 'dist', 'ranks', 'o200k_base.cjs'));
const { bpe_ranks: text } = ranks.default ?? ranks;
// Each line: a marker, the first rank, then base64 tokens of consecutive ranks.
const rows = [];
for (const line of text.split('\n').filter(Boolean)) {
  const [, first, ...tokens] = line.split(' ');
  tokens.forEach((t, i) => rows.push([Number(first) + i, t]));
}
rows.sort((a, b) => a[0] - b[0]);
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'o200k_base.tiktoken'), rows.map(([rank, t]) => `${t} ${rank}`).join('\n') + '\n');
console.log(`${rows.length} ranks -> ${path.join(out, 'o200k_base.tiktoken')}`);
