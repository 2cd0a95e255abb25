# Copyright (c) mmscalable contributors. All rights reserved.
"""``python -m mmscalable.ops``: print what the compiled extension holds."""
from .ext_loader import ext_info

print(ext_info())
