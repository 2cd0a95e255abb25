# Copyright (c) mmscalable contributors. All rights reserved.
"""The parts of the GPU ops check that run anywhere, so that the script does
not fail on the GPU for a reason a CPU can show."""
import torch

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
