"""Case ids and codec names as the report groups them.

A benchmark case id is ``<base>[/prune=<tag>/quant=<tag>]`` and a base is ``<codec>-<setting>``
(``jpeg-q75``, ``mbt2018-mean-q3``, ``toderici2017-i3``) or a codec alone (``hific``). ``imgcomp
eval`` and ``imgcomp study`` files name the codec by its registry name
(``mean-scale-hyperprior``) and its setting by parameters (``{"quality": 3}``); the report keys
codecs by the registry's canonical name so that both meet, and labels them as case ids spell
them where a case id named them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = ["CodecNames", "setting_of", "short_ops", "split_base", "split_case_id", "split_ops"]

#: The setting suffix of a base id (as :func:`imgcomp.study.case_family` strips it).
_SETTING = re.compile(r"-([a-z]+[0-9][0-9.]*)$")
#: Codec parameters a setting suffix spells, with their case-id prefixes.
_SETTING_PARAMS = (("quality", "q"), ("iterations", "i"), ("bpp", "bpp"))
#: Parameters that do not change what a codec computes.
_IGNORED_PARAMS = ("device",)
#: The unmodified configuration's label (a study's first row).
UNMODIFIED = "prune=none/quant=none"


def split_case_id(case_id: str) -> tuple[str, str | None]:
    """(base, ops) of a case id: ``jpeg-q75`` -> (jpeg-q75, None), ``b/prune=x/quant=y`` ->
    (b, ``prune=x/quant=y``)."""
    base, _, ops = case_id.partition("/")
    return base, ops or None


def split_base(base: str) -> tuple[str, str | None]:
    """(codec, setting) of a base id: ``mbt2018-mean-q3`` -> (mbt2018-mean, q3), ``hific`` ->
    (hific, None)."""
    match = _SETTING.search(base)
    return (base[: match.start()], match.group(1)) if match else (base, None)


def setting_of(params: Mapping[str, Any]) -> str | None:
    """The case-id setting of codec parameters (``{"quality": 3}`` -> ``q3``); parameters a
    suffix does not spell follow in brackets (``q3 [pretrained=False]``); None for none."""
    parts = []
    for key, prefix in _SETTING_PARAMS:
        if key in params:
            value = params[key]
            parts.append(f"{prefix}{value:g}" if isinstance(value, float) else f"{prefix}{value}")
    rest = {
        k: v
        for k, v in sorted(params.items())
        if k not in _IGNORED_PARAMS and k not in dict(_SETTING_PARAMS)
    }
    text = "-".join(parts)
    if rest:
        text += (" " if text else "") + "[" + ", ".join(f"{k}={v}" for k, v in rest.items()) + "]"
    return text or None


def split_ops(ops: str) -> tuple[str, str]:
    """(prune tag, quant tag) of an op configuration: ``prune=enc0.3,dec0,ent0:l1/quant=int8``
    -> (``enc0.3,dec0,ent0:l1``, ``int8``)."""
    prune, _, quant = ops.removeprefix("prune=").partition("/quant=")
    return prune, quant


def short_ops(ops: str) -> str:
    """A compact label of an op configuration for figure annotations:
    ``prune=enc0.3,dec0,ent0:l1/quant=int8`` -> ``enc0.3,dec0,ent0:l1 + int8``."""
    prune, quant = split_ops(ops)
    parts = [p for p in (prune, quant) if p and p != "none"]
    return " + ".join(parts) or "unmodified"


@cache
def _canonical(name: str) -> str:
    """The registry's canonical name of ``name`` (itself when the registry does not know it)."""
    from imgcomp.errors import ImgcompError
    from imgcomp.registry import canonical_name

    try:
        return canonical_name(name)
    except (ImgcompError, KeyError):
        return name


class CodecNames:
    """Codec keys (canonical names) and the label each shows: the first case-id spelling seen,
    else the first spelling seen at all."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}
        self._from_case: set[str] = set()

    def key(self, name: str, from_case_id: bool = False) -> str:
        """The key of codec ``name``; ``from_case_id``: spelled as the suite's case ids spell it."""
        key = _canonical(name)
        if key not in self._labels or (from_case_id and key not in self._from_case):
            self._labels[key] = name
            if from_case_id:
                self._from_case.add(key)
        return key

    def label(self, key: str) -> str:
        """How the codec of ``key`` is shown."""
        return self._labels.get(key, key)

    def base_label(self, key: str, setting: str | None) -> str:
        """A base case as the suite's ids write it: ``<codec label>-<setting>``."""
        label = self.label(key)
        if not setting:
            return label
        return f"{label}-{setting}" if not setting.startswith("[") else f"{label} {setting}"
