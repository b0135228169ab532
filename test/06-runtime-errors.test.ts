// Bad input must give a clear Error, never a crash: malformed MLIR, wrong arity / shape / dtype
// at execute, a missing plugin, a file that is not a plugin, disposing twice. After each, the
// process is alive and the client still works.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Client } from '../lib/runtime';
import { native } from '../lib/native';

let client: Client;
const ident = `
func.func public @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}`;

beforeAll(async () => {
  client = await Client.open();
});
afterAll(() => client?.dispose());

async function stillWorks(): Promise<void> {
  const exe = await client.compile(ident);
  const [y] = await exe.execute([await client.upload(Float32Array.from([1, 2, 3, 4]), 'f32', [4])]);
  expect(Array.from((await y.toHost()) as Float32Array)).toEqual([1, 2, 3, 4]);
}

describe('compile errors', () => {
  it('malformed MLIR rejects with the plugin message and code', async () => {
    const err = await client.compile('func.func @main( this is not mlir').catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message.length).toBeGreaterThan(10);
    expect(err.code).toBeTypeOf('string');
    await stillWorks();
  });

  it('a type error inside a well-formed module rejects', async () => {
    const bad = `
func.func public @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = stablehlo.add %x, %x : tensor<5xf32>
  return %0 : tensor<4xf32>
}`;
    await expect(client.compile(bad)).rejects.toThrow();
    await stillWorks();
  });
});

describe('execute errors', () => {
  it('wrong number of inputs', async () => {
    const exe = await client.compile(ident);
    const a = await client.upload(new Float32Array(4), 'f32', [4]);
    await expect(exe.execute([a, a])).rejects.toThrow(/argument|input|expect/i);
    await expect(exe.execute([])).rejects.toThrow(/argument|input|expect/i);
    await stillWorks();
  });

  it('wrong shape', async () => {
    const exe = await client.compile(ident);
    const a = await client.upload(new Float32Array(5), 'f32', [5]);
    await expect(exe.execute([a])).rejects.toThrow(/shape|dim|expect/i);
    await stillWorks();
  });

  it('wrong dtype', async () => {
    const exe = await client.compile(ident);
    const a = await client.upload(new Int32Array(4), 's32', [4]);
    await expect(exe.execute([a])).rejects.toThrow(/type|expect/i);
    await stillWorks();
  });

  it('upload with a byte length that does not match dims', async () => {
    await expect(client.upload(new Float32Array(3), 'f32', [4])).rejects.toThrow(/bytes/);
    await expect(client.upload(new Float32Array(4), 'nope' as never, [4])).rejects.toThrow(/dtype/);
  });

  it('a non-buffer input', async () => {
    const exe = await client.compile(ident);
    expect(() => exe.handle.execute([{} as never])).toThrow(/Buffer/);
  });
});

describe('plugin errors', () => {
  it('a missing plugin path names the file', async () => {
    const p = '/nonexistent/dir/libnothing.so';
    await expect(native().openClient(p)).rejects.toThrow(/nonexistent/);
    expect(() => native().probePlugin(p)).toThrow(/nonexistent/);
  });

  it('a file that is not a plugin', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-'));
    const txt = path.join(dir, 'fake.so');
    fs.writeFileSync(txt, 'not an ELF file');
    await expect(native().openClient(txt)).rejects.toThrow(/fake\.so/);
    // A real shared library without GetPjrtApi.
    const libc = ['/lib/x86_64-linux-gnu/libm.so.6', '/usr/lib/x86_64-linux-gnu/libm.so.6', '/lib64/libm.so.6'].find((f) => fs.existsSync(f));
    if (libc) await expect(native().openClient(libc)).rejects.toThrow(/GetPjrtApi|not a PJRT plugin/);
    await stillWorks();
  });
});

describe('dispose errors', () => {
  it('disposing twice is a clear error; use after dispose too', async () => {
    const b = await client.upload(new Float32Array(4), 'f32', [4]);
    b.dispose();
    expect(() => b.dispose()).toThrow(/already disposed/);
    await expect(b.toHost()).rejects.toThrow(/disposed/);
    const exe = await client.compile(ident);
    exe.dispose();
    expect(() => exe.dispose()).toThrow(/already disposed/);
    await expect(exe.execute([])).rejects.toThrow(/disposed/);
    // Symbol.dispose stays idempotent for `using` blocks.
    expect(() => b[Symbol.dispose]()).not.toThrow();
  });
});
