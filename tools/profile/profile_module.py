"""Per-thunk time of one dflash program on XLA:CPU, from the engine's own compiled module.

Input: the module the engine compiled (its `--xla_dump_to` dump, before optimizations, as text).
This compiles it with jaxlib's XLA CPU client (jaxlib 0.11.2: the XLA the engine's CPU plugin is
built from), binds inputs like lib/internal/probe.ts timeVerify / timeDraft do (a row at
`--context`, its pages, the pool's "none" slot), and measures three ways:
  1. untraced: median wall time of execute + fetching the result (the engine's timeVerify measures
     the same span);
  2. traced: jax.profiler, whose XLA:CPU thunk executor events give each thunk's time; tracing
     slows the run (about 2x here) and slows YNNPACK dot thunks more than the generated kernels;
  3. perf (if the `perf` tool works): samples of an untraced loop, split into the time the thread
     running the thunk executor spends in YNNPACK thunks vs the other thunks — unbiased, coarse.
A thunk's traced time is its share of the run's wall time (overlapping thunks split the stretch they
share), scaled so that its class total (YNNPACK dots / other thunks) matches the untraced run: by
the perf split when there is a plausible one, else uniformly. Time between and around thunks
(dispatch, executor gaps, the result's transfer) is taken from the traced run as is.
Prints one JSON object on stdout.
  python tools/profile/profile_module.py --hlo FILE --kind score|draft --context 256 --config JSON
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hlo_buckets import Classifier  # noqa: E402


def compile_module(path):
    import jax
    import jaxlib._hlo as hlo
    from jax._src.lib import _jax, xla_client as xc

    text = open(path).read()
    header = text.split('\n', 1)[0]
    aliases = {int(p): int(o) for o, p in re.findall(r'\{(\d+)\}: \((\d+), \{\}', header)}
    comp = hlo.XlaComputation(hlo.hlo_module_from_text(text).as_serialized_hlo_module_proto())
    mlir = _jax.mlir.xla_computation_to_mlir_module(comp)
    # The HLO -> MLIR round trip drops input_output_alias: put the donation back, so the caches
    # update in place as in the engine (else every run copies them).
    for p, o in aliases.items():
        mlir, n = re.subn(r'(%%arg%d: tensor<[^>]*>)' % p, r'\1 {tf.aliasing_output = %d : i32}' % o, mlir, count=1)
        if n != 1:
            raise RuntimeError(f'cannot restore the alias of parameter {p} in {path}')
    devices = jax.devices('cpu')
    exe = devices[0].client.compile_and_load(mlir, xc.DeviceList(tuple(devices)), xc.CompileOptions())
    shapes = [(s.dimensions(), s.numpy_dtype()) for s in comp.program_shape().parameter_shapes()]
    return exe, shapes, aliases, exe.hlo_modules()[0].to_string()


INPUT_NAMES = {
    'score': ['tokens', 'positions', 'block_table', 'draft_pool', 'pool_slot'],
    'draft': ['feats', 'positions', 'block_table', 'last', 'block_start', 'block_len', 'draft_pool', 'pool_slot'],
}


def make_inputs(kind, shapes, aliases, context):
    """Weights: small random values (norm vectors 1); caches zero; the row's inputs as probe.cc."""
    caches = sorted(p for p in aliases if len(shapes[p][0]) == 5)
    if len(caches) != 2:
        raise RuntimeError(f'expected two donated 5-D caches, found parameters {caches}')
    first_input = caches[-1] + 1
    names = INPUT_NAMES[kind][:len(shapes) - first_input]
    if len(shapes) - first_input not in (3, 5, 6, 8) or len(names) != len(shapes) - first_input:
        raise RuntimeError(f'{kind}: {len(shapes) - first_input} inputs after the caches; this tool knows {INPUT_NAMES[kind]}')
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(1 << 16, dtype=np.float32) * 0.02)
    host = []
    for dims, dt in shapes[:caches[0]]:
        n = int(np.prod(dims))
        a = np.ones(dims, np.float32) if len(dims) == 1 else np.resize(block, n).reshape(dims)
        host.append(a.astype(dt))
    cache_dims = shapes[caches[0]][0]
    host += [np.zeros(d, dt) for d, dt in shapes[caches[0]:first_input]]
    n_pages, page = cache_dims[1], cache_dims[2]
    vals = {}
    named = dict(zip(names, shapes[first_input:]))
    if kind == 'score':
        k = named['tokens'][0][1]
        vals['tokens'] = (np.arange(k, dtype=np.int32) * 7 + 3) % 256
        vals['positions'] = context + np.arange(k, dtype=np.int32)
        span = context + k
    else:
        a = named['feats'][0][1]
        vals['feats'] = np.full(named['feats'][0], 0.01, np.float32).astype(named['feats'][1])
        vals['positions'] = context + np.arange(a, dtype=np.int32)
        vals.update(last=0, block_start=context + a, block_len=a)
        span = context + 2 * a
    pages = -(-span // page)
    p_bucket = named['block_table'][0][1]
    if pages > min(p_bucket, n_pages - 1):
        raise RuntimeError(f'context {context}: {pages} pages needed, the program has {p_bucket} per row, the cache {n_pages - 1}')
    table = np.zeros(p_bucket, np.int32)
    table[:pages] = np.arange(1, pages + 1)
    vals['block_table'] = table
    if 'draft_pool' in named:
        vals['draft_pool'] = 0
        vals['pool_slot'] = named['draft_pool'][0][0] - 1  # the pool's last row: "no draft"
    for name in names:
        dims, dt = named[name]
        host.append(np.broadcast_to(np.asarray(vals[name]).astype(dt), dims).copy())
    return host, caches, first_input


class Runner:
    def __init__(self, exe, host, aliases):
        import jax
        self.exe, self.aliases = exe, aliases
        dev = jax.devices('cpu')[0]
        self.args = [jax.device_put(a, dev) for a in host]

    def once(self):
        outs = self.exe.execute(self.args)
        for p, o in self.aliases.items():
            self.args[p] = outs[o]
        outs[-1].block_until_ready()
        np.asarray(outs[-1])

    def timed(self, reps):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            self.once()
            ts.append(time.perf_counter() - t0)
        return ts


def trace(runner, reps, workdir):
    """Per-thunk medians (us) and per-run traced wall / thunk-span medians (ms)."""
    import jax
    from jaxlib import _profile_data
    opts = jax.profiler.ProfileOptions()
    opts.python_tracer_level = 0
    jax.profiler.start_trace(workdir, profiler_options=opts)
    walls = runner.timed(reps)
    jax.profiler.stop_trace()
    data = _profile_data.ProfileData.from_file(glob.glob(os.path.join(workdir, '**', '*.xplane.pb'), recursive=True)[0])
    starts, ends = [], {}
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                st = dict(ev.stats)
                if 'hlo_op' in st:
                    starts.append((st['run_id'], st['hlo_op'], ev.start_ns, ev.duration_ns, st.get('_p')))
                elif ev.name.startswith('end: ') and '_c' in st:
                    ends[st['_c']] = ev.start_ns + ev.duration_ns
    runs = {}
    for run, op, s, d, p in starts:
        # An async thunk (YNNPACK, a parallel kernel) returns before it completes: "end: op" closes it.
        end = ends.get(p, s + d) if p is not None else s + d
        runs.setdefault(run, []).append((s, max(end, s), op))
    per_thunk, busy = {}, []
    for intervals in runs.values():
        # Sweep the run's timeline: each stretch of wall time is shared equally by the thunks active
        # in it, so overlapping thunks are not counted twice and the sum is the busy wall time.
        events = sorted([(s, 1, op) for s, e, op in intervals] + [(e, -1, op) for s, e, op in intervals])
        own, active, last = {}, {}, None
        for t, kind, op in events:
            if active and last is not None and t > last:
                for a in active:
                    own[a] = own.get(a, 0.0) + (t - last) / len(active)
            last = t
            active[op] = active.get(op, 0) + kind
            if active[op] == 0:
                del active[op]
        for op, ns in own.items():
            per_thunk.setdefault(op, []).append(ns)
        busy.append(sum(own.values()))
    return ({op: statistics.median(v + [0.0] * (len(runs) - len(v))) / 1e3 for op, v in per_thunk.items()},
            statistics.median(walls) * 1e3, statistics.median(busy) / 1e6, len(runs))


def perf_split(runner, seconds, workdir):
    """Share of the thunk executor's time in YNNPACK thunks, from perf samples of untraced runs."""
    if not shutil.which('perf'):
        return None, 'perf not found'
    out = os.path.join(workdir, 'perf.data')
    rec = subprocess.Popen(['perf', 'record', '-q', '-F', '1999', '-g', '-p', str(os.getpid()), '-o', out],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    end = time.time() + seconds
    while time.time() < end:
        runner.once()
    rec.send_signal(signal.SIGINT)
    err = rec.communicate(timeout=60)[1].decode(errors='replace')
    if rec.returncode not in (0, -signal.SIGINT) or not os.path.exists(out):
        return None, f'perf record failed: {err.strip()[:200]}'
    script = subprocess.run(['perf', 'script', '-i', out, '-F', 'ip,sym'], capture_output=True, text=True)
    counts = {'ynn': 0, 'other thunks': 0, 'executor': 0}
    for sample in script.stdout.split('\n\n'):
        frames = sample.strip().splitlines()
        syms = ' '.join(frames)
        if 'ThunkExecutor::' not in syms:
            continue  # idle helpers, the Python loop, PJRT dispatch
        if 'YnnFusionThunk' in syms:
            counts['ynn'] += 1
        elif re.search(r'xla::cpu::(?!ThunkExecutor)\w*Thunk\b', syms) or '[unknown]' in (frames[0] if frames else ''):
            counts['other thunks'] += 1  # generated kernels run from JIT memory ([unknown] frames)
        else:
            counts['executor'] += 1
    total = sum(counts.values())
    if total < 200:
        return None, f'too few perf samples in thunks ({total})'
    return {k: v / total for k, v in counts.items()} | {'samples': total}, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--hlo', required=True)
    ap.add_argument('--kind', choices=['score', 'draft'], required=True)
    ap.add_argument('--context', type=int, default=256)
    ap.add_argument('--config', required=True, help='JSON: hidden, intermediate, vocab, q_dim, kv_dim, feat_dim')
    ap.add_argument('--reps', type=int, default=21)
    ap.add_argument('--trace-reps', type=int, default=9)
    ap.add_argument('--perf-seconds', type=float, default=4.0, help='0: no perf split')
    a = ap.parse_args()
    cfg = json.loads(a.config)

    exe, shapes, aliases, optimized = compile_module(a.hlo)
    host, caches, first_input = make_inputs(a.kind, shapes, aliases, a.context)
    runner = Runner(exe, host, aliases)
    runner.timed(3)  # warm: first-run allocations, page faults
    untraced = runner.timed(a.reps)
    with tempfile.TemporaryDirectory(prefix='dflash-profile-') as work:
        per_thunk, traced_wall, traced_span, traced_runs = trace(runner, a.trace_reps, os.path.join(work, 'trace'))
        split, perf_note = perf_split(runner, a.perf_seconds, work) if a.perf_seconds > 0 else (None, 'perf off')
    after = runner.timed(a.reps)  # the machine is shared: an untraced median after, too

    cls = Classifier(optimized, cfg, range(caches[0]), caches, first_input if a.kind == 'draft' else None)
    untraced_ms = statistics.median(untraced + after) * 1e3
    outside = max(0.0, traced_wall - traced_span)
    thunk_ms = max(untraced_ms - outside, 0.5 * untraced_ms)
    ynn_traced = sum(v for k, v in per_thunk.items() if cls.is_ynn(k)) / 1e3
    other_traced = sum(v for k, v in per_thunk.items() if not cls.is_ynn(k)) / 1e3
    uniform = thunk_ms / (ynn_traced + other_traced)
    scale_ynn = scale_other = uniform
    method = 'uniform'
    if split:
        ynn_share = split['ynn'] / (split['ynn'] + split['other thunks'] + split['executor'])
        p_ynn = thunk_ms * ynn_share / ynn_traced if ynn_traced else uniform
        p_other = thunk_ms * (1 - ynn_share) / other_traced if other_traced else uniform
        # perf sees only the thread that runs the executor: a parallel kernel during which it
        # blocks looks cheap to it. Factors far apart mean such a blind spot: keep the uniform one.
        if max(p_ynn, p_other) < 3 * min(p_ynn, p_other):
            scale_ynn, scale_other, method = p_ynn, p_other, 'perf'
    thunks = []
    for name, us in per_thunk.items():
        ms = us / 1e3 * (scale_ynn if cls.is_ynn(name) else scale_other)
        thunks.append({'name': name, 'bucket': cls.bucket.get(name, 'other'), 'ms': ms, 'tracedUs': us,
                       'ynn': cls.is_ynn(name), 'what': cls.detail.get(name, '')})
    thunks.sort(key=lambda t: -t['ms'])
    buckets = {}
    for t in thunks:
        buckets[t['bucket']] = buckets.get(t['bucket'], 0.0) + t['ms']
    print(json.dumps({
        'untracedMs': untraced_ms, 'untracedBeforeMs': statistics.median(untraced) * 1e3,
        'untracedAfterMs': statistics.median(after) * 1e3, 'tracedWallMs': traced_wall, 'tracedSpanMs': traced_span,
        'tracedRuns': traced_runs, 'outsideThunksMs': untraced_ms - thunk_ms, 'thunkMs': thunk_ms,
        'calibration': {'method': method, 'perf': split, 'note': perf_note, 'ynnTracedMs': ynn_traced,
                        'otherTracedMs': other_traced, 'scaleYnn': scale_ynn, 'scaleOther': scale_other},
        'thunkCount': len(thunks), 'buckets': buckets, 'thunks': thunks,
    }))


if __name__ == '__main__':
    main()
