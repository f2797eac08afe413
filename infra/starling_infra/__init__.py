"""Starling's Pulumi program as a package: typed stack config and one component per concern.

`infra/__main__.py` is the entry point Pulumi runs (with `infra/` as the working directory,
so this package imports as `starling_infra`); tests put `infra/` on `sys.path` themselves.
"""
