// Runs NVIDIA's aiperf (PyPI `aiperf`, pinned in tools/aiperf/requirements.txt, installed into
// ./.venv-aiperf by scripts/setup.sh) against an OpenAI-compatible server and reads its results:
// profile_export_aiperf.json (requests, errors, TTFT, ITL, throughput, prompt-cache reads) and
// server_metrics_export.json (what it scraped from /metrics). Used by test/29-server-aiperf and
// bench/aiperf.ts.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');
export const AIPERF = path.join(ROOT, '.venv-aiperf', 'bin', 'aiperf');

export interface AiperfOptions {
  url: string;
  model: string;
  /** The tokenizer directory, relative to the repository root (aiperf takes an absolute path for a hub id). */
  tokenizer: string;
  outDir: string;
  endpoint?: 'chat' | 'completions';
  concurrency?: number;
  requests?: number;
  inputTokens?: number;
  outputTokens?: number;
  /** Tokens of a system prompt every request shares (exercises the prefix cache). */
  sharedSystemPrompt?: number;
}

/** A metric's statistics as aiperf exports them ({unit, avg, p50, p99, ...}). */
export type Stat = { unit: string; avg: number; p50?: number; p90?: number; p99?: number; min?: number; max?: number; count?: number };

export interface AiperfResult {
  requests: number;
  errors: number;
  errorSummary: Array<{ error_details: { message: string }; count: number }>;
  ttft: Stat;
  itl: Stat;
  outputTokensPerSecond: number;
  requestsPerSecond: number;
  /** Prompt tokens read from the server's prefix cache (usage.prompt_tokens_details.cached_tokens). */
  promptCacheReadTokens?: number;
  promptCacheReadPercent?: number;
  /** Names of the /metrics series aiperf scraped. */
  scrapedMetrics: string[];
  seconds: number;
}

export async function runAiperf(o: AiperfOptions): Promise<AiperfResult> {
  if (!fs.existsSync(AIPERF)) throw new Error(`no aiperf in ${AIPERF}: run \`bash scripts/setup.sh\``);
  fs.mkdirSync(o.outDir, { recursive: true });
  const args = [
    'profile', '--model', o.model, '--url', o.url, '--endpoint-type', o.endpoint ?? 'chat', '--streaming',
    '--concurrency', String(o.concurrency ?? 4), '--request-count', String(o.requests ?? 16),
    '--synthetic-input-tokens-mean', String(o.inputTokens ?? 64), '--output-tokens-mean', String(o.outputTokens ?? 16),
    '--tokenizer', o.tokenizer, '--ui-type', 'none', '--no-gpu-telemetry', '--random-seed', '0', '--output-artifact-dir', o.outDir,
    ...(o.sharedSystemPrompt ? ['--shared-system-prompt-length', String(o.sharedSystemPrompt)] : []),
  ];
  const t0 = performance.now();
  // aiperf leaves a /tmp/aiperf_mmap_<id> directory behind per run: removed below.
  const mmaps = () => new Set(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('aiperf_mmap_')));
  const before = mmaps();
  // No HF_HUB_OFFLINE: with it aiperf 0.13 refuses local tokenizer paths; it makes no network
  // connection for a local directory either way (checked with strace).
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(AIPERF, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });
  for (const d of mmaps()) if (!before.has(d)) fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
  const file = path.join(o.outDir, 'profile_export_aiperf.json');
  // aiperf exits 0 when some requests failed, 1 (and writes no summary) when all did.
  if (r.code !== 0 || !fs.existsSync(file)) throw new Error(`aiperf exited with ${r.code}:\n${r.out.slice(-3000)}`);
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const metricsFile = path.join(o.outDir, 'server_metrics_export.json');
  const scraped = fs.existsSync(metricsFile) ? Object.keys(JSON.parse(fs.readFileSync(metricsFile, 'utf8')).metrics ?? {}) : [];
  return {
    requests: j.request_count?.avg ?? 0,
    errors: j.error_request_count?.avg ?? 0,  // absent when there were none
    errorSummary: j.error_summary ?? [],
    ttft: j.time_to_first_token,
    itl: j.inter_token_latency,
    outputTokensPerSecond: j.output_token_throughput?.avg ?? 0,
    requestsPerSecond: j.request_throughput?.avg ?? 0,
    promptCacheReadTokens: j.total_usage_prompt_cache_read_tokens?.avg,
    promptCacheReadPercent: j.overall_usage_prompt_cache_read_pct?.avg,
    scrapedMetrics: scraped,
    seconds: (performance.now() - t0) / 1000,
  };
}
