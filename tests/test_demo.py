"""demo/image_demo.py draws detection, instance and semantic segmentation
predictions of our configs."""
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from test_tools import CLS_CONFIG, DET_CONFIG, DET_SHORT, ROOT, SEG_CONFIG, tool

DEMO = osp.join(ROOT, 'demo/image_demo.py')


@pytest.fixture(scope='module')
def trained_detector(tmp_path_factory, link_demo_data):
    root = link_demo_data(tmp_path_factory.mktemp('detector'))
    tool(root, osp.join(ROOT, 'tools/train.py'), DET_CONFIG, '--work-dir',
         str(root / 'work'), '--cfg-options', 'train_cfg.max_epochs=1',
         *DET_SHORT)
    return root, root / 'work/epoch_1.pth'


def changed_pixels(image, picture):
    a, b = mmcv.imread(str(image)), mmcv.imread(str(picture))
    assert a.shape == b.shape
    return np.abs(a.astype(int) - b.astype(int)).mean()


@pytest.mark.slow
@pytest.mark.parametrize('extra', [[], ['--boxes-only']],
                         ids=['instances', 'boxes'])
def test_detection_pictures(trained_detector, extra):
    root, checkpoint = trained_detector
    image = root / 'data/demo_coco/val/000001.jpg'
    out = tool(root, DEMO, str(image), DET_CONFIG, '--weights',
               str(checkpoint), '--out-dir', str(root / 'out'),
               '--score-thr', '0', '--device', 'cpu', *extra)
    picture = root / 'out/vis/000001.jpg'
    assert str(picture) in out
    assert changed_pixels(image, picture) > 1


@pytest.mark.slow
def test_segmentation_pictures_of_a_folder(tmp_path, demo_data):
    folder = demo_data / 'demo_ade/images/validation'
    tool(tmp_path, DEMO, str(folder), SEG_CONFIG, '--out-dir',
         str(tmp_path / 'out'), '--device', 'cpu', '--untrained')
    images = sorted(folder.iterdir())
    for image in images:
        assert changed_pixels(image, tmp_path / 'out/vis' / image.name) > 1
    # A grayscale image is drawn in colour, under its own name.
    gray = tmp_path / 'gray.png'
    mmcv.imwrite(mmcv.imread(str(images[0]), flag='grayscale'), str(gray))
    out = tool(tmp_path, DEMO, str(gray), SEG_CONFIG, '--out-dir',
               str(tmp_path / 'out'), '--device', 'cpu', '--untrained')
    assert '1 channel(s), converted to 3' in out
    picture = mmcv.imread(str(tmp_path / 'out/vis/gray.png'))
    assert picture.shape[2] == 3 and picture.std() > 1


@pytest.mark.parametrize('args,message', [
    (['missing.jpg', DET_CONFIG, '--untrained'],
     'image missing.jpg not found'),
    (['{image}', DET_CONFIG, '--weights', 'nope.pth'],
     'checkpoint nope.pth not found'),
    (['{image}', DET_CONFIG, '--weights', '{other}'],
     'other.pth does not fit this model'),
    (['{image}', DET_CONFIG], 'give the model\'s checkpoint with --weights'),
    (['{image}', CLS_CONFIG, '--untrained'],
     'is a mmpretrain config; image_demo.py draws'),
    (['{image}', SEG_CONFIG, '--boxes-only', '--untrained'],
     '--boxes-only is for detection configs'),
])
def test_demo_errors(tmp_path, args, message):
    image = tmp_path / 'a.jpg'
    mmcv.imwrite(np.zeros((8, 8, 3), np.uint8), str(image))
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, other)
    args = [a.format(image=image, other=other) for a in args]
    result = subprocess.run(
        [sys.executable, DEMO, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True)
    assert result.returncode != 0
    assert message in result.stderr
