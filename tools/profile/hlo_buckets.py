"""Buckets for the thunks of one optimized XLA:CPU module (the text of
`LoadedExecutable.hlo_modules()[0].to_string()`): which part of the model each thunk computes.

A thunk is one instruction of the ENTRY computation (a fusion, a copy, a YNNPACK fusion); its name
is the `hlo_op` of the profiler's per-thunk event. Fusion mixes concerns (XLA fuses the padding of
rows into the norm that feeds a matmul, the residual add into the next norm), so a bucket names a
thunk's main work, found by these rules, first match wins:
  1. a dot with a weight parameter: its role from the weight's shape (config below) and from the
     dots that share its input (q, k and v read the same normed rows; so do gate and up);
  2. a dot or YNNPACK fusion without a weight: attention (QK^T, PV), or a norm's reduction;
  3. the KV cache: a scatter / dynamic-update-slice into a cache-shaped buffer (KV write), a read
     of a cache-shaped buffer into something smaller (paged gather), a cache-sized copy;
  4. the embedding gather (an operand is the [V, H] embedding);
  5. anything downstream of the LM head (argmax, acceptance, the draft pool): sampling/accept;
  6. integer/predicate results: index math (positions, page tables, scatter indices);
  7. rsqrt / sine / cosine inside: norms + RoPE; exp or logistic: attention softmax, or the MLP
     activation when a gate/up dot feeds it;
  8. only data movement (pad, concatenate, slice, copy, transpose, bitcast): pads/copies;
  9. otherwise the bucket of its first classified consumer, then of its first classified producer.
"""
import re
from dataclasses import dataclass, field

DATA_MOVEMENT = {'parameter', 'bitcast', 'copy', 'transpose', 'reshape', 'pad', 'concatenate', 'slice',
                 'broadcast', 'constant', 'tuple', 'get-tuple-element', 'convert', 'iota'}
TRANSPARENT = {'bitcast', 'get-tuple-element', 'tuple'}  # not thunks: look through them

BUCKETS = ['QKV proj', 'O proj', 'MLP gate/up (+act)', 'MLP down', 'LM head', 'drafter fc',
           'attention (QK, softmax, PV)', 'paged gather (pages -> K/V rows)', 'KV write (scatter)',
           'KV cache copies', 'norms + RoPE', 'embedding', 'sampling/accept', 'pads/copies',
           'index math', 'other']


@dataclass
class Instr:
    name: str
    type: str
    opcode: str
    operands: list
    calls: list
    backend: str
    dims: list = field(default_factory=list)
    dtype: str = ''
    param: int = -1


def _split_type(rest):
    # "TYPE opcode(...)...": a tuple type is parenthesised and may contain spaces.
    if rest.startswith('('):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == '('
            depth -= ch == ')'
            if depth == 0:
                return rest[:i + 1], rest[i + 1:].lstrip()
    i = rest.index(' ')
    return rest[:i], rest[i + 1:]


def _balanced(s, start):
    depth = 0
    for i in range(start, len(s)):
        depth += s[i] == '('
        depth -= s[i] == ')'
        if depth == 0:
            return s[start + 1:i], s[i + 1:]
    return s[start + 1:], ''


def parse_module(text):
    """{computation name: [Instr]} and the ENTRY computation's name."""
    comps, entry, cur = {}, None, None
    for line in text.splitlines():
        m = re.match(r'^(ENTRY )?%([\w.\-]+) ', line)
        if m and line.rstrip().endswith('{'):
            cur = m.group(2)
            comps[cur] = []
            if m.group(1):
                entry = cur
            continue
        if line.startswith('}'):
            cur = None
            continue
        m = re.match(r'^\s+(?:ROOT )?%([\w.\-]+) = (.*)$', line)
        if not m or cur is None:
            continue
        typ, rest = _split_type(m.group(2))
        op_m = re.match(r'([\w\-]+)\(', rest)
        if not op_m:
            continue
        ops_text, attrs = _balanced(rest, op_m.end() - 1)
        ins = Instr(m.group(1), typ, op_m.group(1), re.findall(r'%([\w.\-]+)', ops_text),
                    re.findall(r'(?:calls|to_apply|body|condition|branch_computations)=\{?%([\w.\-]+)', attrs), attrs)
        t = re.match(r'(\w+)\[([\d,]*)\]', typ)
        if t:
            ins.dtype, ins.dims = t.group(1), [int(d) for d in t.group(2).split(',') if d]
        if ins.opcode == 'parameter':
            ins.param = int(ops_text)
        comps[cur].append(ins)
    return comps, entry


class Classifier:
    def __init__(self, text, cfg, weight_params, cache_params, feats_param=None):
        """cfg: hidden, intermediate, vocab, q_dim, kv_dim, feat_dim (0 without a drafter fc)."""
        self.comps, entry = parse_module(text)
        self.entry = self.comps[entry]
        self.by_name = {i.name: i for i in self.entry}
        self.cfg = cfg
        params = {i.param: i.name for i in self.entry if i.opcode == 'parameter'}
        self.weights = {params[p] for p in weight_params if p in params}
        self.caches = {params[p] for p in cache_params if p in params}
        self.cache_dims = [self.by_name[c].dims for c in self.caches]
        self.feats = params.get(feats_param) if feats_param is not None else None
        self.users = {}
        for ins in self.entry:
            for o in ins.operands:
                self.users.setdefault(o, []).append(ins.name)
        self.bucket = {}
        self.detail = {}
        self._classify()

    # ---- helpers
    def ops(self, ins, seen=None):
        """Opcodes of an instruction and of every computation it calls, recursively."""
        seen = set() if seen is None else seen
        out = {ins.opcode}
        for c in ins.calls:
            if c in seen or c not in self.comps:
                continue
            seen.add(c)
            for sub in self.comps[c]:
                out |= self.ops(sub, seen)
        return out

    def source(self, name):
        """The instruction behind bitcasts / tuples."""
        ins = self.by_name.get(name)
        while ins is not None and ins.opcode in TRANSPARENT and ins.operands:
            ins = self.by_name.get(ins.operands[0])
        return ins

    def producers(self, ins):
        return [p for p in (self.source(o) for o in ins.operands) if p is not None]

    def is_dot(self, ins):
        return 'ynn_fusion' in ins.backend or 'dot' in self.ops(ins) or 'custom-call' == ins.opcode and 'matmul' in ins.backend

    def weight_of(self, ins):
        for p in self.producers(ins):
            if p.name in self.weights and len(p.dims) == 2:
                return p
        return None

    def is_cache_shaped(self, ins):
        return ins is not None and ins.dims in self.cache_dims

    def reaches_feats(self, ins, depth=4):
        if self.feats is None or depth == 0:
            return False
        for p in self.producers(ins):
            if p.name == self.feats or (p.opcode != 'parameter' and not self.is_dot(p) and self.reaches_feats(p, depth - 1)):
                return True
        return False

    # ---- rules
    def _weight_role(self, ins, w):
        c = self.cfg
        n, k = w.dims
        lhs = [p.name for p in self.producers(ins) if p.name != w.name]
        siblings = [u for l in lhs for u in self.users.get(l, []) if u != ins.name]
        sib_weights = [self.weight_of(self.by_name[s]) for s in siblings if s in self.by_name]
        sib_shapes = [sw.dims for sw in sib_weights if sw is not None]
        if [n, k] == [c['vocab'], c['hidden']]:
            return 'LM head'
        if c.get('feat_dim') and [n, k] == [c['hidden'], c['feat_dim']] and self.reaches_feats(ins):
            return 'drafter fc'
        if [n, k] in ([c['intermediate'], c['hidden']], [2 * c['intermediate'], c['hidden']]):  # gate, up or gate_up
            return 'MLP gate/up (+act)'
        if [n, k] == [c['hidden'], c['intermediate']]:
            return 'MLP down'
        if [n, k] == [c['kv_dim'], c['hidden']]:
            return 'QKV proj'
        if [n, k] == [c['q_dim'], c['hidden']] and (c['q_dim'] != c['hidden'] or [c['kv_dim'], c['hidden']] in sib_shapes):
            return 'QKV proj'
        if [n, k] == [c['hidden'], c['q_dim']]:
            return 'O proj'
        return 'other'

    def _strong(self, ins):
        ops = self.ops(ins)
        prods = self.producers(ins)
        if self.is_dot(ins):
            w = self.weight_of(ins)
            if w is not None:
                return self._weight_role(ins, w), f"{ins.dtype}{ins.dims} = x . W{w.dims}^T ({w.dtype})"
            if 'dot' in ops or 'ynn_fusion' in ins.backend and 'reduce' not in ops:
                return 'attention (QK, softmax, PV)', f"{ins.dtype}{ins.dims} activation dot"
        if self.is_cache_shaped(ins) and ({'scatter', 'dynamic-update-slice'} & ops):
            return 'KV write (scatter)', f"{ins.dtype}{ins.dims} into the cache"
        if self.is_cache_shaped(ins) and ins.opcode == 'copy':
            return 'KV cache copies', f"{ins.dtype}{ins.dims} copy of a cache"
        if not self.is_cache_shaped(ins) and any(self.is_cache_shaped(p) for p in prods):
            return 'paged gather (pages -> K/V rows)', f"{ins.dtype}{ins.dims} from the cache"
        if any(p.dims == [self.cfg['vocab'], self.cfg['hidden']] and p.name in self.weights for p in prods) and not self.is_dot(ins):
            return 'embedding', f"{ins.dtype}{ins.dims} embedding rows"
        return None

    def _weak(self, ins):
        ops = self.ops(ins)
        if ins.dtype in ('s32', 'pred', 'u32', 's64') and not ({'exponential', 'rsqrt'} & ops):
            return 'index math'
        if {'rsqrt', 'sine', 'cosine'} & ops:
            return 'norms + RoPE'
        if {'exponential', 'logistic'} & ops:
            fed_by_mlp = any(self.bucket.get(p.name) == 'MLP gate/up (+act)' for p in self.producers(ins))
            return 'MLP gate/up (+act)' if fed_by_mlp else 'attention (QK, softmax, PV)'
        if ops <= DATA_MOVEMENT:
            return 'pads/copies'
        return None

    def _classify(self):
        thunks = [i for i in self.entry if i.opcode not in TRANSPARENT and i.opcode not in ('parameter', 'constant')]
        self.thunks = thunks
        for ins in thunks:
            s = self._strong(ins)
            if s:
                self.bucket[ins.name], self.detail[ins.name] = s
        # Downstream of the LM head (argmax, acceptance, pool writes): one forward pass in order.
        head = {n for n, b in self.bucket.items() if b == 'LM head'}
        for ins in thunks:
            if ins.name not in self.bucket and any(p.name in head for p in self.producers(ins)):
                self.bucket[ins.name] = 'sampling/accept'
                head.add(ins.name)
        for ins in thunks:
            if ins.name not in self.bucket:
                w = self._weak(ins)
                if w:
                    self.bucket[ins.name] = w
        for _ in range(8):  # consumers first (a norm's sum of squares feeds its rsqrt), then producers
            changed = False
            for ins in thunks:
                if ins.name in self.bucket:
                    continue
                for u in self.users.get(ins.name, []):
                    b = self.bucket.get(u)
                    if b and b not in ('QKV proj', 'O proj', 'MLP down', 'LM head', 'drafter fc', 'pads/copies', 'index math'):
                        self.bucket[ins.name] = b
                        changed = True
                        break
            if not changed:
                break
        for ins in thunks:
            if ins.name not in self.bucket:
                for p in self.producers(ins):
                    if p.name in self.bucket:
                        self.bucket[ins.name] = self.bucket[p.name]
                        break
        for ins in thunks:
            self.bucket.setdefault(ins.name, 'other')
            if ins.name not in self.detail:
                main = sorted(self.ops(ins) - DATA_MOVEMENT - {'fusion'})[:4]
                self.detail[ins.name] = f"{ins.dtype}{ins.dims} {ins.opcode}" + (f" ({', '.join(main)})" if main else '')

    def is_ynn(self, name):
        ins = self.by_name.get(name)
        return ins is not None and 'ynn_fusion' in ins.backend
