"""Bad input through the tools: the run stops with an error that names the
input, and what the work dir held before is still there."""
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from test_tools import DET_CONFIG, DET_SHORT, GMF_DET_CONFIG, ROOT, tool

pytestmark = pytest.mark.slow

TRAIN = osp.join(ROOT, 'tools/train.py')
TEST = osp.join(ROOT, 'tools/test.py')
ONE_EPOCH = ['train_cfg.max_epochs=1', *DET_SHORT]


def failing_tool(cwd, *args):
    result = subprocess.run([sys.executable, *args],
                            cwd=cwd,
                            capture_output=True,
                            text=True)
    assert result.returncode != 0, result.stdout[-3000:]
    return result.stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory, link_demo_data):
    """A directory with the demo data and a work dir of one trained epoch."""
    root = link_demo_data(tmp_path_factory.mktemp('trained'))
    tool(root, TRAIN, DET_CONFIG, '--work-dir', str(root / 'work'),
         '--cfg-options', *ONE_EPOCH)
    return root


@pytest.fixture
def run_dir(trained, tmp_path):
    """A copy of ``trained`` the test may damage."""
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    return tmp_path


def first_train_image(run_dir):
    return sorted((run_dir / 'data/demo_coco/train').iterdir())[0]


def assert_work_dir_kept(run_dir):
    checkpoint = torch.load(
        run_dir / 'work/epoch_1.pth', weights_only=False)
    assert checkpoint['meta']['epoch'] == 1
    assert (run_dir / 'work/last_checkpoint').read_text().endswith(
        'epoch_1.pth')


@pytest.mark.parametrize('damage,message', [
    ('missing', 'No such file or directory: {path}'),
    ('corrupt', 'failed to load image: {path}'),
])
def test_bad_image_is_named_and_the_checkpoint_kept(run_dir, damage, message):
    image = first_train_image(run_dir)
    if damage == 'missing':
        image.unlink()
    else:
        image.write_bytes(b'not a jpeg')
    path = osp.join('data/demo_coco/train', image.name)
    err = failing_tool(run_dir, TRAIN, DET_CONFIG, '--work-dir',
                       str(run_dir / 'work'), '--resume', '--cfg-options',
                       'train_cfg.max_epochs=2',
                       'train_dataloader.dataset.indices=None', *DET_SHORT[1:])
    assert message.format(path=f"'{path}'" if damage == 'missing' else path
                          ) in err, err[-2000:]
    assert_work_dir_kept(run_dir)


def test_annotation_file_that_does_not_parse(run_dir):
    ann = run_dir / 'data/demo_coco/annotations/instances_val.json'
    ann.write_text(ann.read_text()[:100])
    err = failing_tool(run_dir, TRAIN, DET_CONFIG, '--work-dir',
                       str(run_dir / 'work'), '--resume', '--cfg-options',
                       'train_cfg.max_epochs=2', *DET_SHORT)
    assert ('annotation file data/demo_coco/annotations/instances_val.json '
            'of val_dataloader (CocoDataset) is not valid JSON') in err
    assert_work_dir_kept(run_dir)


@pytest.mark.parametrize('option,message', [
    ('model.backbone.arch=xl', "Unknown ScalableViT arch 'xl'; choose from"),
    ('model.backbone.out_indices=(0,5)',
     'out_indices must be stage indices in [0, 4), got (0, 5)'),
])
def test_invalid_backbone_settings(run_dir, option, message):
    err = failing_tool(run_dir, TRAIN, DET_CONFIG, '--work-dir',
                       str(run_dir / 'other'), '--cfg-options', option,
                       *ONE_EPOCH)
    assert message in err


def test_checkpoint_of_another_model(run_dir):
    # A GroupMixFormer Mask R-CNN's weights for the ScalableViT one.
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    other = MODELS.build(Config.fromfile(GMF_DET_CONFIG).model)
    checkpoint = run_dir / 'groupmixformer.pth'
    torch.save({'state_dict': other.state_dict()}, checkpoint)
    err = failing_tool(run_dir, TEST, DET_CONFIG, str(checkpoint),
                       '--work-dir', str(run_dir / 'test'), '--cfg-options',
                       *DET_SHORT)
    assert f'{checkpoint} does not fit this model (MaskRCNN)' in err
    assert 'Is it a checkpoint of another config?' in err


def test_work_dir_that_is_not_writable(run_dir):
    blocker = run_dir / 'a_file'
    blocker.write_text('')
    err = failing_tool(run_dir, TRAIN, DET_CONFIG, '--work-dir',
                       str(blocker / 'work'), '--cfg-options', *ONE_EPOCH)
    assert f'the work dir {blocker}/work is not writable' in err
