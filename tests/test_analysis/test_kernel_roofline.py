# Copyright (c) mmscalable contributors. All rights reserved.
"""The kernels' roofline table: every kernel at the models' shapes, and
figures checked by hand."""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools/analysis_tools/kernel_roofline.py')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('kernel_roofline', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table):
    """The table's body as lists of cells."""
    return [[cell.strip() for cell in line.strip('|').split('|')]
            for line in table.splitlines()[2:]]


def test_table_has_every_kernel(tool, capsys):
    table = tool.main([])
    assert table in capsys.readouterr().out
    rows = _rows(table)
    kernels = {row[0] for row in rows}
    assert set(tool.KERNELS) <= kernels
    assert len(tool.KERNELS) == 8
    assert all(row[7] in ('memory', 'compute') for row in rows)
    # Refiner-ViT-S: 8 refiner blocks, N counts the class token.
    cases = ((224, 64, 197), (512, 8, 1025), (1024, 2, 4097))
    shapes = [row[1] for row in rows if row[0] == tool.REFINED_FORWARD]
    assert shapes == [
        f'Refiner-ViT-S {side}x{side} b{batch}: heads 12, N {tokens}, '
        'd 32, E 36' for side, batch, tokens in cases
    ]
    assert {row[2] for row in rows if row[0] == tool.REFINED_FORWARD} == {'8'}


def test_window_partition_bytes_by_hand(tool):
    # ScalableViT-S's first stage at 224x224 batch 64: a 56x56 qkv map of
    # 3 * 64 channels, 7x7 windows, no padding: read once, written once.
    row = tool.window_partition_row(64, 56, 56, 192, 7, 4)
    assert row.bytes == 2 * 64 * 56 * 56 * 192 * 4
    assert row.flops == 0
    table = tool.markdown_table([row], 3.35, 67., 989.)
    # 308.28 MB at 3.35 TB/s: 92.0 us.
    assert _rows(table)[0][3:8] == ['308.3', '0.00', '0.0', '92.0', 'memory']
    # The padding is written (200 rows of 7x7 windows: 203), not read back.
    padded = tool.window_partition_row(2, 200, 336, 192, 7, 2)
    assert padded.bytes == (2 * 200 * 336 + 2 * 203 * 336) * 192 * 2
    reverse = tool.window_reverse_row(2, 200, 336, 64, 2)
    assert reverse.bytes == 2 * 2 * 200 * 336 * 64 * 2


def test_convolution_counts_by_hand(tool):
    # A 3-tap 'same' conv over 5 positions: 3 taps each but 2 at the ends.
    assert tool.taps_in_map(5, 3) == 13
    assert tool.taps_in_map(1, 7) == 1
    # One 1x1 map, one head, one channel of each kind.
    forward, rows, value = tool.refined_attention_rows(1, 1, 1, 1, 1, 4)
    # expand 2 + 1, depthwise 2 + 1, reduce 2 + epilogue 3, M @ V 2.
    assert forward.flops == value.flops == 13
    assert forward.bytes == 3 * 4 + 15 * 4
    assert rows.bytes == 4 * 4 + 2 * 15 * 4
    # A proxy call: the op reads the tokens and writes the maps once; the
    # cuDNN path copies them first, then convolves the 3 groups of k > 1.
    op, _, _, cudnn = tool.group_mix_rows(
        2, 8, 8, 3, [1, 3, 5, 7], [4, 4, 4, 4], False, 2, cudnn=True)
    elements = 2 * 8 * 8 * 3 * 16
    weights = 4 * (1 + 9 + 25 + 49)
    assert op.bytes == (2 * elements + weights) * 2
    assert cudnn.bytes == (2 * elements + 2 * elements * 12 // 16 + weights -
                           4) * 2


def test_help_does_not_import_torch():
    code = ('import runpy, sys\n'
            f'sys.argv = [{TOOL!r}, "--help"]\n'
            'try:\n'
            f'    runpy.run_path({TOOL!r}, run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            'assert "torch" not in sys.modules\n')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert '--bandwidth-tbs' in result.stdout
    assert '--peak-tflops' in result.stdout
