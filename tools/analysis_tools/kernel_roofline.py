# Copyright (c) mmscalable contributors. All rights reserved.
"""The time each compiled CUDA kernel should reach on one GPU: its minimum
memory traffic and arithmetic at the shapes the models call it with, and
the roofline time they imply.

For every kernel and shape the table gives:

* bytes: the minimum DRAM traffic. Every input is read once and every
  output written once, at the size of its dtype (``--dtype`` for maps,
  tokens and windows; the folded parameters of the refined attention and
  their gradients are float32 whatever the maps are, as the kernels keep
  them). Re-reads that a kernel's tiles make (the refined attention's halo
  rows, V read once per tile of query rows, the Group-Mix taps' neighbours)
  are assumed to hit in L2 and are not counted. Window partition writes
  its zero padding (the windows hold it); window reverse reads only the
  window tokens that lie inside the map.
* FLOPs: a multiply-add counts as two, a bias or residual add as one;
  ReLU6, Hardswish and its gradient masks (comparisons) count as none.
  Convolution taps that fall in the zero padding around a map are not
  counted (the minimum work; a kernel that multiplies them by zero does
  a little more, most on the smallest maps). The refined attention's backward
  kernels recompute what they need of the forward, and those FLOPs are
  counted: they are the work the kernels must do, since nothing of the
  forward is stored.
* the time implied, ``max(bytes / bandwidth, FLOPs / peak)``, and which of
  the two bounds it. The kernels do their arithmetic on CUDA cores with
  float32 accumulation, not on tensor cores, so the compute roof is the
  float32 CUDA-core peak (``--peak-tflops``, H100 SXM: 67 TFLOP/s of FMA);
  the last column gives the time against the dense bf16 tensor-core peak
  (``--tensor-peak-tflops``, 989 TFLOP/s) for comparison, which only a
  kernel rewritten around tensor-core products could approach.

The kernels and what they move:

* ``refined_attention`` forward: reads A (B, heads, N, N) and V (B, heads,
  N, d), writes out (B, heads, N, d). Per map position: 1x1 expand heads ->
  E, 3x3 depthwise on E, 1x1 reduce E -> heads, the residual epilogue, and
  M @ V. Backward over rows: reads A, V and grad_out, writes grad_A and the
  seven parameter gradients; recomputes the expanded maps, forms grad_out
  V^T and back-propagates through the three convs, and sums the parameter
  gradients. Backward for the value: reads A and grad_out, writes grad_V;
  recomputes M and forms M^T grad_out.
* ``group_mix_dwconv`` forward: reads the (B, H, W, S, C) token view and
  the packed kernels (and bias), writes (S * B, C, H, W). Input gradient:
  reads grad_out and the kernels, writes the (B, H, W, S, C) gradient.
  Weight gradient: reads grad_out and the input, writes the kernels'
  gradient. The cuDNN path that the op replaces for GroupMixFormer's
  proxies is given too: the (S * B, C, H, W) copy of the tokens (read and
  write) and one depthwise conv per group of kernel size above 1 (read and
  write its channels); the concatenations that the model's fallback adds
  on top are not counted.
* ``window_partition`` / ``window_reverse``: pure gathers, no FLOPs.

Shapes come from the model code (the backbones are built, on the CPU, to
read their settings): Refiner-ViT-S's refiner blocks (N counts the class
token), GroupMixFormer-S's blocks per stage (one proxy call with S = 3
streams, q, k and v, and one position-encoding call with S = 1 per block)
and ScalableViT-S's IWSA blocks per stage (partition of the qkv map, 3C
channels; reverse of the attention output, C channels).

Example:
    python tools/analysis_tools/kernel_roofline.py
    python tools/analysis_tools/kernel_roofline.py --dtype bfloat16
"""
import argparse
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)

# One H100 SXM.
H100_BANDWIDTH_TBS = 3.35
H100_FP32_TFLOPS = 67.
H100_TENSOR_TFLOPS = 989.

DTYPE_BYTES = {'float32': 4, 'float16': 2, 'bfloat16': 2}
# The refined attention's folded parameters (float32 for every map dtype
# but float64).
PARAM_BYTES = 4

REFINED_FORWARD = 'refined_attention forward'
REFINED_BACKWARD_ROWS = 'refined_attention backward over rows'
REFINED_BACKWARD_VALUE = 'refined_attention backward for the value'
GROUP_MIX_FORWARD = 'group_mix forward'
GROUP_MIX_INPUT_GRAD = 'group_mix input gradient'
GROUP_MIX_WEIGHT_GRAD = 'group_mix weight gradient'
GROUP_MIX_CUDNN = 'cuDNN path: copy + depthwise convs'
WINDOW_PARTITION = 'window_partition'
WINDOW_REVERSE = 'window_reverse'
KERNELS = (REFINED_FORWARD, REFINED_BACKWARD_ROWS, REFINED_BACKWARD_VALUE,
           GROUP_MIX_FORWARD, GROUP_MIX_INPUT_GRAD, GROUP_MIX_WEIGHT_GRAD,
           WINDOW_PARTITION, WINDOW_REVERSE)

# (height, width, batch) of each model's cases.
REFINER_CASES = ((224, 224, 64), (512, 512, 8), (1024, 1024, 2))
GROUP_MIX_CASES = ((224, 224, 64), (800, 1344, 2))
WINDOW_CASES = ((224, 224, 64), (800, 1344, 2))


@dataclass
class Row:
    """One kernel launch: what it moves and computes.

    Args:
        kernel (str): The kernel's name.
        shape (str): The call, in words.
        calls (int): Launches of this shape per pass of the model (its
            forward, or its backward for the gradient kernels).
        bytes (int): Minimum DRAM traffic.
        flops (int): Floating-point operations.
    """
    kernel: str
    shape: str
    calls: int
    bytes: int
    flops: int


def taps_in_map(extent: int, kernel_size: int) -> int:
    """Pairs (output position, tap) of a 1-D 'same' convolution whose tap
    falls inside a map of ``extent`` positions (zero padding excluded)."""
    radius = kernel_size // 2
    return sum(
        min(out + radius, extent - 1) - max(out - radius, 0) + 1
        for out in range(extent))


def refined_attention_rows(batch: int,
                           heads: int,
                           tokens: int,
                           head_dims: int,
                           hidden: int,
                           itemsize: int,
                           shape: str = '',
                           calls: int = 1) -> List[Row]:
    """The three refined-attention kernels at one shape.

    Args:
        batch (int): Images B.
        heads (int): Heads of the maps.
        tokens (int): N, the side of the N x N maps.
        head_dims (int): d, the channels of V per head.
        hidden (int): E, the expanded channels.
        itemsize (int): Bytes per element of A, V and their gradients.
        shape (str): The call, in words, for the table.
        calls (int): Launches per pass of the model.

    Returns:
        list[Row]: Forward, backward over rows, backward for the value.
    """
    B, H, N, d, E = batch, heads, tokens, head_dims, hidden
    positions = B * N * N  # map positions, all heads at once
    maps = H * positions  # elements of A (and of grad_A)
    vectors = B * H * N * d  # elements of V (out, grad_out, grad_V)
    params = 2 * E * H + 11 * E + 2 * H
    # Depthwise taps inside the map, over the batch.
    taps = B * taps_in_map(N, 3)**2
    expand = positions * (2 * E * H + E)
    depthwise = 2 * E * taps + E * positions
    reduce = positions * (2 * H * E + 3 * H)  # with the residual epilogue
    product = 2 * maps * d  # M @ V, grad_out V^T or M^T grad_out
    refine = expand + depthwise + reduce
    # Backward over rows: recompute z1 and z2; grad_M = grad_out V^T; back
    # through the reduction, the depthwise conv and the expansion (plus
    # alpha); the parameters' gradients.
    backward_rows = (
        expand + depthwise + product + 2 * H * E * positions + 2 * E * taps +
        positions * H * (2 * E + 1) + 2 * E * H * positions +
        2 * H * E * positions + 2 * E * taps + 2 * E * positions +
        3 * H * positions)
    return [
        Row(REFINED_FORWARD, shape, calls,
            (maps + 2 * vectors) * itemsize + params * PARAM_BYTES,
            refine + product),
        Row(REFINED_BACKWARD_ROWS, shape, calls,
            (2 * maps + 2 * vectors) * itemsize + 2 * params * PARAM_BYTES,
            backward_rows),
        Row(REFINED_BACKWARD_VALUE, shape, calls,
            (maps + 2 * vectors) * itemsize + params * PARAM_BYTES,
            refine + product),
    ]


def group_mix_rows(batch: int,
                   height: int,
                   width: int,
                   streams: int,
                   kernel_sizes: Sequence[int],
                   group_channels: Sequence[int],
                   bias: bool,
                   itemsize: int,
                   shape: str = '',
                   calls: int = 1,
                   cudnn: bool = False) -> List[Row]:
    """The Group-Mix kernels at one shape.

    Args:
        batch (int): Images B.
        height (int): Map height H.
        width (int): Map width W.
        streams (int): Streams S sharing the kernels (q, k and v: 3).
        kernel_sizes (Sequence[int]): Kernel side of every channel group.
        group_channels (Sequence[int]): Channels of every group.
        bias (bool): Whether the call adds a per-channel bias.
        itemsize (int): Bytes per element (tokens, maps, kernels).
        shape (str): The call, in words, for the table.
        calls (int): Launches per pass of the model.
        cudnn (bool): Add the row of the cuDNN path (the token copy, then
            one conv per group of kernel size above 1).

    Returns:
        list[Row]: Forward, input gradient, weight gradient (and the cuDNN
        path's forward).
    """
    channels = sum(group_channels)
    elements = batch * height * width * streams * channels
    weights = sum(c * k * k for c, k in zip(group_channels, kernel_sizes))
    planes = streams * batch
    macs = [
        planes * c * taps_in_map(height, k) * taps_in_map(width, k)
        for c, k in zip(group_channels, kernel_sizes)
    ]
    conv = 2 * sum(macs)
    bias_flops = elements if bias else 0
    bias_elements = channels if bias else 0
    rows = [
        Row(GROUP_MIX_FORWARD, shape, calls,
            (2 * elements + weights + bias_elements) * itemsize,
            conv + bias_flops),
        Row(GROUP_MIX_INPUT_GRAD, shape, calls,
            (2 * elements + weights) * itemsize, conv),
        Row(GROUP_MIX_WEIGHT_GRAD, shape, calls,
            (2 * elements + weights) * itemsize, conv),
    ]
    if cudnn:
        convolved = [(c, k, m)
                     for c, k, m in zip(group_channels, kernel_sizes, macs)
                     if k > 1]
        # The copy reads and writes every element; each conv reads and
        # writes its group's channels of the copied map.
        conv_elements = sum(2 * elements * c // channels
                            for c, _, _ in convolved)
        conv_weights = sum(c * k * k for c, k, _ in convolved)
        traffic = 2 * elements + conv_elements + conv_weights + bias_elements
        rows.append(
            Row(GROUP_MIX_CUDNN, shape, calls, traffic * itemsize,
                2 * sum(m for _, _, m in convolved) + bias_flops))
    return rows


def window_partition_row(batch: int,
                         height: int,
                         width: int,
                         channels: int,
                         window_size: int,
                         itemsize: int,
                         shape: str = '',
                         calls: int = 1) -> Row:
    """Window partition of a (B, H, W, C) map at one shape.

    Args:
        batch (int): Images B.
        height (int): Map height H.
        width (int): Map width W.
        channels (int): Channels C.
        window_size (int): Window side.
        itemsize (int): Bytes per element.
        shape (str): The call, in words, for the table.
        calls (int): Launches per pass of the model.

    Returns:
        Row: Reads the map, writes the zero-padded windows.
    """
    num_windows = -(-height // window_size) * -(-width // window_size)
    windows = batch * num_windows * window_size * window_size * channels
    elements = batch * height * width * channels
    return Row(WINDOW_PARTITION, shape, calls, (elements + windows) * itemsize,
               0)


def window_reverse_row(batch: int,
                       height: int,
                       width: int,
                       channels: int,
                       itemsize: int,
                       shape: str = '',
                       calls: int = 1) -> Row:
    """Window reverse to a (B, H, W, C) map: reads the windows' tokens inside
    the map, writes the map (the window side does not change the traffic).

    Args:
        batch (int): Images B.
        height (int): Map height H.
        width (int): Map width W.
        channels (int): Channels C.
        itemsize (int): Bytes per element.
        shape (str): The call, in words, for the table.
        calls (int): Launches per pass of the model.

    Returns:
        Row: The reverse's traffic.
    """
    elements = batch * height * width * channels
    return Row(WINDOW_REVERSE, shape, calls, 2 * elements * itemsize, 0)


def _conv_output(size: int, conv) -> int:
    """Side of a Conv2d's output along one axis of ``size`` (square convs)."""
    kernel, stride, padding = (conv.kernel_size[0], conv.stride[0],
                               conv.padding[0])
    return (size + 2 * padding - kernel) // stride + 1


def _after_convs(module, height: int, width: int) -> Tuple[int, int]:
    """The map size after every Conv2d of ``module``, in their order."""
    import torch.nn as nn
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            height = _conv_output(height, conv)
            width = _conv_output(width, conv)
    return height, width


def _channels(sizes: Sequence[int]) -> str:
    return '/'.join(str(s) for s in sizes)


def refiner_cases(itemsize: int, cases=REFINER_CASES) -> List[Row]:
    """Refiner-ViT-S's refiner blocks at ``cases`` (height, width, batch)."""
    from mmscalable.models import RefinerViT
    model = RefinerViT('s')
    refiners = [block.attn for block in model.blocks if block.attn.refine]
    attn = refiners[0]
    heads, head_dims = attn.num_heads, attn.head_dims
    hidden = attn.refinement.layers[0].conv.out_channels
    rows = []
    for height, width, batch in cases:
        # Corner padding to whole patches, then the class token.
        tokens = 1 + (-(-height // model.patch_size) *
                      -(-width // model.patch_size))
        shape = (f'Refiner-ViT-S {height}x{width} b{batch}: '
                 f'heads {heads}, N {tokens}, d {head_dims}, E {hidden}')
        rows += refined_attention_rows(batch, heads, tokens, head_dims, hidden,
                                       itemsize, shape, len(refiners))
    return rows


def group_mix_cases(itemsize: int, cases=GROUP_MIX_CASES) -> List[Row]:
    """GroupMixFormer-S's two Group-Mix calls per block, per stage, at
    ``cases`` (height, width, batch)."""
    from mmscalable.models import GroupMixFormer
    model = GroupMixFormer('s')
    rows = []
    for height, width, batch in cases:
        h, w = _after_convs(model.stem, height, width)
        proxy_rows, crpe_rows = [], []
        for index, stage in enumerate(model.stages, 1):
            h, w = _after_convs(stage.patch_embed, h, w)
            attn = stage.blocks[0].attn
            calls = len(stage.blocks)
            seg = attn.segment_dims
            # The token segment is a group of its own (a 1x1 kernel).
            kernels = [1] + [
                a.depthwise_conv.conv.kernel_size[0]
                for a in attn.proxy_aggregators
            ]
            groups = [seg] * len(kernels)
            prefix = f'GroupMixFormer-S {height}x{width} b{batch}, stage '
            proxy_rows += group_mix_rows(
                batch, h, w, 3, kernels, groups, False, itemsize,
                f'{prefix}{index} proxies: ({batch}, {h}, {w}, 3, '
                f'{sum(groups)}), k {_channels(kernels)}', calls, True)
            crpe = attn.crpe
            kernels = [conv.kernel_size[0] for conv in crpe.convs]
            groups = list(crpe.channel_splits)
            crpe_rows += group_mix_rows(
                batch, h, w, 1, kernels, groups, crpe.convs[0].bias
                is not None, itemsize,
                f'{prefix}{index} CRPE: ({batch}, {h}, {w}, 1, '
                f'{sum(groups)}), k {_channels(kernels)} on '
                f'{_channels(groups)} ch', calls)
        rows += proxy_rows + crpe_rows
    return rows


def window_cases(itemsize: int, cases=WINDOW_CASES) -> List[Row]:
    """ScalableViT-S's IWSA blocks per stage at ``cases`` (height, width,
    batch): partition of the qkv map, reverse of the output."""
    from mmscalable.models import ScalableViT
    from mmscalable.models.layers import InteractiveWindowAttention
    model = ScalableViT('s')
    partitions, reverses = [], []
    for height, width, batch in cases:
        h, w = height, width
        for index, stage in enumerate(model.stages, 1):
            h, w = _after_convs(stage.patch_embed, h, w)
            iwsa = [
                block.attn for block in stage.blocks
                if isinstance(block.attn, InteractiveWindowAttention)
            ]
            if not iwsa:
                continue
            C, ws = iwsa[0].embed_dims, iwsa[0].window_size
            prefix = f'ScalableViT-S {height}x{width} b{batch}, stage {index}'
            partitions.append(
                window_partition_row(
                    batch, h, w, 3 * C, ws, itemsize,
                    f'{prefix}: qkv ({batch}, {h}, {w}, {3 * C}), '
                    f'ws {ws}', len(iwsa)))
            reverses.append(
                window_reverse_row(
                    batch, h, w, C, itemsize,
                    f'{prefix}: out ({batch}, {h}, {w}, {C}), '
                    f'ws {ws}', len(iwsa)))
    return partitions + reverses


def all_rows(itemsize: int) -> List[Row]:
    """Every kernel at the three models' shapes."""
    return (refiner_cases(itemsize) + group_mix_cases(itemsize) +
            window_cases(itemsize))


def roofline(row: Row, bandwidth_tbs: float,
             peak_tflops: float) -> Tuple[float, str]:
    """The time ``row`` implies in microseconds and its bound."""
    memory = row.bytes / (bandwidth_tbs * 1e12)
    compute = row.flops / (peak_tflops * 1e12)
    return max(memory, compute) * 1e6, ('memory'
                                        if memory >= compute else 'compute')


def markdown_table(rows: Sequence[Row], bandwidth_tbs: float,
                   peak_tflops: float, tensor_peak_tflops: float) -> str:
    """The rows as a markdown table (MB = 1e6 bytes, GFLOP = 1e9 FLOPs)."""
    lines = [
        '| Kernel | Shape | Calls per pass | MB moved | GFLOP | FLOP/B '
        '| H100 µs | Bound | µs at tensor-core peak |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |'
    ]
    for row in rows:
        time_us, bound = roofline(row, bandwidth_tbs, peak_tflops)
        tensor_us, _ = roofline(row, bandwidth_tbs, tensor_peak_tflops)
        intensity = row.flops / row.bytes
        lines.append(f'| {row.kernel} | {row.shape} | {row.calls} '
                     f'| {row.bytes / 1e6:.1f} | {row.flops / 1e9:.2f} '
                     f'| {intensity:.1f} | {time_us:.1f} | {bound} '
                     f'| {tensor_us:.1f} |')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Minimum memory traffic, FLOPs and roofline time of the '
        "compiled CUDA kernels at the models' shapes (markdown table).")
    parser.add_argument(
        '--dtype',
        choices=sorted(DTYPE_BYTES),
        default='float32',
        help='dtype of the maps, tokens and windows (default: float32)')
    parser.add_argument(
        '--bandwidth-tbs',
        type=float,
        default=H100_BANDWIDTH_TBS,
        help='memory bandwidth in TB/s (default: H100 SXM HBM3, '
        f'{H100_BANDWIDTH_TBS})')
    parser.add_argument(
        '--peak-tflops',
        type=float,
        default=H100_FP32_TFLOPS,
        help='compute roof in TFLOP/s: float32 on CUDA cores, where these '
        f'kernels compute (default: H100 SXM, {H100_FP32_TFLOPS:g})')
    parser.add_argument(
        '--tensor-peak-tflops',
        type=float,
        default=H100_TENSOR_TFLOPS,
        help='the dense bf16 tensor-core peak, for the last column '
        f'(default: H100 SXM, {H100_TENSOR_TFLOPS:g})')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Print the table and return it."""
    args = parse_args(argv)
    rows = all_rows(DTYPE_BYTES[args.dtype])
    table = markdown_table(rows, args.bandwidth_tbs, args.peak_tflops,
                           args.tensor_peak_tflops)
    print(table)
    return table


if __name__ == '__main__':
    main()
