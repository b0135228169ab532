// Loads engines in a child process, so a crash (a signal, an abort) in the native code shows up
// as this process's exit instead of killing the test runner. Used by test/24..27-hardening-*.
//
//   node engine-child.js <dist/lib> <cases.json>
//
// cases.json: [{ id, target, drafter?, options?, prompt?: number[], maxTokens? }]. For each case,
// in order: Engine.load(target, drafter, options); if it loads, the target's logits over `prompt`
// (sha256 of the f32 bytes, and whether all are finite) and `maxTokens` greedy tokens (default 6,
// 0 = none); then
// close(). One JSON line per case on stdout, written synchronously, so the lines before a crash
// survive it: { id, ok, error?: { name, message, code }, logits?, finite?, ids?, events, warnings }.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const [dist, casesFile] = process.argv.slice(2);
const { Engine } = require(path.join(dist, 'index.js'));
const { scoreLogits } = require(path.join(dist, 'internal', 'probe.js'));
const cases = JSON.parse(fs.readFileSync(casesFile, 'utf8'));

let warnings = [];
process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));

(async () => {
  for (const c of cases) {
    warnings = [];
    const events = [];
    const out = { id: c.id };
    let engine;
    try {
      engine = await Engine.load({
        target: c.target, drafter: c.drafter, ...(c.options || {}),
        onProgress: (p) => { if (p.phase === 'program') events.push({ kind: p.kind, program: p.program, detail: p.detail }); },
      });
      engine.on('program', (p) => events.push({ kind: p.kind, program: p.program, detail: p.detail, later: true }));
      const prompt = Int32Array.from(c.prompt || [3, 14, 15, 92, 65, 35]);
      const { logits } = await scoreLogits(engine, [prompt]);
      const f = logits[0];
      out.logits = crypto.createHash('sha256').update(Buffer.from(f.buffer, f.byteOffset, f.byteLength)).digest('hex');
      out.finite = f.every(Number.isFinite);
      if (c.maxTokens !== 0) out.ids = (await engine.generate(Array.from(prompt), { maxTokens: c.maxTokens || 6 }).done()).ids;
      out.stats = engine.stats();
      out.ok = true;
    } catch (e) {
      out.ok = false;
      out.error = { name: e && e.constructor ? e.constructor.name : typeof e, message: String(e && e.message), code: e && e.code };
    }
    if (engine) await engine.close();
    await new Promise((r) => setImmediate(r));  // let emitted warnings arrive
    out.events = events;
    out.warnings = warnings;
    fs.writeSync(1, JSON.stringify(out) + '\n');
  }
})().catch((e) => {
  fs.writeSync(2, `engine-child: ${e && e.stack}\n`);
  process.exit(2);
});
