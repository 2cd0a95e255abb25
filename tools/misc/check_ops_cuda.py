# Copyright (c) mmscalable contributors. All rights reserved.
"""Check and time the CUDA kernels of ``mmscalable._ext`` on a GPU machine.

Needs only torch and a GPU (no mmengine / mmcv). Build the extension in place
first, from the repository root::

    FORCE_CUDA=1 python setup.py build_ext --inplace
    python tools/misc/check_ops_cuda.py

It checks, for window partition / reverse on CUDA:

1. parity with the float64 reference for float32, float16 and bfloat16
   (the ops are copies, so the only error allowed is the rounding of the
   input to that dtype; the output must also equal the reference run in the
   same dtype bit for bit),
2. ``torch.autograd.gradcheck`` in float64,
3. that bad arguments raise an error (not crash the interpreter),
4. the time of partition + reverse against the pure-PyTorch reference (CUDA
   events, warm-up, median of 50 runs),

times IWSA's window attention as the fast path composes it (partition op,
SDPA, reverse op) against a lower bound of a kernel that reads qkv in raster
order (the rule for writing one: only if the composed path takes more than
1.1x the bound), times the fused refined attention (Refiner-ViT-S's refiner
block at 224x224 batch 64, 512x512 batch 8 and 1024x1024 batch 2) against
the reference computation (every expanded map in memory) and the chunked
exact path, forward and forward + backward, with each one's peak memory, and
times the Group-Mix depthwise conv (GroupMixFormer-S's attention segments at
224x224 batch 64 and 800x1344 batch 2, bf16 and fp32) against cuDNN's
depthwise convs with the copies a model needs without it: forward, backward,
and the input's and the kernels' gradients alone, with a verdict line per
direction (``group_mix forward: op faster (0.52)``). The kernels' parity
with their references on CUDA is in the CUDA tests (``tests/test_ops``),
which ``tools/misc/device_check.sh`` runs.

Exits with status 1 if a check fails.
"""
import argparse
import importlib
import math
import os.path as osp
import subprocess
import sys
import types

import torch
import torch.nn.functional as F

DEVICE = 'cuda'
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Largest relative error (vs float64) that the rounding of the input to each
# dtype can cause: half a unit in the last place, with a margin.
REL_TOL = {
    torch.float32: 1e-7,
    torch.float16: 1e-3,
    torch.bfloat16: 8e-3,
}
PARITY_SHAPES = [  # (B, H, W, C, window_size)
    (2, 9, 13, 5, 7),
    (2, 14, 14, 8, 7),
    (3, 3, 2, 4, 7),
    (4, 56, 56, 96, 7),
    (2, 33, 45, 64, 7),
]
# Maps of ScalableViT's stages: the qkv of a 224 classification input, of a
# 512 x 512 segmentation input (sides not multiples of 7) and of a
# 800 x 1216 detection input.
BENCH_SHAPES = [
    (64, 56, 56, 3 * 96, 7),
    (64, 28, 28, 3 * 192, 7),
    (8, 128, 128, 3 * 96, 7),
    (8, 64, 64, 3 * 192, 7),
    (2, 200, 304, 3 * 96, 7),
]


def import_ops():
    """Import mmscalable.ops without running ``mmscalable/__init__.py``.

    An empty package object named ``mmscalable`` whose path is the source
    folder stands in for the real one, so ``mmscalable.ops`` and
    ``mmscalable._ext`` are found there while the package's own
    ``__init__`` (and whatever it may import, e.g. mmengine) never runs.

    Returns:
        module: ``mmscalable.ops``.
    """
    package = types.ModuleType('mmscalable')
    package.__path__ = [osp.join(REPO_ROOT, 'mmscalable')]
    sys.modules['mmscalable'] = package
    return importlib.import_module('mmscalable.ops')


def check_parity(ops):
    """Compare the CUDA kernels with the float64 reference.

    Returns:
        bool: Whether every case passed.
    """
    print('\n== parity on CUDA (max relative error vs float64 reference) ==')
    print(f"{'shape (B,H,W,C,ws)':<24}{'dtype':<10}{'partition':>12}"
          f"{'reverse':>12}{'bit-exact':>11}")
    all_ok = True
    for shape in PARITY_SHAPES:
        B, H, W, C, ws = shape
        x64 = torch.randn(B, H, W, C, dtype=torch.float64, device='cuda')
        windows64 = ops.window_partition_reference(x64, ws)
        for dtype, tol in REL_TOL.items():
            x = x64.to(dtype)
            windows = torch.ops.mmscalable.window_partition(x, ws)
            restored = torch.ops.mmscalable.window_reverse(windows, ws, H, W)
            err_partition = ((windows.double() - windows64).norm() /
                             windows64.norm()).item()
            err_reverse = ((restored.double() - x64).norm() /
                           x64.norm()).item()
            exact = (
                torch.equal(windows, ops.window_partition_reference(x, ws))
                and torch.equal(restored, x))
            ok = exact and err_partition <= tol and err_reverse <= tol
            all_ok &= ok
            print(f'{str(shape):<24}{str(dtype)[6:]:<10}{err_partition:>12.2e}'
                  f"{err_reverse:>12.2e}{'yes' if exact else 'NO':>11}"
                  f"{'' if ok else '   <-- FAIL'}")
    return all_ok


def check_error_path():
    """Make the compiled front raise on bad input, in a child process.

    An extension whose C++ runtime does not match the interpreter's (e.g.
    built by a compiler wrapper that links libstdc++ statically) passes every
    numeric check but crashes as soon as it formats an error message; the
    child process keeps that crash from ending this script.

    Returns:
        bool: Whether the bad call raised (RuntimeError from TORCH_CHECK).
    """
    print('\n== error path (bad window_size, in a child process) ==')
    code = ('import sys, types, torch\n'
            'pkg = types.ModuleType("mmscalable")\n'
            f'pkg.__path__ = [{osp.join(REPO_ROOT, "mmscalable")!r}]\n'
            'sys.modules["mmscalable"] = pkg\n'
            'import mmscalable._ext\n'
            'try:\n'
            '    torch.ops.mmscalable.window_partition(\n'
            '        torch.zeros(1, 2, 2, 1), 0)\n'
            'except Exception as err:\n'
            '    print("raised:", str(err).splitlines()[0])\n')
    child = subprocess.run([sys.executable, '-c', code],
                           capture_output=True,
                           text=True)
    ok = child.returncode == 0 and 'raised:' in child.stdout
    print(child.stdout.strip() or child.stderr.strip()[-500:])
    if not ok:
        print(f'FAIL (exit status {child.returncode}): the extension cannot '
              'raise errors. A compiler that links libstdc++ statically (a '
              'wrapper named by CC/CXX) causes this; rebuild with the '
              'system compiler, e.g. CC=/usr/bin/gcc CXX=/usr/bin/g++.')
    return ok


def check_gradients(ops):
    """gradcheck of both public functions in float64 on CUDA.

    Returns:
        bool: Whether both passed.
    """
    print('\n== gradcheck (float64, CUDA) ==')
    all_ok = True
    for B, H, W, C, ws in [(2, 9, 13, 3, 7), (1, 8, 8, 2, 4)]:
        x = torch.randn(
            B, H, W, C, dtype=torch.float64, device='cuda', requires_grad=True)
        windows = ops.window_partition_reference(x.detach(),
                                                 ws).requires_grad_()
        for name, fn, arg in [
            ('window_partition', lambda t: ops.window_partition(t, ws), x),
            ('window_reverse', lambda t: ops.window_reverse(t, ws, H, W),
             windows),
        ]:
            try:
                ok = torch.autograd.gradcheck(fn, (arg, ))
            except Exception as err:  # gradcheck raises on a mismatch
                print(f'  {err}')
                ok = False
            all_ok &= ok
            print(f"{name:<18}{str((B, H, W, C, ws)):<20}"
                  f"{'ok' if ok else 'FAIL'}")
    return all_ok


def median_ms(fn, warmup, repeats, device=DEVICE):
    """Median time of ``fn()`` in milliseconds (CUDA events on a GPU)."""
    # Imported here: import_ops() has put the source package in place.
    from mmscalable.analysis.benchmark import median_seconds
    return median_seconds(fn, torch.device(device), warmup, repeats) * 1e3


def benchmark(ops, dtypes, warmup, repeats):
    """Print the time of partition + reverse, kernels vs reference."""
    print(f'\n== partition + reverse, median of {repeats} runs '
          f'({warmup} warm-up) ==')
    print(f"{'shape (B,H,W,C,ws)':<26}{'dtype':<10}{'ext ms':>9}"
          f"{'ref ms':>9}{'speed-up':>10}{'ext GB/s':>10}")
    for shape in BENCH_SHAPES:
        B, H, W, C, ws = shape
        for dtype in dtypes:
            x = torch.randn(B, H, W, C, device='cuda', dtype=dtype)

            def run_ext():
                windows = torch.ops.mmscalable.window_partition(x, ws)
                return torch.ops.mmscalable.window_reverse(windows, ws, H, W)

            def run_ref():
                windows = ops.window_partition_reference(x, ws)
                return ops.window_reverse_reference(windows, ws, H, W)

            ext_ms = median_ms(run_ext, warmup, repeats)
            ref_ms = median_ms(run_ref, warmup, repeats)
            # Each op reads its input and writes its output once.
            num_windows = B * -(-H // ws) * -(-W // ws)
            window_bytes = num_windows * ws * ws * C * x.element_size()
            map_bytes = x.numel() * x.element_size()
            gbps = 2 * (window_bytes + map_bytes) / (ext_ms * 1e6)
            print(f'{str(shape):<26}{str(dtype)[6:]:<10}{ext_ms:>9.3f}'
                  f'{ref_ms:>9.3f}{ref_ms / ext_ms:>9.2f}x{gbps:>10.0f}')


# Refiner-ViT-S refiner blocks: (B, heads, tokens, head dims, hidden maps).
REFINER_SHAPES = [(64, 12, 197, 32, 36), (8, 12, 1025, 32, 36),
                  (2, 12, 4097, 32, 36)]


def _refiner_modules(heads, hidden, device):
    """A refiner block's convs and frozen norms with random statistics."""
    import torch.nn as nn
    convs = [
        nn.Conv2d(heads, hidden, 1, bias=False),
        nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
        nn.Conv2d(hidden, heads, 1, bias=False)
    ]
    norms = [nn.BatchNorm2d(c) for c in (hidden, hidden, heads, heads)]
    for norm in norms:
        norm.running_mean.uniform_(-0.1, 0.1)
        norm.running_var.uniform_(0.5, 1.5)
    return ([c.to(device) for c in convs],
            [n.to(device).eval() for n in norms])


def _folded(convs, norms, scale):
    """The op's seven tensors from the modules (as RefinedAttention folds
    them)."""
    def fold(norm):
        s = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        return s, norm.bias - norm.running_mean * s

    (s1, t1), (s2, t2), (s3, t3), (s4, t4) = [fold(n) for n in norms]
    hidden, heads = convs[0].weight.shape[:2]
    alpha = scale * s4
    return (convs[0].weight.view(hidden, heads) * s1[:, None], t1,
            convs[1].weight.view(hidden, 3, 3) * s2[:, None, None], t2,
            convs[2].weight.view(heads, hidden) * (alpha * s3)[:, None],
            alpha * t3 + scale * t4, alpha)


def _peak_mib(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def benchmark_refined_attention(ops, dtypes, warmup, repeats):
    """Time fused vs chunked vs reference refined attention, with peaks."""
    import torch.nn as nn
    from mmscalable.models.layers.chunked_refined_attention import (
        RefinementSpec, chunked_refiner_attention, rows_per_chunk)
    print(f'\n== refined attention (Refiner-ViT-S refiner block), median of '
          f'{repeats} runs; peak memory above the inputs ==')
    print(f"{'B,H,N,d':<20}{'dtype':<10}{'pass':<10}{'fused ms':>10}"
          f"{'chunked ms':>12}{'ref ms':>10}{'fused MiB':>11}"
          f"{'chunked MiB':>13}{'ref MiB':>10}")
    for B, H, N, d, E in REFINER_SHAPES:
        convs, norms = _refiner_modules(H, E, DEVICE)
        scale = d**-0.5
        spec = RefinementSpec(*convs, norms=norms,
                              acts=[nn.ReLU6(), nn.ReLU6()], scale=scale)
        for dtype in dtypes:
            attn = torch.rand(B, H, N, N, device=DEVICE).div_(N).to(dtype)
            value = torch.randn(B, H, N, d, device=DEVICE, dtype=dtype)
            rows = rows_per_chunk(B, E, N, attn.element_size(), 256 * 2**20)
            params = [p.detach() for p in _folded(convs, norms, scale)]

            def fused():
                return ops.refined_attention(attn, value, *params)

            def chunked():
                return chunked_refiner_attention(spec, attn, value, rows)

            def reference():
                return ops.refined_attention_reference(attn, value, *params)

            for pass_name in ('forward', 'backward'):
                row = []
                for fn in (fused, chunked, reference):
                    if pass_name == 'backward':
                        attn.requires_grad_()
                        value.requires_grad_()

                        def step(fn=fn):
                            fn().float().sum().backward()
                    else:
                        attn.requires_grad_(False)
                        value.requires_grad_(False)

                        def step(fn=fn):
                            with torch.no_grad():
                                fn()
                    try:
                        ms = median_ms(step, warmup, repeats)
                        mib = _peak_mib(step)
                    except torch.cuda.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        ms, mib = float('nan'), float('nan')
                    row += [ms, mib]
                print(f'{str((B, H, N, d)):<20}{str(dtype)[6:]:<10}'
                      f'{pass_name:<10}{row[0]:>10.2f}{row[2]:>12.2f}'
                      f'{row[4]:>10.2f}{row[1]:>11.0f}{row[3]:>13.0f}'
                      f'{row[5]:>10.0f}', flush=True)
                attn.grad = value.grad = None


# ScalableViT-S IWSA maps (B, H, W, C, heads): its first two stages at
# 224x224 batch 64, at 512x512 batch 8 (sides not multiples of the window)
# and at 800x1344 batch 2.
WINDOW_ATTENTION_SHAPES = [(64, 56, 56, 64, 2), (64, 28, 28, 128, 4),
                           (8, 128, 128, 64, 2), (8, 64, 64, 128, 4),
                           (2, 200, 336, 64, 2)]
# A window-attention kernel reading qkv in raster order is worth writing
# only if today's composed path takes more than this times its lower bound.
WINDOW_KERNEL_MARGIN = 1.10


def benchmark_window_attention(dtypes, warmup, repeats, device=DEVICE,
                               shapes=WINDOW_ATTENTION_SHAPES):
    """Time IWSA's window attention as the fast path composes it (window
    partition op, SDPA with the padding mask, window reverse op) against a
    lower bound of any kernel that reads qkv in raster order and writes the
    output in raster order: the larger of SDPA alone on windows already cut
    (no mask, no copies) and the memory traffic of reading qkv and writing
    the output once at the device's copy bandwidth.

    Returns the rows: shape, dtype, the times in ms, the composed path's
    share of the whole IWSA forward, and the verdict (``'kernel may pay'``
    when the composed path takes more than :data:`WINDOW_KERNEL_MARGIN`
    times the bound, else ``'composed within 10%'``).
    """
    from mmscalable.models.layers import InteractiveWindowAttention
    from mmscalable.ops import window_partition
    print(f'\n== IWSA window attention (ScalableViT-S maps), median of '
          f'{repeats} runs ==')
    print(f"{'B,H,W,C,heads':<24}{'dtype':<10}{'composed':>10}"
          f"{'sdpa only':>11}{'traffic':>9}{'of IWSA':>9}  verdict")
    rows = []
    for B, H, W, C, heads in shapes:
        module = InteractiveWindowAttention(C, heads).to(device).eval()
        ws = module.window_size
        for dtype in dtypes:
            module.to(dtype)
            x = torch.randn(B, H * W, C, device=device, dtype=dtype)
            with torch.no_grad():
                qkv = module.qkv(x)
                windows = window_partition(qkv.view(B, H, W, 3 * C), ws)
                query, key, value = windows.view(
                    -1, ws * ws, 3, heads,
                    C // heads).permute(2, 0, 3, 1, 4).contiguous().unbind(0)

            def composed():
                with torch.no_grad():
                    module.attend_windows(qkv, (H, W))

            def sdpa_only():
                with torch.no_grad():
                    F.scaled_dot_product_attention(
                        query, key, value, scale=module.scale)

            def whole():
                with torch.no_grad():
                    module(x, (H, W))

            def copy():
                qkv.clone()

            times = [
                median_ms(fn, warmup, repeats, device)
                for fn in (composed, sdpa_only, whole, copy)
            ]
            composed_ms, sdpa_ms, whole_ms, copy_ms = times
            # A copy reads and writes qkv: 2 * 3C per token at the copy's
            # bandwidth; the kernel reads 3C and writes C per token.
            traffic_ms = copy_ms * (3 + 1) / (2 * 3)
            bound = max(sdpa_ms, traffic_ms)
            verdict = ('kernel may pay'
                       if composed_ms > WINDOW_KERNEL_MARGIN * bound else
                       'composed within 10%')
            rows.append(
                dict(shape=(B, H, W, C, heads), dtype=str(dtype)[6:],
                     composed_ms=composed_ms, sdpa_only_ms=sdpa_ms,
                     traffic_ms=traffic_ms, iwsa_ms=whole_ms,
                     verdict=verdict))
            print(f'{str((B, H, W, C, heads)):<24}{str(dtype)[6:]:<10}'
                  f'{composed_ms:>10.3f}{sdpa_ms:>11.3f}{traffic_ms:>9.3f}'
                  f'{composed_ms / whole_ms:>8.0%}  {verdict}',
                  flush=True)
    return rows


# GroupMixFormer-S attention maps (B, H, W, C): its four stages (embed_dims
# 80, 160, 320, 320 of the 's' arch; stem stride 4, then strides 1, 2, 2, 2)
# at 224x224 batch 64 and at 800x1344 batch 2.
GROUP_MIX_SHAPES = [(64, 56, 56, 80), (64, 28, 28, 160), (64, 14, 14, 320),
                    (64, 7, 7, 320), (2, 200, 336, 80), (2, 100, 168, 160),
                    (2, 50, 84, 320), (2, 25, 42, 320)]
# The depthwise kernels of GroupMixAttention's attended segments, each
# C / 5 channels of q, k and v: the token segment as a 1x1 kernel (of ones),
# then the group proxies' 3x3, 5x5 and 7x7.
GROUP_MIX_KERNELS = (1, 3, 5, 7)
# The directions timed, with the gradients group_mix_dwconv_backward
# computes for each (input, weight).
GROUP_MIX_DIRECTIONS = {
    'forward': None,
    'backward': (True, True),
    'input grad': (True, False),
    'weight grad': (False, True),
}


class GroupMixCase:
    """One case of :func:`benchmark_group_mix`: GroupMixAttention's segments
    of a (B, H * W, 3C) qkv and the op's and cuDNN's ways to convolve them.

    The op reads the segments straight from the qkv tokens (a (B, H, W, 3,
    4C/5) view) and writes the (3B, 4C/5, H, W) map. The cuDNN side is what
    a model does without it: copy the segments to that contiguous map, one
    ``F.conv2d(..., groups=C/5)`` per kernel size (the 1x1 token segment is
    the copy itself) and one concatenation; backward, one
    ``aten.convolution_backward`` per kernel size on the map's segments, the
    input's gradient concatenated and copied back to the tokens' layout.

    Args:
        shape (tuple[int, int, int, int]): (B, H, W, C) of the qkv map.
        dtype (torch.dtype): Data type of the tensors.
        device (str): Device of the tensors.
    """

    def __init__(self, shape, dtype, device):
        # Imported here: import_ops() has put the source package in place.
        from mmscalable.ops import group_mix_dwconv, pack_depthwise_weights
        B, H, W, C = shape
        self.shape = shape
        self.seg = C // 5
        self.ks = list(GROUP_MIX_KERNELS)
        self.gc = [self.seg] * len(self.ks)
        self.attended = self.seg * len(self.ks)
        self._group_mix_dwconv = group_mix_dwconv
        qkv = torch.randn(B, H * W, 3 * C, device=device, dtype=dtype)
        self.tokens = qkv.view(B, H, W, 3, C)[..., :self.attended]
        self.kernels = [
            torch.randn(self.seg, 1, k, k, device=device, dtype=dtype)
            for k in self.ks
        ]
        self.kernels[0] = torch.ones_like(self.kernels[0])
        self.weight = pack_depthwise_weights(self.kernels)
        self.grad = torch.randn(
            3 * B, self.attended, H, W, device=device, dtype=dtype)
        self.maps = self.to_maps()

    def to_maps(self):
        B, H, W, _ = self.shape
        return self.tokens.permute(3, 0, 4, 1, 2).reshape(
            3 * B, self.attended, H, W)

    def op_forward(self):
        self._group_mix_dwconv(self.tokens, self.weight, None, self.ks,
                               self.gc)

    def cudnn_forward(self):
        parts = self.to_maps().split(self.gc, 1)
        torch.cat([parts[0]] + [
            F.conv2d(
                part, kernel, padding=kernel.shape[-1] // 2, groups=self.seg)
            for part, kernel in zip(parts[1:], self.kernels[1:])
        ], 1)

    def op_backward(self, mask):
        torch.ops.mmscalable.group_mix_dwconv_backward(
            self.grad, self.tokens, self.weight, self.ks, self.gc,
            list(mask))

    def cudnn_backward(self, mask):
        B, H, W, _ = self.shape
        grads = self.grad.split(self.gc, 1)
        grad_maps = [grads[0]]
        for g, part, kernel in zip(grads[1:],
                                   self.maps.split(self.gc, 1)[1:],
                                   self.kernels[1:]):
            pad = kernel.shape[-1] // 2
            grad_maps.append(
                torch.ops.aten.convolution_backward(
                    g, part, kernel, None, [1, 1], [pad, pad], [1, 1], False,
                    [0, 0], self.seg, [mask[0], mask[1], False])[0])
        if mask[0]:
            torch.cat(grad_maps, 1).view(3, B, self.attended, H, W).permute(
                1, 3, 4, 0, 2).contiguous()

    def runs(self, mask):
        """The op's and cuDNN's run of one direction.

        Args:
            mask (tuple[bool, bool] | None): The gradients to compute
                (input, weight), or None for the forward.

        Returns:
            tuple[callable, callable]: The op's run and cuDNN's.
        """
        if mask is None:
            return self.op_forward, self.cudnn_forward
        return (lambda: self.op_backward(mask),
                lambda: self.cudnn_backward(mask))


def _median_ms_or_nan(fn, warmup, repeats, device):
    """:func:`median_ms` of ``fn`` without autograd; NaN when out of
    memory."""
    try:
        with torch.no_grad():
            return median_ms(fn, warmup, repeats, device)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return float('nan')


def _print_group_mix_verdicts(rows):
    """Print, per direction, the geometric mean of the ratios op / cuDNN
    over the cases measured and which side it favours."""
    for direction in GROUP_MIX_DIRECTIONS:
        ratios = [
            row['ratio'] for row in rows
            if row['direction'] == direction and row['ratio'] > 0
        ]
        if not ratios:
            print(f'group_mix {direction}: not measured')
            continue
        mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        wins = sum(r < 1 for r in ratios)
        print(f"group_mix {direction}: {'op' if mean < 1 else 'cudnn'} "
              f'faster ({mean:.2f}; geometric mean of op / cuDNN over '
              f'{len(ratios)} cases, op faster in {wins})')


def benchmark_group_mix(dtypes, warmup, repeats, device=DEVICE,
                        shapes=GROUP_MIX_SHAPES):
    """Time :func:`mmscalable.ops.group_mix_dwconv` against cuDNN's
    depthwise convs on GroupMixAttention's segments (C / 5 channels per
    kernel size, :data:`GROUP_MIX_KERNELS`), as :class:`GroupMixCase` runs
    them: forward, backward for the input's and the kernels' gradients
    together, and for each alone.

    Prints the median times (CUDA events on a GPU), the ratio op / cuDNN per
    direction and, per direction, the verdict over all cases (geometric mean
    of the ratios): ``group_mix forward: op faster (0.52)``.

    Returns the rows: shape, dtype, direction, op_ms, cudnn_ms and ratio
    (op / cuDNN; NaN when one ran out of memory).
    """
    print(f'\n== group_mix_dwconv vs cuDNN depthwise convs (GroupMixFormer-S '
          f'segments, kernels {GROUP_MIX_KERNELS}), median of {repeats} '
          'runs; ratio = op time / cuDNN time ==')
    print(f"{'B,H,W,C':<22}{'dtype':<10}{'direction':<13}{'op ms':>9}"
          f"{'cudnn ms':>10}{'ratio':>8}")
    rows = []
    for shape in map(tuple, shapes):
        for dtype in dtypes:
            try:
                case = GroupMixCase(shape, dtype, device)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                continue
            for direction, mask in GROUP_MIX_DIRECTIONS.items():
                op_ms, cudnn_ms = (
                    _median_ms_or_nan(fn, warmup, repeats, device)
                    for fn in case.runs(mask))
                ratio = op_ms / cudnn_ms
                rows.append(
                    dict(shape=shape, dtype=str(dtype)[6:],
                         direction=direction, op_ms=op_ms, cudnn_ms=cudnn_ms,
                         ratio=ratio))
                print(f'{str(shape):<22}{str(dtype)[6:]:<10}'
                      f'{direction:<13}{op_ms:>9.3f}{cudnn_ms:>10.3f}'
                      f'{ratio:>8.2f}', flush=True)
    _print_group_mix_verdicts(rows)
    return rows


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--repeats', type=int, default=50, help='timed runs per case')
    parser.add_argument(
        '--warmup', type=int, default=10, help='untimed runs per case')
    parser.add_argument(
        '--skip-bench', action='store_true', help='only check correctness')
    return parser.parse_args()


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        print('No CUDA device visible: nothing to check.')
        return 1
    ops = import_ops()
    info = ops.ext_info()
    print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), device '
          f'{torch.cuda.get_device_name()}')
    print(f'mmscalable._ext: {info}')
    if not info['cuda']:
        print('mmscalable._ext is missing or was built without CUDA; run '
              '`FORCE_CUDA=1 python setup.py build_ext --inplace` first.')
        return 1
    torch.manual_seed(0)
    ok = check_parity(ops)
    ok &= check_gradients(ops)
    ok &= check_error_path()
    if not args.skip_bench:
        benchmark(ops, [torch.float32, torch.float16, torch.bfloat16],
                  args.warmup, args.repeats)
        benchmark_refined_attention(ops, [torch.bfloat16, torch.float32],
                                    args.warmup, min(args.repeats, 10))
        benchmark_window_attention([torch.bfloat16, torch.float32],
                                   args.warmup, args.repeats)
        benchmark_group_mix([torch.bfloat16, torch.float32], args.warmup,
                            min(args.repeats, 20))
    print('\nALL CHECKS PASSED' if ok else '\nSOME CHECKS FAILED')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
