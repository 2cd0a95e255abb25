# Copyright (c) mmscalable contributors. All rights reserved.
"""Key conversion between official checkpoints and mmscalable models.

Each family has a table of ``(official_prefix, mmscalable_prefix)`` pairs in
which ``{i}``, ``{j}`` stand for integer indices. A key is renamed by the
first pair whose prefix matches it; the rest of the key is kept. The same
table converts both ways, which keeps the round trip exact and testable.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Pattern, Sequence, Tuple

from torch import Tensor

KeyRules = Sequence[Tuple[str, str]]

# Official ScalableViT (Yangr116/ScalableViT) -> mmpretrain ImageClassifier
# with a ScalableViT backbone and ScalableViTClsHead.
SCALABLEVIT_KEY_RULES: KeyRules = (
    ('patch_embeds.{i}.proj.', 'backbone.stages.{i}.patch_embed.projection.'),
    ('patch_embeds.{i}.norm.', 'backbone.stages.{i}.patch_embed.norm.'),
    ('pos_block.{i}.proj.0.', 'backbone.stages.{i}.pos_conv.proj.'),
    ('stages.{i}.{j}.mlp.fc1.',
     'backbone.stages.{i}.blocks.{j}.ffn.layers.0.0.'),
    ('stages.{i}.{j}.mlp.fc2.',
     'backbone.stages.{i}.blocks.{j}.ffn.layers.1.'),
    ('stages.{i}.{j}.attn.lim_func.',
     'backbone.stages.{i}.blocks.{j}.attn.local_interaction.'),
    ('stages.{i}.{j}.attn.reduction.0.',
     'backbone.stages.{i}.blocks.{j}.attn.spatial_reduction.'),
    ('stages.{i}.{j}.attn.reduction.1.',
     'backbone.stages.{i}.blocks.{j}.attn.channel_projection.'),
    ('stages.{i}.{j}.attn.norm_act.0.',
     'backbone.stages.{i}.blocks.{j}.attn.norm.'),
    # norm1, norm2 and attn.{qkv,q,k,v,kv,proj} keep their names.
    ('stages.{i}.{j}.', 'backbone.stages.{i}.blocks.{j}.'),
    ('norm.', 'backbone.norm3.'),
    ('head.0.', 'head.hidden_fc.'),
    ('head.1.', 'head.hidden_norm.'),
    ('head.3.', 'head.fc.'),
    # The released "plain head" variant has a single Linear.
    ('head.', 'head.fc.'),
)


def _compile(prefix: str) -> Tuple[Pattern, List[str]]:
    names = re.findall(r'\{(\w+)\}', prefix)
    pattern = re.escape(prefix)
    for name in names:
        pattern = pattern.replace(re.escape('{%s}' % name), r'(\d+)', 1)
    return re.compile('^' + pattern), names


def convert_keys(state_dict: Mapping[str, Tensor],
                 rules: KeyRules,
                 reverse: bool = False,
                 source: str = 'checkpoint') -> Dict[str, Tensor]:
    """Rename every key of ``state_dict`` by the first matching rule.

    Args:
        state_dict (Mapping[str, Tensor]): The weights to rename.
        rules (Sequence[tuple[str, str]]): ``(official, mmscalable)`` prefix
            pairs.
        reverse (bool): Convert mmscalable keys to official ones.
            Defaults to False.
        source (str): How to name the weights in errors.

    Returns:
        OrderedDict: The renamed weights (same tensors).

    Raises:
        KeyError: If a key matches no rule; its name is in the message.
    """
    compiled = []
    for official, ours in rules:
        src, dst = (ours, official) if reverse else (official, ours)
        pattern, names = _compile(src)
        compiled.append((pattern, names, dst))
    converted = OrderedDict()
    for key, value in state_dict.items():
        for pattern, names, dst in compiled:
            match = pattern.match(key)
            if match:
                new_prefix = dst.format(**dict(zip(names, match.groups())))
                converted[new_prefix + key[match.end():]] = value
                break
        else:
            raise KeyError(f'{source}: key {key!r} matches no known '
                           f'{"mmscalable" if reverse else "official"} '
                           'key pattern')
    return converted


def scalablevit_official_to_mmcls(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Official ScalableViT weights to an mmpretrain classifier's keys."""
    return convert_keys(
        state_dict, SCALABLEVIT_KEY_RULES, source='ScalableViT checkpoint')


def scalablevit_mmcls_to_official(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """mmpretrain classifier keys back to the official ScalableViT keys."""
    return convert_keys(
        state_dict,
        SCALABLEVIT_KEY_RULES,
        reverse=True,
        source='mmscalable ScalableViT checkpoint')


def is_official_scalablevit(state_dict: Mapping[str, Tensor]) -> bool:
    return any(k.startswith('patch_embeds.') for k in state_dict)


# Official GroupMixFormer (AILab-CVC/GroupMixFormer) -> mmpretrain
# ImageClassifier with a GroupMixFormer backbone (final_norm=True) and a
# LinearClsHead.
_GMA = 'groupmixformer_backbone.{i}.gma_stage.{j}.'
_BLOCK = 'backbone.stages.{i}.blocks.{j}.'
GROUPMIXFORMER_KEY_RULES: KeyRules = (
    ('conv_stem.proj1.', 'backbone.stem.0.conv.'),
    ('conv_stem.norm1.', 'backbone.stem.0.bn.'),
    ('conv_stem.proj2.', 'backbone.stem.1.conv.'),
    ('conv_stem.norm2.', 'backbone.stem.1.bn.'),
    ('patch_embed_layers.{i}.proj.conv1.',
     'backbone.stages.{i}.patch_embed.depthwise_conv.conv.'),
    ('patch_embed_layers.{i}.proj.pointwise_conv.',
     'backbone.stages.{i}.patch_embed.pointwise_conv.conv.'),
    ('patch_embed_layers.{i}.norm.',
     'backbone.stages.{i}.patch_embed.pointwise_conv.bn.'),
    (_GMA + 'cpe.proj.', _BLOCK + 'pos_conv.proj.'),
    (_GMA + 'att.aggregator.norm0.', _BLOCK + 'attn.token_norm.'),
    *((_GMA + f'att.aggregator.agg{k + 1}.conv1.',
       _BLOCK + f'attn.proxy_aggregators.{k}.depthwise_conv.conv.')
      for k in range(3)),
    *((_GMA + f'att.aggregator.agg{k + 1}.pointwise_conv.',
       _BLOCK + f'attn.proxy_aggregators.{k}.pointwise_conv.conv.')
      for k in range(3)),
    *((_GMA + f'att.aggregator.norm{k + 1}.',
       _BLOCK + f'attn.proxy_aggregators.{k}.pointwise_conv.bn.')
      for k in range(3)),
    (_GMA + 'att.aggregator.agg0.conv.conv1.',
     _BLOCK + 'attn.local_aggregator.depthwise_conv.conv.'),
    (_GMA + 'att.aggregator.agg0.conv.pointwise_conv.',
     _BLOCK + 'attn.local_aggregator.pointwise_conv.conv.'),
    (_GMA + 'att.aggregator.agg0.norm.', _BLOCK + 'attn.local_norm.'),
    (_GMA + 'att.crpe.conv_list.', _BLOCK + 'attn.crpe.convs.'),
    (_GMA + 'att.', _BLOCK + 'attn.'),  # qkv, proj
    (_GMA + 'mlp.fc1.', _BLOCK + 'ffn.layers.0.0.'),
    (_GMA + 'mlp.fc2.', _BLOCK + 'ffn.layers.1.'),
    (_GMA, _BLOCK),  # norm1, norm2
    ('norm4.', 'backbone.norm3.'),
    ('head.', 'head.fc.'),
)


def groupmixformer_official_to_mmcls(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Official GroupMixFormer weights to an mmpretrain classifier's keys."""
    return convert_keys(
        state_dict,
        GROUPMIXFORMER_KEY_RULES,
        source='GroupMixFormer checkpoint')


def groupmixformer_mmcls_to_official(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """mmpretrain classifier keys back to the official GroupMixFormer keys."""
    return convert_keys(
        state_dict,
        GROUPMIXFORMER_KEY_RULES,
        reverse=True,
        source='mmscalable GroupMixFormer checkpoint')


def is_official_groupmixformer(state_dict: Mapping[str, Tensor]) -> bool:
    return any(k.startswith('conv_stem.') for k in state_dict)


# Official Refiner-ViT (zhoudaquan/Refiner_ViT) -> mmpretrain ImageClassifier
# with a RefinerViT backbone and RefinerClsHead. The official blocks name
# their value projection `attn.qkv` in refiner blocks too; those (odd blocks)
# become `attn.v` after the table (see refiner_official_to_mmcls).
_REFINER_BLOCK = 'backbone.blocks.{i}.'
REFINER_KEY_RULES: KeyRules = (
    *((f'patch_embed.conv{k + 1}.', f'backbone.stem.{k}.conv.')
      for k in range(3)),
    *((f'patch_embed.bn{k + 1}.', f'backbone.stem.{k}.bn.') for k in range(3)),
    ('patch_embed.proj.', 'backbone.patch_projection.'),
    ('cls_token', 'backbone.cls_token'),
    ('pos_embed', 'backbone.pos_embed'),
    ('blocks.{i}.attn.DLA.conv_exp.',
     _REFINER_BLOCK + 'attn.refinement.layers.0.conv.'),
    ('blocks.{i}.attn.DLA.bn1.',
     _REFINER_BLOCK + 'attn.refinement.layers.0.bn.'),
    ('blocks.{i}.attn.DLA.depth_sep_conv.',
     _REFINER_BLOCK + 'attn.refinement.layers.1.conv.'),
    ('blocks.{i}.attn.DLA.bn2.',
     _REFINER_BLOCK + 'attn.refinement.layers.1.bn.'),
    ('blocks.{i}.attn.DLA.conv_pro.',
     _REFINER_BLOCK + 'attn.refinement.layers.2.conv.'),
    ('blocks.{i}.attn.DLA.bn3.',
     _REFINER_BLOCK + 'attn.refinement.layers.2.bn.'),
    ('blocks.{i}.attn.adapt_bn.', _REFINER_BLOCK + 'attn.refined_norm.'),
    ('blocks.{i}.attn.qkv.', _REFINER_BLOCK + 'attn.qkv.'),
    # Reverse direction only: refiner blocks' value projection.
    ('blocks.{i}.attn.qkv.', _REFINER_BLOCK + 'attn.v.'),
    ('blocks.{i}.mlp.fc1.', _REFINER_BLOCK + 'ffn.layers.0.0.'),
    ('blocks.{i}.mlp.fc2.', _REFINER_BLOCK + 'ffn.layers.1.'),
    ('blocks.{i}.mlp.scale_channel', _REFINER_BLOCK + 'ffn.gamma2.weight'),
    ('blocks.{i}.', _REFINER_BLOCK),  # norm1, norm2, attn.proj
    ('norm.', 'backbone.norm.'),
    ('aux_head.', 'head.aux_fc.'),
    ('head.', 'head.fc.'),
)


def refiner_official_to_mmcls(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Official Refiner-ViT weights to an mmpretrain classifier's keys."""
    converted = convert_keys(
        state_dict, REFINER_KEY_RULES, source='Refiner-ViT checkpoint')
    # Odd blocks are refiner blocks: their `qkv` is the value projection.
    pattern = re.compile(r'^backbone\.blocks\.(\d+)\.attn\.qkv\.')
    renamed = OrderedDict()
    for key, value in converted.items():
        match = pattern.match(key)
        if match and int(match.group(1)) % 2 == 1:
            key = key.replace('.attn.qkv.', '.attn.v.', 1)
        renamed[key] = value
    return renamed


def refiner_mmcls_to_official(
        state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """mmpretrain classifier keys back to the official Refiner-ViT keys."""
    return convert_keys(
        state_dict,
        REFINER_KEY_RULES,
        reverse=True,
        source='mmscalable Refiner-ViT checkpoint')


def is_official_refiner(state_dict: Mapping[str, Tensor]) -> bool:
    return any(k.startswith('patch_embed.conv1.') for k in state_dict)
