"""browse_dataset.py and analyze_logs.py."""
import json
import os.path as osp

import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from test_tools import CLS_CONFIG, DET_CONFIG, SEG_CONFIG

from tools.analysis_tools import analyze_logs
from tools.analysis_tools.browse_dataset import browse


@pytest.mark.parametrize('config,split', [(DET_CONFIG, 'train'),
                                          (SEG_CONFIG, 'train'),
                                          (CLS_CONFIG, 'val')],
                         ids=['coco', 'ade', 'cls'])
def test_browse_embedded_datasets(tmp_path, demo_data, monkeypatch, config,
                                  split):
    monkeypatch.chdir(tmp_path)  # the demo configs read data/demo_*
    written = browse(Config.fromfile(config), split, 'out', 3)
    assert len(written) == 3
    for path in written:
        picture = mmcv.imread(path)
        assert picture is not None and picture.size > 0


def test_browse_needs_the_demo_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
            FileNotFoundError,
            match=r'^data/demo_ade/ does not exist: .* generate it with '
            r'`python tools/misc/make_demo_data\.py` or run the tool with '
            r'--make-demo-data\. data is a relative path, resolved against '
            r'the current working directory'):
        browse(Config.fromfile(SEG_CONFIG), 'train', 'out', 1)
    assert not (tmp_path / 'data').exists()


def test_browse_draws_the_ground_truth(tmp_path, demo_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(DET_CONFIG)
    # Without flips, the drawn picture is the image plus the annotations.
    cfg.train_dataloader.dataset.pipeline = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t['type'] != 'RandomFlip'
    ]
    [path] = browse(cfg, 'train', 'out', 1)
    image = mmcv.imread(
        'data/demo_coco/train/' + osp.basename(path).split('_', 1)[1][:-4] +
        '.jpg')
    assert np.abs(mmcv.imread(path).astype(int) - image).mean() > 1


def write_log(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n\n')


RECORDS = [
    dict(loss=2.0, time=0.5, epoch=1, iter=10, step=10),
    dict(loss=1.5, time=0.7, epoch=1, iter=20, step=20),
    {'coco/bbox_mAP': 0.1, 'step': 1},
    dict(loss=1.0, time=0.6, epoch=2, iter=30, step=30),
    {'coco/bbox_mAP': 0.2, 'step': 2},
]


def test_curves_and_times(tmp_path):
    run = tmp_path / '20260101_000000'
    write_log(run / 'vis_data/scalars.json', RECORDS)
    records = analyze_logs.load_records(str(run))
    loss = analyze_logs.curve(records, 'loss')
    assert loss['x'].tolist() == [10, 20, 30] and not loss['validation']
    mAP = analyze_logs.curve(records, 'coco/bbox_mAP')
    assert mAP['x'].tolist() == [1, 2] and mAP['validation']
    times = analyze_logs.train_time(records)
    assert times['iterations'] == 3
    assert times['mean'] == pytest.approx(0.6)

    out = tmp_path / 'curve.png'
    analyze_logs.plot_curve([str(run), str(run / 'vis_data/scalars.json')],
                            ['loss', 'coco/bbox_mAP'], str(out),
                            legend=['a', 'b', 'c', 'd'])
    assert mmcv.imread(str(out)).shape[2] == 3


def test_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='has no vis_data'):
        analyze_logs.load_records(str(tmp_path))
    log = tmp_path / 'scalars.json'
    write_log(log, RECORDS)
    records = analyze_logs.load_records(str(log))
    with pytest.raises(KeyError, match="no record has 'mIoU'"):
        analyze_logs.curve(records, 'mIoU')
    with pytest.raises(ValueError, match='--legend needs 2 names'):
        analyze_logs.plot_curve([str(log)], ['loss', 'coco/bbox_mAP'],
                                str(tmp_path / 'c.png'), legend=['a'])
    log.write_text('{"loss": 1}\n{oops\n')
    with pytest.raises(ValueError, match='line 2 is not JSON'):
        analyze_logs.load_records(str(log))


def test_work_dirs_and_runs_without_scalars(tmp_path, capsys):
    work = tmp_path / 'work'
    write_log(work / '20260101_000000/vis_data/scalars.json', RECORDS[:2])
    write_log(work / '20260102_000000/vis_data/scalars.json', RECORDS)
    # A later run that stopped before it logged anything.
    (work / '20260103_000000/vis_data').mkdir(parents=True)
    (work / '20260103_000000/vis_data/scalars.json').write_text('')
    (work / '20260104_000000').mkdir()
    # A work dir reads its latest run with scalars.
    assert analyze_logs.scalars_file(str(work)) == str(
        work / '20260102_000000/vis_data/scalars.json')
    assert len(analyze_logs.load_records(str(work))) == len(RECORDS)
    # A glob over the runs keeps those with scalars and says which it skips.
    runs = sorted(str(run) for run in work.iterdir())
    assert analyze_logs.usable_logs(runs) == runs[:2]
    err = capsys.readouterr().err
    assert err.count('skipped') == 2 and '20260103_000000' in err
    crashed = tmp_path / 'crashed'
    (crashed / '20260101_000000').mkdir(parents=True)
    (crashed / '20260102_000000').mkdir()
    with pytest.raises(FileNotFoundError, match='none of its 2 runs'):
        analyze_logs.scalars_file(str(crashed))
    with pytest.raises(FileNotFoundError, match='no scalars to read'):
        analyze_logs.usable_logs(runs[2:])
