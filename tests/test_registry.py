"""The registry's split (timm's): ``import imgcomp`` loads no codec and no torch; the first
lookup registers the built-in codecs once, from a fresh interpreter too."""

from __future__ import annotations

import json
import subprocess
import sys

import imgcomp.builtin
from imgcomp.registry import BUILTIN_MODULE, list_codecs

CLASSIC = {"avif", "jpeg", "jpeg2000", "webp"}
LEARNED = {"factorized-prior", "mean-scale-hyperprior", "scale-hyperprior"}


def fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON value, returned here."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_imgcomp_loads_no_codec_and_no_torch() -> None:
    loaded = fresh(
        "import json, sys, imgcomp\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('imgcomp', 'torch')))))"
    )
    assert "torch" not in loaded
    assert not [m for m in loaded if m.startswith(("imgcomp.codecs", "imgcomp.zoo", "torch."))]
    assert BUILTIN_MODULE not in loaded, "the built-in codecs register at first lookup, not import"
    assert set(loaded) <= {
        "imgcomp",
        "imgcomp.bitstream",
        "imgcomp.errors",
        "imgcomp.limits",
        "imgcomp.progressive",
        "imgcomp.registry",
        "imgcomp.version",
    }


def test_first_lookup_registers_the_builtin_codecs_in_a_fresh_interpreter() -> None:
    got = fresh(
        "import json, imgcomp\n"
        "codec = imgcomp.create_codec('jpeg', quality=75)\n"
        "print(json.dumps({'names': imgcomp.list_codecs(), 'aliases': imgcomp.list_codecs(True),"
        " 'codec': codec.name, 'params': codec.params}))"
    )
    assert set(got["names"]) >= CLASSIC | LEARNED
    assert {"jpg", "j2k", "jp2", "bmshj2018-factorized", "mbt2018-mean"} <= set(got["aliases"])
    assert got["codec"] == "jpeg" and got["params"] == {"quality": 75}


def test_list_codecs_alone_registers_everything_in_a_fresh_interpreter() -> None:
    names = fresh("import json, imgcomp; print(json.dumps(imgcomp.list_codecs()))")
    assert set(names) >= CLASSIC | LEARNED


def test_builtin_lists_the_modules_it_imports() -> None:
    assert imgcomp.builtin.BUILTIN_MODULES == (
        "imgcomp.codecs.classic",
        "imgcomp.families.balle",
        "imgcomp.families.hific",
        "imgcomp.families.rnn",
        "imgcomp.zoo",
    )
    assert imgcomp.builtin.BUILTIN_FAMILIES == (
        "imgcomp.families.balle",
        "imgcomp.families.hific",
        "imgcomp.families.rnn",
    )
    assert all(m in sys.modules for m in imgcomp.builtin.BUILTIN_MODULES)
    assert set(list_codecs()) >= CLASSIC | LEARNED
