# Copyright (c) mmscalable contributors. All rights reserved.
import pytest
import torch
from mmcv.cnn.bricks.transformer import FFN

from mmscalable.models.layers import ffn_eval_branch


@pytest.mark.parametrize('layer_scale', [0., 1e-2])
def test_ffn_eval_branch_is_the_ffn_in_eval_mode(layer_scale):
    torch.manual_seed(0)
    ffn = FFN(embed_dims=8, feedforward_channels=32, ffn_drop=0.3,
              dropout_layer=dict(type='DropPath', drop_prob=0.3),
              act_cfg=dict(type='GELU'),
              layer_scale_init_value=layer_scale).eval()
    if layer_scale:
        ffn.gamma2.weight.data.uniform_(0.5, 2.)
    x = torch.randn(2, 5, 8)
    expected = ffn(x, identity=x)
    # With autograd (out of place) and without (in place), the same.
    torch.testing.assert_close(x + ffn_eval_branch(ffn, x), expected)
    torch.testing.assert_close(ffn_eval_branch(ffn, x, x), expected)
    with torch.inference_mode():
        kept = x.clone()
        torch.testing.assert_close(ffn_eval_branch(ffn, x, x), expected)
        torch.testing.assert_close(x, kept)  # the input is not written
        # Under autocast the sum is promoted to the identity's dtype.
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = ffn_eval_branch(ffn, x, x)
        assert out.dtype == torch.float32
    # A layer swapped in later is the one called.
    fc2 = torch.nn.Linear(32, 8)
    ffn.layers[1] = fc2
    fc1 = ffn.layers[0][0]
    with torch.no_grad():
        torch.testing.assert_close(
            ffn_eval_branch(ffn, x),
            ffn.gamma2(fc2(torch.nn.functional.gelu(fc1(x)))))
