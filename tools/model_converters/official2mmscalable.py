# Copyright (c) mmscalable contributors. All rights reserved.
"""Convert an official checkpoint to an mmpretrain classifier checkpoint.

``python tools/model_converters/official2mmscalable.py FAMILY SRC DST
[--ema | --no-ema]``; ``--help`` says what the output is for and lists the
families of :data:`mmscalable.models.families.FAMILIES`. The per-family scripts
(``scalablevit2mmscalable.py SRC DST``, ...) call :func:`main` with their
family.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.append(osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
import env_check  # noqa: E402,F401  (first: names a missing package)
import torch  # noqa: E402

from mmscalable.compat import quiet_third_party_deprecations  # noqa: E402
from mmscalable.models.families import FAMILIES, get_family  # noqa: E402

DESCRIPTION = """\
Convert an official checkpoint to an mmpretrain classifier checkpoint.

The output holds the whole mmpretrain ImageClassifier of the family's
classification configs (configs/FAMILY/*_in1k*.py; keys backbone.* and
head.*). With it those configs give the official model's logits
(mmpretrain.get_model(cfg, pretrained=DST)), and the detection and
segmentation configs load its backbone with
init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')."""

EXAMPLES = """\
examples:
  python tools/model_converters/official2mmscalable.py scalablevit \\
      scalable_vit_small.pth checkpoints/scalablevit-s_in1k.pth
  python tools/model_converters/official2mmscalable.py groupmixformer \\
      groupmixformer_small.pth checkpoints/groupmixformer-s_in1k.pth
  python tools/model_converters/official2mmscalable.py refiner \\
      Refiner_ViT_L_448.pth.tar checkpoints/refiner-vit-l_in1k-448px.pth"""


def _families_help() -> str:
    lines = ['families (where the official checkpoints are linked):']
    for family in FAMILIES.values():
        lines.append(f'  {family.name:<16}{family.title}: '
                     f'{family.checkpoint_page}')
        if family.ema_key:
            lines.append(f'  {"":<16}the EMA weights (`{family.ema_key}`) '
                         'where a checkpoint has them; --no-ema for the '
                         'trained ones')
    return '\n'.join(lines)


def build_parser(family: Optional[str] = None,
                 prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line: ``FAMILY SRC DST [--ema | --no-ema]``, or ``SRC
    DST`` (with those options where the family has EMA weights) for a script
    fixed to one ``family``."""
    if family is None:
        epilog = f'{_families_help()}\n\n{EXAMPLES}'
        with_ema = any(f.ema_key for f in FAMILIES.values())
    else:
        with_ema = get_family(family).ema_key is not None
        epilog = (f'the same as: official2mmscalable.py {family} SRC DST' +
                  (' [--ema | --no-ema]' if with_ema else ''))
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    if family is None:
        parser.add_argument(
            'family', choices=list(FAMILIES), help='the backbone family')
    parser.add_argument('src', help='official checkpoint path')
    parser.add_argument('dst', help='output path (its folder is created)')
    if with_ema:
        weights = parser.add_mutually_exclusive_group()
        weights.add_argument(
            '--ema',
            dest='ema',
            action='store_const',
            const=True,
            default=None,
            help='require the EMA weights (without --ema or --no-ema: the '
            'EMA weights where the checkpoint has them, as the official '
            'figures were measured, else the trained ones)')
        weights.add_argument(
            '--no-ema',
            dest='ema',
            action='store_const',
            const=False,
            help='convert the trained weights, not their EMA')
    return parser


def main(argv: Optional[Sequence[str]] = None,
         family: Optional[str] = None,
         prog: Optional[str] = None) -> None:
    """Run the converter.

    Args:
        argv (Sequence[str], optional): Arguments; None for ``sys.argv``.
        family (str, optional): Fix the family (the per-family scripts);
            None to take it from the first argument.
        prog (str, optional): Program name in the usage line.
    """
    parser = build_parser(family, prog)
    args = parser.parse_args(argv)
    spec = get_family(family or args.family)
    ema = getattr(args, 'ema', None)
    if ema and spec.ema_key is None:
        parser.error(f'--ema: official {spec.title} checkpoints carry no EMA '
                     'weights')
    try:
        spec.convert(args.src, args.dst, ema=ema)
    except (FileNotFoundError, ValueError) as error:
        parser.exit(1, f'{parser.prog}: error: {error}\n')
    converted = torch.load(args.dst, map_location='cpu', weights_only=True)
    container = converted['meta'].get('container')
    weights = f' ({container})' if container else ''
    print(f'Converted {len(converted["state_dict"])} tensors{weights} from '
          f'{args.src} to {args.dst}')
    print(f'Next: the classification configs configs/{spec.name}/*_in1k*.py '
          f'evaluate it (python tools/test.py CONFIG {args.dst}); the '
          'detection and segmentation configs start their backbone from '
          f'checkpoints/{spec.model_prefix}-<variant>_in1k.pth (see '
          'docs/model_zoo.md), or from this file with --cfg-options '
          f'model.backbone.init_cfg.checkpoint={args.dst}')


if __name__ == '__main__':
    quiet_third_party_deprecations()
    main()
