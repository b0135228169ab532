// A child process run without blocking the test worker. spawnSync / execFileSync freeze the
// worker's event loop; vitest's worker answers its own RPC calls (onTaskUpdate) on that loop and
// gives up after 60 s, so a child that runs a minute or more must be awaited, not waited for.
import { spawn, type SpawnOptions } from 'child_process';

export interface SpawnResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function spawnAsync(cmd: string, args: string[], options: SpawnOptions & { input?: string } = {}): Promise<SpawnResult> {
  const { input, ...rest } = options;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...rest, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
    child.stdin!.end(input ?? '');
  });
}
