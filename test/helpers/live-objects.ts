// Live native-object counts once garbage from earlier tests is gone. Every test file shares one
// process (vitest.config.ts), and a wrapper another test dropped releases its native object
// whenever the collector finalizes it, so a bare before/after comparison races with the GC:
// collect (vitest runs with --expose-gc), let the finalizers run, read until the counts hold.
import { liveObjects } from '../../lib/runtime';

export async function settledLiveObjects(): Promise<ReturnType<typeof liveObjects>> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('settledLiveObjects needs node --expose-gc (vitest.config.ts passes it)');
  let last = JSON.stringify(liveObjects());
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    const now = JSON.stringify(liveObjects());
    if (now === last) return JSON.parse(now);
    last = now;
  }
  throw new Error(`live object counts still changing after 20 collections: ${last}`);
}
