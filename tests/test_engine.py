"""mmscalable.engine (hooks, AMP wrapper) and the tools' launch and input
checks, without starting a run (tests/test_distributed.py and
tests/test_recovery.py run them end to end)."""
import json
import os.path as osp
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from test_tools import ROOT, free_port
from tiny_backbones import BACKBONES

import mmscalable.compat as compat
import mmscalable.engine.hooks as hooks
import mmscalable.engine.preflight as preflight
import mmscalable.engine.runner as runner
from mmscalable.engine import (AmpOptimWrapper, CheckpointMatchHook,
                               RandomStateHook, convert_cpu_sync_batchnorm)
from mmscalable.models.families import FAMILIES
from mmscalable.registry import HOOKS, OPTIM_WRAPPERS


def draws():
    return (random.random(), float(np.random.rand()), torch.rand(3))


def same(a, b):
    return a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def fake_runner(resume=True, load_from=None, model=None):
    return SimpleNamespace(
        _resume=resume,
        _load_from=load_from,
        model=model,
        hooks=[],
        train_loop=None)


def test_hooks_and_wrapper_are_registered():
    assert HOOKS.get('mmscalable.RandomStateHook') is RandomStateHook
    assert HOOKS.get('mmscalable.CheckpointMatchHook') is CheckpointMatchHook
    assert OPTIM_WRAPPERS.get('mmscalable.AmpOptimWrapper') is AmpOptimWrapper


def test_random_state_saved_and_restored_on_resume():
    hook, runner = RandomStateHook(), fake_runner()
    torch.manual_seed(1)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    expected = draws()

    torch.manual_seed(2)  # what a resumed run does at start-up
    random.seed(2)
    np.random.seed(2)
    hook.after_load_checkpoint(runner, checkpoint)
    assert not same(draws(), expected)  # not before training starts
    hook.before_train(runner)
    assert same(draws(), expected)


def test_iteration_loop_restores_after_the_skipped_batches():
    from mmengine.runner import IterBasedTrainLoop
    hook, runner = RandomStateHook(), fake_runner()
    torch.manual_seed(5)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    expected = draws()

    def batches():  # a pipeline drawing random numbers
        while True:
            yield torch.rand(2)

    loop = object.__new__(IterBasedTrainLoop)
    loop._iter = 2  # resumed at iteration 2: mmengine draws 2 batches again
    loop.dataloader_iterator = batches()
    runner.train_loop = loop
    torch.manual_seed(9)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    next(loop.dataloader_iterator)
    next(loop.dataloader_iterator)
    assert same(draws(), expected)


def test_random_state_not_restored_by_load_from():
    hook = RandomStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(fake_runner(), checkpoint)
    first = draws()
    runner = fake_runner(resume=False, load_from='model.pth')
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert not same(draws(), first)


def test_validation_does_not_shift_the_training_streams():
    hook, runner = RandomStateHook(), fake_runner()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    hook.before_val(runner)
    draws()  # validation drawing (dataloader seeds, sampling)
    hook.after_val(runner)
    after_val = draws()
    torch.set_rng_state(state)
    assert torch.equal(after_val[2], torch.rand(3))


def test_random_states_of_another_world_size_are_not_applied(monkeypatch):
    hook, runner = RandomStateHook(), fake_runner()
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    checkpoint['rng_states'] = checkpoint['rng_states'] * 2
    first = draws()
    hook.after_load_checkpoint(runner, checkpoint)
    warnings = []
    monkeypatch.setattr(hooks, 'print_log',
                        lambda msg, **kwargs: warnings.append(msg))
    hook.before_train(runner)
    assert 'random states of 2 process(es), this run has 1' in warnings[0]
    assert not same(draws(), first)


def two_layer(out_features=3):
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, out_features))


def test_checkpoint_of_another_model_is_refused():
    hook = CheckpointMatchHook()
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    runner = fake_runner(False, 'work/other.pth', model=two_layer())
    with pytest.raises(ValueError, match=r'work/other\.pth does not fit this '
                       r'model \(Sequential\): 0 of its 4'):
        hook.after_load_checkpoint(runner, {'state_dict': other.state_dict()})

    wider = two_layer()
    wider[0], wider[2] = nn.Linear(4, 16), nn.Linear(16, 3)
    with pytest.raises(ValueError, match=r'shape mismatches e\.g\. \[.0\.'
                       r'weight: checkpoint \(16, 4\), model \(8, 4\)'):
        hook.after_load_checkpoint(runner, {'state_dict': wider.state_dict()})


def test_checkpoint_with_another_head_fine_tunes():
    # Two of four tensors fit (a new classifier): the default 0.5 passes.
    runner = fake_runner(False, 'coco.pth', model=two_layer(out_features=5))
    state = {f'module.{k}': v for k, v in two_layer().state_dict().items()}
    CheckpointMatchHook().after_load_checkpoint(runner, {'state_dict': state})
    with pytest.raises(ValueError, match='2 of its 4'):
        CheckpointMatchHook(min_fraction=0.75).after_load_checkpoint(
            runner, {'state_dict': state})
    with pytest.raises(ValueError, match='min_fraction'):
        CheckpointMatchHook(min_fraction=2)


@pytest.mark.skipif(
    not hasattr(torch, 'get_autocast_dtype'),
    reason=f'torch {torch.__version__} has no '
    'torch.get_autocast_dtype(device_type)')
@pytest.mark.parametrize('name', list(BACKBONES))
def test_bf16_amp_steps_on_the_cpu_stay_finite(name):
    torch.manual_seed(0)
    model = BACKBONES[name]().train()
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
        dtype='bfloat16',
        clip_grad=dict(max_norm=1.0))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        with wrapper.optim_context(model):
            assert torch.is_autocast_enabled('cpu')
            assert torch.get_autocast_dtype('cpu') == torch.bfloat16
            outs = model(torch.randn(2, 3, 64, 64))
            loss = sum(o.float().pow(2).mean() for o in outs)
        assert torch.isfinite(loss)
        wrapper.update_params(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before,
                                                     model.parameters()))
    assert 'loss_scaler' in wrapper.state_dict()


@pytest.mark.skipif(
    not hasattr(torch.amp, 'GradScaler'),
    reason=f'torch {torch.__version__} has no loss scaler for the CPU '
    '(torch.amp.GradScaler)')
def test_amp_wrapper_arguments():
    params = [nn.Parameter(torch.ones(2))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    assert not AmpOptimWrapper(
        optimizer=optimizer, loss_scale=dict(enabled=False),
        dtype='bfloat16').loss_scaler.is_enabled()
    static = AmpOptimWrapper(optimizer=optimizer, loss_scale=512.)
    assert static.loss_scaler.get_scale() == 512.
    with pytest.raises(ValueError, match='float16 autocast needs a GPU'):
        AmpOptimWrapper(optimizer=optimizer, dtype='float16')
    with pytest.raises(ValueError, match='dtype must be one of'):
        AmpOptimWrapper(optimizer=optimizer, dtype='int8')
    with pytest.raises(TypeError, match='loss_scale must be'):
        AmpOptimWrapper(optimizer=optimizer, loss_scale=[1])


def test_cpu_launch_uses_gloo_and_ddp_without_device_ids(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='pytorch', find_unused_parameters=True))
    compat.prepare_launcher(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.to_dict() == dict(
        type='mmscalable.CPUDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=True)

    cfg = Config(
        dict(
            launcher='pytorch',
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', broadcast_buffers=True)))
    compat.prepare_launcher(cfg)
    assert cfg.model_wrapper_cfg.broadcast_buffers
    assert cfg.model_wrapper_cfg.type == 'mmscalable.CPUDistributedDataParallel'

    with pytest.raises(RuntimeError, match='--launcher slurm needs a GPU'):
        compat.prepare_launcher(Config(dict(launcher='slurm')))

    cfg = Config(dict(launcher='none'))
    compat.prepare_launcher(cfg)
    assert 'model_wrapper_cfg' not in cfg


def test_tools_add_their_hooks_once():
    cfg = Config(dict(custom_hooks=[dict(type='RandomStateHook')]))
    runner.add_tool_hooks(cfg)
    runner.add_tool_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'RandomStateHook', 'mmscalable.CheckpointMatchHook'
    ]


def dataset_cfg(tmp_path, ann_file, work_dir=None):
    return Config(
        dict(
            work_dir=str(work_dir or tmp_path / 'work'),
            train_dataloader=dict(
                dataset=dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=dict(
                        type='CocoDataset',
                        data_root=str(tmp_path),
                        ann_file=ann_file)))))


def test_preflight_accepts_good_inputs(tmp_path):
    (tmp_path / 'ann.json').write_text(json.dumps({'images': []}))
    preflight.check_inputs(dataset_cfg(tmp_path, 'ann.json'))
    assert (tmp_path / 'work').is_dir()


def test_preflight_names_a_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r'annotation file .*missing\.json of '
                       r'train_dataloader \(CocoDataset\) does not exist'):
        preflight.check_inputs(dataset_cfg(tmp_path, 'missing.json'))


def test_preflight_names_an_annotation_file_that_does_not_parse(
        tmp_path, monkeypatch):
    (tmp_path / 'ann.json').write_text('{"images": [')
    with pytest.raises(ValueError, match=r'ann\.json of train_dataloader '
                       r'\(CocoDataset\) is not valid JSON: Expecting'):
        preflight.check_inputs(dataset_cfg(tmp_path, 'ann.json'))
    # Large files: only the outer characters are read.
    monkeypatch.setattr(preflight, 'FULL_PARSE_BYTES', 4)
    with pytest.raises(ValueError, match='does not end as it begins'):
        preflight.check_inputs(dataset_cfg(tmp_path, 'ann.json'))
    (tmp_path / 'ann.json').write_text('{"images": []}\n')
    preflight.check_inputs(dataset_cfg(tmp_path, 'ann.json'))


def test_preflight_leaves_remote_annotation_files_to_the_backend(tmp_path):
    cfg = dataset_cfg(tmp_path, 'missing.json')
    cfg.train_dataloader.dataset.dataset.data_root = 's3://bucket/coco'
    preflight.check_inputs(cfg)
    cfg = dataset_cfg(tmp_path, 'missing.json')
    cfg.train_dataloader.dataset.dataset.backend_args = dict(backend='petrel')
    preflight.check_inputs(cfg)


def test_preflight_names_a_work_dir_that_is_not_writable(tmp_path):
    (tmp_path / 'ann.json').write_text('{}')
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    with pytest.raises(PermissionError,
                       match=r'the work dir .*a_file/work is not writable'):
        preflight.check_inputs(
            dataset_cfg(tmp_path, 'ann.json', work_dir=blocker / 'work'))


def test_preflight_names_a_missing_pretrained_checkpoint_and_the_fix(
        tmp_path, monkeypatch):
    """A real dense config with no converted checkpoint stops before the
    runner is built, naming the file, the converter command and how to train
    from scratch."""
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/scalablevit/mask-rcnn_scalablevit-s_fpn_1x_'
                 'coco.py'))
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises(FileNotFoundError) as error:
        preflight.check_pretrained(cfg)
    message = str(error.value)
    assert 'checkpoints/scalablevit-s_in1k.pth does not exist' in message
    assert str(tmp_path) in message
    assert ('official2mmscalable.py scalablevit OFFICIAL_CHECKPOINT '
            'checkpoints/scalablevit-s_in1k.pth') in message
    assert 'https://github.com/Yangr116/ScalableViT' in message
    assert 'model.backbone.init_cfg=None' in message
    # Present, remote or no pretrained initialization: nothing to say.
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'scalablevit-s_in1k.pth').write_bytes(b'')
    preflight.check_pretrained(cfg)
    cfg.model.backbone.init_cfg.checkpoint = 'https://example.com/a.pth'
    preflight.check_pretrained(cfg)
    cfg.model.backbone.init_cfg = None
    preflight.check_pretrained(cfg)


def demo_cfg(tmp_path, data_root, **dataset):
    return Config(
        dict(
            work_dir=str(tmp_path / 'work'),
            train_dataloader=dict(
                dataset=dict(data_root=data_root, **dataset))))


def small_demo_sets(monkeypatch):
    from mmscalable.datasets import demo_data
    for name in ('DEMO_COCO_DEFAULTS', 'DEMO_ADE_DEFAULTS'):
        monkeypatch.setattr(demo_data, name,
                            dict(num_train=2, num_val=1, image_size=(64, 64),
                                 seed=0))
    monkeypatch.setattr(
        demo_data, 'DEMO_CLS_DEFAULTS',
        dict(num_train=1, num_val=1, image_size=(32, 32), seed=0))


def test_runner_stops_on_missing_demo_data_and_names_the_fix(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = demo_cfg(
        tmp_path,
        'data/demo_coco/',
        type='CocoDataset',
        ann_file='annotations/instances_train.json')
    with pytest.raises(
            FileNotFoundError,
            match=r'^data/demo_coco/annotations/instances_train\.json does '
            r'not exist: the embedded demo data data/demo_coco/ of '
            r'train_dataloader \(CocoDataset\) has not been generated; '
            r'generate it with `python tools/misc/make_demo_data\.py` or '
            r'run the tool with --make-demo-data\. data is a relative path, '
            r'resolved against the current working directory'):
        runner.build_runner(cfg)
    # Building a runner generates nothing.
    assert not (tmp_path / 'data').exists()

    # Without an annotation file: the data root is named; another root is
    # passed to the script.
    sets = tmp_path / 'sets'
    cfg = demo_cfg(tmp_path, f'{sets}/demo_ade/', type='BaseSegDataset')
    with pytest.raises(
            FileNotFoundError,
            match=rf'^{sets}/demo_ade/ does not exist: .* generate it with '
            rf'`python tools/misc/make_demo_data\.py --root {sets}`'):
        preflight.check_inputs(cfg)


def test_make_config_demo_data_then_preflight(tmp_path, monkeypatch):
    from mmscalable.datasets import demo_data
    small_demo_sets(monkeypatch)
    cfg = demo_cfg(
        tmp_path,
        f'{tmp_path}/sets/demo_cls',
        type='CustomDataset',
        data_prefix='train')
    cfg.val_dataloader = dict(dataset=dict(data_root='data/not_a_demo_set'))
    assert runner.make_config_demo_data(cfg) == [f'{tmp_path}/sets']
    assert (tmp_path / 'sets/demo_cls/train/circle/000001.jpg').is_file()
    preflight.check_inputs(cfg)
    # A set of another generator version is refused, not used.
    monkeypatch.setattr(demo_data, 'DEMO_DATA_VERSION',
                        demo_data.DEMO_DATA_VERSION + 1)
    with pytest.raises(RuntimeError, match=r'demo_cls of train_dataloader '
                       r'\(CustomDataset\) is out of date \(.*'
                       r'\.demo_data\.json is from another version of the '
                       r'generator\): generate it with'):
        preflight.check_inputs(cfg)


def _sync_bn_worker(rank, world_size, port, x, weight, results):
    import torch.distributed as dist
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size)
    torch.manual_seed(0)
    bn = nn.SyncBatchNorm(3, momentum=0.3)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    assert convert_cpu_sync_batchnorm(nn.Sequential(bn)) == 1
    half = x.chunk(world_size)[rank].clone().requires_grad_()
    out = bn(half)
    (out * weight.chunk(world_size)[rank]).sum().backward()
    for p in (bn.weight, bn.bias):
        dist.all_reduce(p.grad)  # as DDP does
    bn.eval()
    eval_out = bn(half)
    results[rank] = dict(
        out=out.detach(),
        grad=half.grad,
        weight_grad=bn.weight.grad,
        bias_grad=bn.bias.grad,
        running_mean=bn.running_mean,
        running_var=bn.running_var,
        eval_out=eval_out.detach())
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_over_two_processes_is_batchnorm_of_the_batch():
    import torch.multiprocessing as mp
    port = free_port()
    torch.manual_seed(1)
    x = torch.randn(6, 3, 5, 4) * 2 + 1
    weight = torch.randn(6, 3, 5, 4)
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(
        _sync_bn_worker, args=(2, port, x, weight, results), nprocs=2)

    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=0.3)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    full = x.clone().requires_grad_()
    out = bn(full)
    (out * weight).sum().backward()
    bn.eval()
    eval_out = bn(x)

    def cat(key):
        return torch.cat([results[0][key], results[1][key]])

    atol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cat('out'), out.detach(), **atol)
    torch.testing.assert_close(cat('grad'), full.grad, **atol)
    torch.testing.assert_close(cat('eval_out'), eval_out.detach(), **atol)
    for rank in (0, 1):
        r = results[rank]
        torch.testing.assert_close(r['weight_grad'], bn.weight.grad, **atol)
        torch.testing.assert_close(r['bias_grad'], bn.bias.grad, **atol)
        torch.testing.assert_close(r['running_mean'], bn.running_mean, **atol)
        torch.testing.assert_close(r['running_var'], bn.running_var, **atol)


class _Detector(nn.Module):
    """A model called as mmdet's: ``model(inputs, data_samples, mode)``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'raise':
            raise RuntimeError('forward failed')
        return self.backbone(inputs)

    def test_step(self, data):
        return self(**data, mode='predict')


def test_padding_mask_hook_passes_the_image_shapes():
    from mmdet.structures import DetDataSample
    from mmengine.model import BaseTTAModel

    from mmscalable.models import RefinerViT
    backbone = RefinerViT(
        arch=dict(
            FAMILIES['refiner'].tiny_arch, embed_dims=32, depth=2,
            num_heads=2),
        out_type='featmap').eval()
    model = _Detector(backbone)
    hook = HOOKS.build(dict(type='mmscalable.PaddingMaskHook'))
    # Unwrapped from test-time augmentation (and DDP) to the detector.
    class TTAModel(BaseTTAModel):

        def merge_preds(self, data_samples_list):
            return data_samples_list[0]

    hook.before_run(SimpleNamespace(model=TTAModel(module=model)))
    small = torch.randn(1, 3, 32, 48)
    batch = torch.zeros(2, 3, 64, 64)
    batch[0, :, :32, :48] = small
    samples = [
        DetDataSample(metainfo=dict(img_shape=(32, 48))),
        DetDataSample(metainfo=dict(img_shape=(64, 64)))
    ]
    with torch.no_grad():
        (alone, ) = backbone(small)
        (masked, ) = model(batch, samples, mode='predict')
        (keyword, ) = model(inputs=batch, data_samples=samples)
        (unmasked, ) = model(batch)
        # A crop (as a sliding-window inference) is not the batch the
        # shapes describe: it runs as it is.
        calls = []
        handle = backbone.register_forward_pre_hook(
            lambda module, args, kwargs: calls.append(kwargs),
            with_kwargs=True)
        model(batch[:, :, :32, :32], samples)
        handle.remove()
    torch.testing.assert_close(masked[:1, :, :2, :3], alone)
    torch.testing.assert_close(keyword, masked)
    assert not torch.allclose(unmasked[:1, :, :2, :3], alone)
    assert calls == [{}]
    # The shapes are forgotten when a forward fails.
    with pytest.raises(RuntimeError, match='forward failed'):
        model(batch, samples, mode='raise')
    assert hook.hooks.shapes is None
    hook.after_run(None)
    assert not backbone._forward_pre_hooks
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_padding_mask_hook_refuses_a_backbone_without_valid_shapes():
    hook = HOOKS.build(dict(type='mmscalable.PaddingMaskHook'))
    with pytest.raises(TypeError, match='valid_shapes.*Linear'):
        hook.before_run(SimpleNamespace(model=_Detector(nn.Linear(2, 2))))
