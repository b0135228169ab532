#!/usr/bin/env node
// prepack: copies the repository's models/code-pair (the one copy kept in git) into this package,
// so `npm pack` here produces dflash-demo-pair with the same files the README's demo uses.
const fs = require('fs');
const path = require('path');

const from = path.join(__dirname, '..', '..', 'models', 'code-pair');
const to = path.join(__dirname, 'models', 'code-pair');
fs.rmSync(to, { recursive: true, force: true });
for (const part of ['target', 'drafter']) {
  fs.mkdirSync(path.join(to, part), { recursive: true });
  for (const f of fs.readdirSync(path.join(from, part))) {
    // training.json records the run; the model needs config, weights and tokenizer only.
    if (f === 'training.json') continue;
    fs.copyFileSync(path.join(from, part, f), path.join(to, part, f));
  }
}
