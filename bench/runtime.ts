// Microbenchmark of the runtime itself: execute overhead per call of a trivial program, and
// host->device / device->host throughput by transfer size. Prints a table with the platform.
//   npm run bench:runtime [-- --plugin PATH]
import * as os from 'os';

import { Client } from '../lib/index';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function timeit(fn: () => Promise<unknown>, minSeconds = 0.5, minIters = 5): Promise<{ median: number; iters: number }> {
  for (let i = 0; i < 3; i++) await fn();  // warm-up
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < minIters || (performance.now() - start) / 1000 < minSeconds) {
    const t = performance.now();
    await fn();
    samples.push((performance.now() - t) / 1000);
    if (samples.length > 100000) break;
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(samples.length / 2)], iters: samples.length };
}

async function main(): Promise<void> {
  const client = await Client.open({ plugin: arg('plugin') });
  console.log(`# dflash runtime microbenchmark`);
  console.log(`platform: ${client.platformName} (${client.platformVersion}); plugin: ${client.pluginPath}`);
  console.log(`host: ${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, node ${process.version}\n`);

  const trivial = await client.compile(`
func.func public @main(%x: tensor<f32>) -> tensor<f32> {
  %0 = stablehlo.add %x, %x : tensor<f32>
  return %0 : tensor<f32>
}`);
  const x = await client.upload(Float32Array.from([1]), 'f32', []);
  const ex = await timeit(async () => {
    const [y] = await trivial.execute([x]);
    y.dispose();
  }, 1.0);
  console.log('| measure | median | iterations |');
  console.log('|---|---|---|');
  console.log(`| execute, scalar add (incl. promise round trip) | ${(ex.median * 1e6).toFixed(1)} us | ${ex.iters} |`);
  const rt = await timeit(async () => {
    const [y] = await trivial.execute([x]);
    await y.toHost();
    y.dispose();
  }, 1.0);
  console.log(`| execute + 4-byte device->host copy | ${(rt.median * 1e6).toFixed(1)} us | ${rt.iters} |\n`);

  console.log('| bytes | host->device GB/s | device->host GB/s |');
  console.log('|---|---|---|');
  for (const bytes of [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]) {
    const n = bytes / 4;
    const data = new Float32Array(n).fill(1);
    const h2d = await timeit(async () => (await client.upload(data, 'f32', [n])).dispose(), 0.3, 3);
    const buf = await client.upload(data, 'f32', [n]);
    const d2h = await timeit(() => buf.toHost(), 0.3, 3);
    buf.dispose();
    console.log(`| ${bytes} | ${(bytes / h2d.median / 1e9).toFixed(2)} | ${(bytes / d2h.median / 1e9).toFixed(2)} |`);
  }
  x.dispose();
  trivial.dispose();
  client.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
