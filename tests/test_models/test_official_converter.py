"""The family table and the one converter command line with its aliases."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from official_checks import tiny_official_weights

from mmscalable.models import GroupMixFormer, RefinerViT, ScalableViT
from mmscalable.models.checkpoint import canonical_archs
from mmscalable.models.families import (FAMILIES, BackboneFamily, get_family,
                                        registered_family)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONVERTERS = osp.join(ROOT, 'tools/model_converters')
# One key of each family's official checkpoints and its converted name.
OFFICIAL_KEYS = {
    'scalablevit': ('patch_embeds.0.proj.weight',
                    'backbone.stages.0.patch_embed.projection.weight'),
    'groupmixformer': ('conv_stem.proj1.weight',
                       'backbone.stem.0.conv.weight'),
    'refiner': ('patch_embed.conv1.weight', 'backbone.stem.0.conv.weight'),
}


def _official(tmp_path, family, **containers):
    key = OFFICIAL_KEYS[family][0]
    containers = containers or dict(model={key: torch.ones(2)})
    path = tmp_path / f'{family}.pth'
    torch.save(containers, path)
    return str(path)


def _run(script, *args):
    return subprocess.run(
        [sys.executable, osp.join(CONVERTERS, script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True)


def test_family_table():
    builtin = ['scalablevit', 'groupmixformer', 'refiner']
    assert list(FAMILIES)[:3] == builtin
    assert [FAMILIES[f].backbone_class
            for f in builtin] == [ScalableViT, GroupMixFormer, RefinerViT]
    assert FAMILIES['groupmixformer'].archs == ['m', 't', 's', 'b', 'l']
    assert FAMILIES['refiner'].model_names == [
        'refiner-vit-s', 'refiner-vit-m', 'refiner-vit-l'
    ]
    assert [f.name for f in FAMILIES.values() if f.ema_key] == ['refiner']
    assert canonical_archs({'a': {'x': 1}, 'alpha': {'x': 1},
                            'b': {'x': 2}}) == ['a', 'b']
    with pytest.raises(KeyError, match="unknown backbone family 'swin'"):
        get_family('swin')
    # A second family of a name is refused; one registered for a while
    # leaves no trace.
    copy = BackboneFamily(**{
        **vars(FAMILIES['refiner']), 'name': 'refiner-copy'
    })
    with registered_family(copy):
        assert get_family('refiner-copy') is copy
        with pytest.raises(KeyError, match="'refiner-copy' exists"):
            with registered_family(copy):
                pass
    assert 'refiner-copy' not in FAMILIES


@pytest.mark.parametrize('family', list(FAMILIES))
def test_official_weights_of_every_family_convert_back(
        family, tmp_path, capsys):
    """The tiny model's weights under their official names convert, with
    the one command line, to the same classifier weights."""
    from tools.model_converters.official2mmscalable import main
    spec = FAMILIES[family]
    mmcls, official = tiny_official_weights(family)
    assert spec.is_official(official)
    assert not spec.is_official(mmcls)
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'out.pth')
    torch.save({'model': official}, src)
    main([family, src, dst])
    assert capsys.readouterr().out.startswith(
        f'Converted {len(official)} tensors')
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['converter'] == spec.converter
    assert converted['state_dict'].keys() == mmcls.keys()
    for key, value in mmcls.items():
        assert torch.equal(converted['state_dict'][key], value), key


@pytest.mark.parametrize('family', list(OFFICIAL_KEYS))
def test_one_converter_for_every_family(family, tmp_path, capsys):
    from tools.model_converters.official2mmscalable import main
    src, dst = _official(tmp_path, family), str(tmp_path / 'out' / 'x.pth')
    main([family, src, dst])
    first, next_step = capsys.readouterr().out.splitlines()
    assert first == f'Converted 1 tensors from {src} to {dst}'
    assert next_step.startswith(f'Next: the classification configs '
                                f'configs/{family}/')
    assert f'model.backbone.init_cfg.checkpoint={dst}' in next_step
    saved = torch.load(dst, weights_only=True)
    assert list(saved['state_dict']) == [OFFICIAL_KEYS[family][1]]
    # The record of the converter is the family's script, as before.
    assert saved['meta'] == dict(
        converted_from=f'{family}.pth', converter=f'{family}2mmscalable')


def test_missing_or_unreadable_file_is_named(tmp_path, capsys):
    from tools.model_converters.official2mmscalable import main
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    page = 'https://github.com/Yangr116/ScalableViT/tree/main/' \
        'image_classification'
    for src, problem in [(str(tmp_path / 'none.pth'), 'No checkpoint at'),
                         (str(junk), 'is not a PyTorch checkpoint')]:
        with pytest.raises(SystemExit) as exit_info:
            main(['scalablevit', src, str(tmp_path / 'out.pth')])
        assert exit_info.value.code == 1
        error = capsys.readouterr().err
        assert problem in error and src in error and page in error
    assert not (tmp_path / 'out.pth').exists()


def test_ema_weights(tmp_path, capsys):
    from tools.model_converters.official2mmscalable import main
    key = OFFICIAL_KEYS['refiner'][0]
    src = _official(
        tmp_path,
        'refiner',
        state_dict={key: torch.zeros(2)},
        state_dict_ema={key: torch.ones(2)})
    dst = str(tmp_path / 'ema.pth')
    for flags in ([], ['--ema']):
        main(['refiner', src, dst] + flags)
        assert '(state_dict_ema)' in capsys.readouterr().out
        saved = torch.load(dst, weights_only=True)
        assert saved['meta']['container'] == 'state_dict_ema'
        assert saved['state_dict'][OFFICIAL_KEYS['refiner'][1]].sum() == 2
    main(['refiner', src, dst, '--no-ema'])
    assert 'state_dict_ema' not in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    assert saved['state_dict'][OFFICIAL_KEYS['refiner'][1]].sum() == 0
    with pytest.raises(ValueError, match='carry no EMA weights'):
        FAMILIES['scalablevit'].convert(src, dst, ema=True)


@pytest.mark.slow
def test_command_line(tmp_path):
    result = _run('official2mmscalable.py', '--help')
    assert result.returncode == 0, result.stderr[-2000:]
    for family in FAMILIES.values():
        assert family.name in result.stdout
        assert family.repository in result.stdout
    assert "prefix='backbone.'" in result.stdout
    assert '--no-ema' in result.stdout

    src = _official(tmp_path, 'scalablevit')
    result = _run('official2mmscalable.py', 'scalablevit', src,
                  str(tmp_path / 'a.pth'), '--ema')
    assert result.returncode == 2
    assert 'official ScalableViT checkpoints carry no EMA' in result.stderr
    result = _run('official2mmscalable.py', 'swin', src,
                  str(tmp_path / 'a.pth'))
    assert result.returncode == 2 and 'invalid choice' in result.stderr

    # The per-family scripts are the same command with the family fixed.
    result = _run('scalablevit2mmscalable.py', src, str(tmp_path / 'b.pth'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith('Converted 1 tensors from')
    assert torch.load(
        tmp_path / 'b.pth',
        weights_only=True)['meta']['converter'] == 'scalablevit2mmscalable'
    result = _run('groupmixformer2mmscalable.py', src,
                  str(tmp_path / 'c.pth'))
    assert result.returncode == 1
    assert 'is not an official GroupMixFormer checkpoint' in result.stderr


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_family_refuses_the_official_checkpoints_of_the_others(
        family, tmp_path):
    for other in FAMILIES.values():
        if other.name == family:
            continue
        official = tiny_official_weights(other.name)[1]
        src = str(tmp_path / f'{other.name}.pth')
        torch.save({'model': official}, src)
        with pytest.raises(
                ValueError,
                match=f'not an official {FAMILIES[family].title} checkpoint'):
            FAMILIES[family].convert(src, str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()
