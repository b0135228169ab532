// /metrics in the Prometheus text format through prom-client. Each server owns its own registry,
// so two servers in one process (tests, an app mounting two models) never share counters.
// Gauges of live state (running / queued sequences, KV pages) are read at scrape time; request
// outcomes are recorded once per finished generation. The names are listed in docs/SERVE.md.
import { monitorEventLoopDelay } from 'perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { GenerationStats } from '../stream';

export interface LiveState {
  running(): number;
  queued(): number;
  /** engine.stats(): freePages / totalPages when the engine reports them. */
  pages(): { free?: number; total?: number; cached?: number };
  /** engine.stats().mesh.replicas: each replica's sequences and pages (data parallelism). */
  replicas?(): Array<{ runningSequences: number; queuedSequences: number; freePages: number; submitted: number; devices: unknown[] }>;
  /** engine.stats().programs with its compile and disk-cache counters. */
  programs?(): { loaded: number; servingSet: number; processMaps: number; mapLimit: number; programMaps: number; unloaded: number; compiles: number; diskCacheHits: number } | undefined;
}

export type AbortCause = 'client_disconnect' | 'shutdown';

export interface Outcome {
  stats: GenerationStats;
  speculative: boolean;
  finishReason: string;
  /** Seconds from the request's arrival to its first token (queue wait included). */
  ttft?: number;
  /** Seconds per output token after the first. */
  tpot?: number;
}

const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28];
const TAU_BUCKETS = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly finished: Counter<'finish_reason'>;
  private readonly aborted: Counter<'cause'>;
  private readonly promptTokens: Counter;
  private readonly prefixQueries: Counter;
  private readonly prefixHits: Counter;
  private readonly generatedTokens: Counter<'mode'>;
  private readonly ttft: Histogram<'mode'>;
  private readonly tpot: Histogram<'mode'>;
  private readonly requestTau: Histogram;
  private readonly specSteps: Counter;
  private readonly positionAccepted: Counter<'position'>;
  // Lifetime sums behind the mean-acceptance gauges (counters cannot be read back cheaply).
  private steps = 0;
  private stepTokens = 0;
  private readonly acceptedAt: number[] = [];

  constructor(live: LiveState) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'dflash_process_' });
    eventLoopDelayGauges(this.registry, 'dflash_process_');
    this.requests = new Counter({ name: 'dflash_http_requests_total', help: 'HTTP requests by route and response status', labelNames: ['route', 'status'], registers });
    this.finished = new Counter({ name: 'dflash_generations_finished_total', help: 'Finished generations by OpenAI finish_reason', labelNames: ['finish_reason'], registers });
    this.aborted = new Counter({ name: 'dflash_requests_aborted_total', help: 'Requests aborted before their end, queued or generating (client disconnect, shutdown deadline)', labelNames: ['cause'], registers });
    new Gauge({ name: 'dflash_running_sequences', help: 'Sequences generating now', registers, collect() { this.set(live.running()); } });
    new Gauge({ name: 'dflash_queued_sequences', help: 'Requests waiting for a free sequence slot', registers, collect() { this.set(live.queued()); } });
    new Gauge({ name: 'dflash_kv_free_pages', help: 'Free KV-cache pages', registers, collect() { const p = live.pages(); if (p.free !== undefined) this.set(p.free); } });
    new Gauge({ name: 'dflash_kv_total_pages', help: 'KV-cache pages in the pool', registers, collect() { const p = live.pages(); if (p.total !== undefined) this.set(p.total); } });
    // Compiled programs (engine.stats().programs): what is loaded, what was compiled or read from
    // the disk cache, and the process's memory maps against vm.max_map_count.
    const programGauge = (name: string, help: string, pick: (p: NonNullable<ReturnType<NonNullable<LiveState['programs']>>>) => number) =>
      new Gauge({ name, help, registers, collect() { const p = live.programs?.(); if (p) this.set(pick(p)); } });
    programGauge('dflash_programs_loaded', 'Compiled programs loaded (every replica)', (p) => p.loaded);
    programGauge('dflash_programs_serving_set', 'Programs precompile() makes for maxSeqLen-token sequences (one replica)', (p) => p.servingSet);
    programGauge('dflash_program_compiles', 'XLA compiles since start', (p) => p.compiles);
    programGauge('dflash_program_disk_cache_hits', 'Programs loaded from the disk cache since start', (p) => p.diskCacheHits);
    programGauge('dflash_process_memory_maps', 'Memory maps of the process (/proc/self/maps)', (p) => p.processMaps);
    programGauge('dflash_process_memory_maps_limit', 'The system limit on memory maps (vm.max_map_count; 0 = unknown)', (p) => p.mapLimit);
    programGauge('dflash_program_memory_maps', 'Memory maps the loaded programs added when they were loaded', (p) => p.programMaps);
    programGauge('dflash_programs_unloaded', 'Programs unloaded since start (maxLoadedPrograms or near the memory-map limit)', (p) => p.unloaded);
    // One series per data-parallel replica (label replica="0".."M-1"): how the router spreads the load.
    const perReplica = (name: string, help: string, value: (r: NonNullable<ReturnType<NonNullable<LiveState['replicas']>>>[number]) => number) =>
      new Gauge({
        name, help, labelNames: ['replica'], registers,
        collect() { (live.replicas?.() ?? []).forEach((r, i) => this.set({ replica: String(i) }, value(r))); },
      });
    perReplica('dflash_replica_running_sequences', 'Sequences generating now, per data-parallel replica', (r) => r.runningSequences);
    perReplica('dflash_replica_queued_sequences', 'Sequences waiting for admission, per data-parallel replica', (r) => r.queuedSequences);
    perReplica('dflash_replica_kv_free_pages', 'Free KV-cache pages, per data-parallel replica', (r) => r.freePages);
    perReplica('dflash_replica_requests_total', 'Requests sent to each data-parallel replica (counter semantics)', (r) => r.submitted);
    perReplica('dflash_replica_devices', 'Devices of each replica (its tensor-parallel size)', (r) => r.devices.length);
    this.promptTokens = new Counter({ name: 'dflash_prompt_tokens_total', help: 'Prompt tokens of admitted requests', registers });
    // vLLM's prefix-cache counters, in tokens: hits / queries is the hit rate.
    this.prefixQueries = new Counter({ name: 'dflash_prefix_cache_queries_total', help: 'Prompt tokens looked up in the prefix cache (finished requests)', registers });
    this.prefixHits = new Counter({ name: 'dflash_prefix_cache_hits_total', help: 'Prompt tokens found in the prefix cache (their KV pages reused)', registers });
    new Gauge({ name: 'dflash_prefix_cache_pages', help: 'KV pages held by the prefix cache', registers, collect() { const p = live.pages(); if (p.cached !== undefined) this.set(p.cached); } });
    this.generatedTokens = new Counter({ name: 'dflash_generated_tokens_total', help: 'Generated tokens, by decoding mode', labelNames: ['mode'], registers });
    this.ttft = new Histogram({ name: 'dflash_time_to_first_token_seconds', help: 'Request arrival to first token, queue wait included', labelNames: ['mode'], buckets: TTFT_BUCKETS, registers });
    this.tpot = new Histogram({ name: 'dflash_time_per_output_token_seconds', help: 'Seconds per output token after the first', labelNames: ['mode'], buckets: TPOT_BUCKETS, registers });
    this.requestTau = new Histogram({ name: 'dflash_request_acceptance_length', help: 'Mean acceptance length (tokens per target step) of each speculative generation', buckets: TAU_BUCKETS, registers });
    this.specSteps = new Counter({ name: 'dflash_speculative_steps_total', help: 'Target verify steps of speculative generations', registers });
    this.positionAccepted = new Counter({ name: 'dflash_draft_position_accepted_total', help: 'Steps whose draft position was accepted', labelNames: ['position'], registers });
    const self = this;
    new Gauge({
      name: 'dflash_mean_acceptance_length', help: 'Tokens per target step over all speculative generations since start (tau)', registers,
      collect() { this.set(self.steps > 0 ? self.stepTokens / self.steps : 0); },
    });
    new Gauge({
      name: 'dflash_draft_position_acceptance', help: 'Fraction of speculative steps whose draft position was accepted, since start', labelNames: ['position'], registers,
      collect() { self.acceptedAt.forEach((n, i) => this.set({ position: String(i + 1) }, self.steps > 0 ? n / self.steps : 0)); },
    });
  }

  request(route: string, status: number): void {
    this.requests.inc({ route, status: String(status) });
  }

  abortedRequest(cause: AbortCause): void {
    this.aborted.inc({ cause });
  }

  generation(o: Outcome): void {
    const mode = o.speculative ? 'speculative' : 'plain';
    const s = o.stats;
    this.finished.inc({ finish_reason: o.finishReason });
    this.promptTokens.inc(s.promptTokens);
    this.prefixQueries.inc(s.promptTokens);
    this.prefixHits.inc(s.cachedTokens ?? 0);
    this.generatedTokens.inc({ mode }, s.tokens);
    if (o.ttft !== undefined) this.ttft.observe({ mode }, o.ttft);
    if (o.tpot !== undefined) this.tpot.observe({ mode }, o.tpot);
    if (!o.speculative || s.steps === 0) return;
    this.requestTau.observe(s.meanAcceptanceLength);
    this.specSteps.inc(s.steps);
    this.steps += s.steps;
    this.stepTokens += s.meanAcceptanceLength * s.steps;
    s.perPositionAcceptance.forEach((fraction, i) => {
      const accepted = Math.round(fraction * s.steps);
      this.acceptedAt[i] = (this.acceptedAt[i] ?? 0) + accepted;
      this.positionAccepted.inc({ position: String(i + 1) }, accepted);
    });
  }
}

/** prom-client's event-loop delay statistics, with its help texts. */
const LAG_STATS = {
  min: 'The minimum recorded event loop delay.',
  max: 'The maximum recorded event loop delay.',
  mean: 'The mean of the recorded event loop delays.',
  stddev: 'The standard deviation of the recorded event loop delays.',
  p50: 'The 50th percentile of the recorded event loop delays.',
  p90: 'The 90th percentile of the recorded event loop delays.',
  p99: 'The 99th percentile of the recorded event loop delays.',
};

/** Replaces prom-client's nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds (same
 *  names and help). Its perf_hooks histogram is reset at every scrape, so a scrape with no sample
 *  since the previous one (the first after start, or two within its 10 ms resolution) exported
 *  mean and stddev NaN, min 9223372036.85 s (2^63 ns) and max 0. These start at 0 and keep their
 *  last sampled values until the histogram has new samples. */
function eventLoopDelayGauges(registry: Registry, prefix: string): void {
  const histogram = monitorEventLoopDelay();
  histogram.enable();
  const stats = Object.keys(LAG_STATS) as Array<keyof typeof LAG_STATS>;
  const read = (stat: keyof typeof LAG_STATS): number =>
    stat.startsWith('p') ? histogram.percentile(Number(stat.slice(1))) : histogram[stat as 'min' | 'max' | 'mean' | 'stddev'];
  const gauges: Gauge[] = [];
  for (const stat of stats) {
    const name = `${prefix}nodejs_eventloop_lag_${stat}_seconds`;
    registry.removeSingleMetric(name);
    gauges.push(new Gauge({
      name, help: LAG_STATS[stat], registers: [registry],
      // The first gauge's collect (run before the others are serialized) sets all of them.
      collect: gauges.length > 0 ? undefined : () => {
        if (histogram.count === 0) return;
        stats.forEach((s, i) => gauges[i].set(read(s) / 1e9));
        histogram.reset();
      },
    }));
  }
}
