# Copyright (c) mmscalable contributors. All rights reserved.
"""What the package measures of its models: speed (the benchmark), FLOPs
against the papers, and whole task models to time."""
