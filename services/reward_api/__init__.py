"""The RLRF reward service: score SVG rollouts against a reference, safely and fast.

Entry points: ``pipeline.Pipeline`` (library), ``cli`` (the ``rlrf`` command).
"""
