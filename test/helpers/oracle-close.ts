// The suite's one comparison of dflash's logits / hidden states with an oracle's (transformers,
// JAX, numpy): numpy.allclose's rule, |got - want| <= atol + rtol * |want|, with the worst element
// named in the message. f32 results differ from the oracle's by summation order (XLA's fusions,
// a tensor-parallel all-reduce, the suite's -O0 code generation: vitest.config.ts), an error
// that grows with the value, hence the relative term.
import { expect } from 'vitest';

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, atol = 2e-4, rtol = 2e-4): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]);
    if (err > worst) { worst = err; at = i; }
  }
  expect(worst, `${what}: worst |dflash - oracle| beyond tolerance at ${at} (${got[at]} vs ${want[at]})`).toBeLessThanOrEqual(atol);
}
