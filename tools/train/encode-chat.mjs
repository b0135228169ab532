#!/usr/bin/env node
// Encode instruction prompts as chat turns with a GGUF target's own tokenizer and chat template
// (dflash's, from the file's metadata), so the drafter trains on exactly the ids the engine feeds.
//
//   node tools/train/encode-chat.mjs MODEL.gguf IN.jsonl OUT.jsonl
//
// IN: {"id", "category", "prompt"} per line (tools/train/instructions.py); OUT adds "ids".
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dist = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'dist', 'lib');
const { readGgufCheckpoint } = require(path.join(dist, 'gguf-model.js'));
const { tokenizerFromJson } = require(path.join(dist, 'tokenizer.js'));

const [model, input, output] = process.argv.slice(2);
if (!output) {
  console.error('usage: node tools/train/encode-chat.mjs MODEL.gguf IN.jsonl OUT.jsonl');
  process.exit(2);
}
const g = readGgufCheckpoint(model);
const tok = tokenizerFromJson(g.tokenizer, { tokenizer: model, config: model, generation: model, template: model });
const rows = fs.readFileSync(input, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const out = rows.map((r) => JSON.stringify({ ...r, ids: tok.encodeChat([{ role: 'user', content: r.prompt }]) }));
fs.writeFileSync(output, out.join('\n') + '\n');
const lens = rows.map((_, i) => JSON.parse(out[i]).ids.length);
console.log(`${rows.length} prompts -> ${output} (tokens per prompt ${Math.min(...lens)}..${Math.max(...lens)}; eos ${tok.eosTokenIds})`);
