"""The scan's options are declared once (engine/library/options.py): the CLI's flags, the
validation and the settings fallbacks all come from the same Option."""
from __future__ import annotations

import click
import pytest

from engine.errors import UsageError
from engine.library.options import SCAN_OPTIONS, WRITE, resolve
from loupe.library import edit, scan


def test_cli_flags_are_made_from_the_declared_options():
    params = {p.name: p for p in scan.params}
    for opt in SCAN_OPTIONS:
        param = params[opt.name]
        assert opt.cli in param.opts
        if opt.choices:
            assert tuple(param.type.choices) == opt.values()
        if isinstance(param.type, click.IntRange):
            assert (param.type.min, param.type.max) == (opt.minimum, opt.maximum)
    assert tuple({p.name: p for p in edit.params}["write"].type.choices) == WRITE.values()


def test_given_then_setting_then_default_each_checked():
    assert resolve({}, {})["write"] == "sidecar"
    assert resolve({}, {"library_write": "embed"})["write"] == "embed"
    assert resolve({"write": "none"}, {"library_write": "embed"})["write"] == "none"
    assert resolve({}, {"sidecar_style": "lightroom"})["sidecar_style"] == "lightroom"
    with pytest.raises(UsageError, match="Unknown writer 'xmp'; choose sidecar, embed or none"):
        resolve({"write": "xmp"}, {})
    with pytest.raises(UsageError, match="choose sidecar, embed or none"):
        resolve({}, {"library_write": "paper"})  # a bad setting is said, not used
    with pytest.raises(UsageError, match="detailed or quick"):
        resolve({"caption_style": "long"}, {})
