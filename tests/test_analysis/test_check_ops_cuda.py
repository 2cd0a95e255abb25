# Copyright (c) mmscalable contributors. All rights reserved.
"""The parts of the GPU ops check that run anywhere, so that the script does
not fail on the GPU for a reason a CPU can show."""
import re

import torch

from ext_marks import requires_ext
from tools.misc import check_ops_cuda


def test_window_attention_bound_runs_on_cpu(capsys):
    rows = check_ops_cuda.benchmark_window_attention(
        [torch.float32], warmup=0, repeats=1, device='cpu',
        shapes=[(1, 9, 10, 8, 2), (2, 14, 14, 8, 2)])
    assert [row['shape'] for row in rows] == [(1, 9, 10, 8, 2),
                                               (2, 14, 14, 8, 2)]
    for row in rows:
        assert row['composed_ms'] > 0 and row['iwsa_ms'] > 0
        assert row['sdpa_only_ms'] > 0 and row['traffic_ms'] > 0
        assert row['verdict'] in ('kernel may pay', 'composed within 10%')
    assert 'IWSA window attention' in capsys.readouterr().out


@requires_ext
def test_group_mix_benchmark_runs_on_cpu(capsys):
    shapes = [(1, 6, 7, 20), (2, 5, 5, 40)]
    rows = check_ops_cuda.benchmark_group_mix(
        [torch.float32], warmup=0, repeats=1, device='cpu', shapes=shapes)
    directions = list(check_ops_cuda.GROUP_MIX_DIRECTIONS)
    assert [(row['shape'], row['direction']) for row in rows] == [
        (shape, direction) for shape in shapes for direction in directions
    ]
    for row in rows:
        assert row['op_ms'] > 0 and row['cudnn_ms'] > 0
        assert row['ratio'] == row['op_ms'] / row['cudnn_ms']
    out = capsys.readouterr().out
    for direction in directions:
        assert re.search(rf'\ngroup_mix {direction}: (op|cudnn) faster \(',
                         out), out
