_base_ = './refiner-vit-m_8xb128_in1k.py'

# Evaluated with crop ratio 1.0 as M (the released default config of L has
# 1.13: a 198 resize and a padded 224 crop).
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.25), head=dict(in_channels=512))
