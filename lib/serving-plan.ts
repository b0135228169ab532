// The programs `dflash serve` precompiles for a checkpoint and its options (`dflash doctor
// --target DIR`), from the engine's own plan (native servingPlan: engine/serving_plan.h), without
// a device or the weights: prefill chunks, then per rows bucket decode, verify and drafts.
import { openDrafter } from './model-source';

import { native } from './native';
import { serveEngineOptions } from './server/serve-command';

export interface PlannedProgram {
  kind: 'prefill' | 'prefill-context' | 'decode' | 'verify' | 'draft';
  rows: number;
  tokens: number;
  block: number;
  text: string;
}

export interface ProgramPlan {
  maxSequences: number;
  maxSeqLen: number;
  context: number;
  /** The drafter's block (0: no drafter). */
  block: number;
  programs: PlannedProgram[];
}

/** serve's options as `dflash serve` reads them (--max-sequences, --max-seq-len, --precompile-context). */
export function planServingPrograms(v: Parameters<typeof serveEngineOptions>[0]): ProgramPlan {
  const o = serveEngineOptions(v);
  const block = v.drafter ? Number(openDrafter(v.drafter).config.block_size ?? 0) : 0;
  const programs = native().servingPlan({ maxSequences: o.maxSequences, maxSeqLen: o.maxSeqLen }, o.maxSeqLen, block, o.precompileContext) as PlannedProgram[];
  return { maxSequences: o.maxSequences, maxSeqLen: o.maxSeqLen, context: o.precompileContext, block, programs };
}

export function describeProgramPlan(p: ProgramPlan): string[] {
  const chunks = p.programs.filter((x) => x.kind === 'prefill').map((x) => x.tokens);
  const rows = [...new Set(p.programs.filter((x) => x.kind === 'decode').map((x) => x.rows))];
  const perRows = p.programs.filter((x) => x.rows === rows[rows.length - 1] && x.kind !== 'prefill' && x.kind !== 'prefill-context')
    .map((x) => x.text.replace(/^(\w+) \d+ rows?( x )?/, (_, k, x2) => (x2 ? `${k} x ` : k)));
  return [
    `  ${p.programs.length} programs, for ${p.maxSequences} sequences of up to ${p.context} tokens (the count does not grow with the context):`,
    `    prefill chunks of ${chunks.join(', ')} tokens${p.block ? ' (each with the drafter\'s context of it)' : ''}`,
    `    per rows bucket ${rows.join(', ')}: ${perRows.join('; ')}`,
    '  greedy, sampled and structured-output rows share them; the disk cache keeps them for the next start',
  ];
}
