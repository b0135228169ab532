// Child process of test/27-hardening-soak: loads and closes an engine CYCLES times (one short
// generation each) and prints, after each close, one JSON line { cycle, rss, live } (RSS in MB
// from /proc/self/status, the addon's live native objects). In a process of its own so the
// suite's other engines and compiles do not move its RSS.
//
//   node --expose-gc load-cycles.js <dist/lib> <target> <drafter> <cacheDir> <cycles>
'use strict';
const fs = require('fs');
const path = require('path');

const [dist, target, drafter, cacheDir, cycles] = process.argv.slice(2);
const { Engine } = require(path.join(dist, 'index.js'));
const { liveObjects } = require(path.join(dist, 'runtime.js'));
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;

(async () => {
  for (let cycle = 1; cycle <= Number(cycles); cycle++) {
    const engine = await Engine.load({ target, drafter, cacheDir, maxSequences: 4, maxSeqLen: 512 });
    await engine.generate([3, 14, 15, 92, 65], { maxTokens: 16 }).done();
    await engine.close();
    global.gc?.();
    fs.writeSync(1, JSON.stringify({ cycle, rss: Math.round(rss()), live: liveObjects() }) + '\n');
  }
})().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
