"""The backbones' fast paths trace: ``torch.export`` and ``torch.onnx.export``
(dynamo) give the same outputs.

Tracing (export, and ``torch.compile``) rebuilds fused weights in the
graph, so nothing cached ends up in it. The window ops trace their
pure-PyTorch references; the fused refined attention stays one registered
op (``mmscalable::refined_attention_forward``) in ``torch.export``, and ONNX
export traces its reference.
"""
import pytest
import torch
from tiny_backbones import BACKBONES


@pytest.mark.parametrize('name', list(BACKBONES))
def test_torch_export_matches_eager(name):
    torch.manual_seed(0)
    model = BACKBONES[name]().eval()
    # 64x96 leaves padded IWSA windows at stride 8 (12 columns, windows
    # of 7), and odd maps for the Group-Mix convs.
    example = torch.randn(2, 3, 64, 96)
    exported = torch.export.export(model, (example, ))
    fresh = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(fresh)
        outs = exported.module()(fresh)
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# dynamo: torch.export, then ONNX (torch's default). The TorchScript
# exporter: ScalableViT's graph does not run in onnxruntime (an integer
# division by zero), so only the other two.
@pytest.mark.parametrize('name,dynamo', [(name, True) for name in BACKBONES] +
                         [('groupmixformer', False), ('refiner', False)])
def test_onnx_export_matches_eager(tmp_path, name, dynamo):
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = BACKBONES[name]().eval()
    path = str(tmp_path / f'{name}.onnx')
    torch.onnx.export(
        model, (torch.randn(2, 3, 64, 96), ),
        path,
        dynamo=dynamo,
        input_names=['images'])
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    fresh = torch.randn(2, 3, 64, 96)
    outs = session.run(None, {'images': fresh.numpy()})
    with torch.no_grad():
        expected = model(fresh)
    assert len(outs) == len(expected)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(
            torch.from_numpy(out), ref, atol=1e-4, rtol=1e-4)


def test_jit_trace_has_no_opaque_extension_calls():
    # Traced, the window ops run their references: an extension call would
    # stay a Python op that the ONNX exporter cannot translate.
    model = BACKBONES['scalablevit']().eval()
    traced = torch.jit.trace(model, (torch.randn(1, 3, 64, 96), ))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert 'prim::PythonOp' not in kinds
