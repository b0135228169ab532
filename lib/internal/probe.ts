// Oracle and benchmark hooks of the native engine: run one program on scratch pages, between
// scheduler iterations. Not public API (not exported from lib/index.ts); test/ and bench/ use it.
import type { Engine } from '../engine';
import { native } from '../native';

/** The target score program on independent sequences: logits (len x V) and hidden states. */
export function scoreLogits(engine: Engine, batch: Int32Array[], options: { hiddenLayers?: number[] } = {}) {
  return native().internal.scoreLogits(engine.nativeEngine, batch, options.hiddenLayers);
}

/** The drafter on `rows` context feature rows, then a block of `blockSize` after `lastToken`. */
export function draftLogits(engine: Engine, features: Float32Array, rows: number, lastToken: number, blockSize: number) {
  return native().internal.draftLogits(engine.nativeEngine, features, rows, lastToken, blockSize);
}

/** Median seconds of one verify execution (+ its host transfer): `rows` rows of `k` tokens after
 *  `context`. `mask`: the token mask of a batch no grammar constrains ('allow-all', as serving
 *  runs it), one that refuses every other token ('constrained'), or a program without the input
 *  ('none': what the shared program costs free batches). */
export function timeVerify(engine: Engine, k: number, context: number, reps: number, rows = 1, mask: 'allow-all' | 'constrained' | 'none' = 'allow-all') {
  return native().internal.timeVerify(engine.nativeEngine, rows, k, context, reps, mask);
}

/** Median seconds of one drafter execution: `rows` rows drafting `block` tokens after `context`. */
export function timeDraft(engine: Engine, block: number, context: number, reps: number, rows = 1) {
  return native().internal.timeDraft(engine.nativeEngine, rows, block, context, reps);
}

/** Median seconds of the all-reduces alone of a tensor-parallel verify of `rows` x `k` tokens
 *  (2 per layer + the embedding's, each after the one before); 0 on one device. */
export function timeCollectives(engine: Engine, k: number, reps: number, rows = 1) {
  return native().internal.timeCollectives(engine.nativeEngine, rows, k, reps);
}
