"""The op variants a family's decode gates time, and their side-by-side decode timing."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import pytest
import torch

from bench.case import Case
from bench.matrix import _family_quant, _prune, op_case
from imgcomp.nn.determinism import single_cpu_thread
from imgcomp.study import StudyConfig, structured_config
from imgcomp.timing import time_side_by_side


def family_variants(base: Case, family: str) -> dict[str, Case]:
    """``base`` as float32 and with the family's study ops: structured (the study's
    configuration), bf16 and int8 over every component."""
    return {
        "float32": base,
        "structured": op_case(base, _prune(structured_config(family)), None),
        "bf16": op_case(base, None, _family_quant(StudyConfig(quant="bf16", family=family))),
        "int8": op_case(base, None, _family_quant(StudyConfig(quant="int8", family=family))),
    }


def decode_side_by_side(
    variants: Mapping[str, Case], codec_for: Callable, timing_images, rounds: int
):
    """Decode times of every variant's streams of the timing images, interleaved, on one
    thread (the float32 base is built first, so a missing model skips at once)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("side-by-side timings need the machine to themselves; run with -n 0")
    codecs = {name: codec_for(case) for name, case in variants.items()}
    images = [img for _, img in timing_images]
    streams = {name: [c.encode(img) for img in images] for name, c in codecs.items()}
    with single_cpu_thread(torch.device("cpu")):
        return time_side_by_side(
            {n: [lambda c=codecs[n], s=s: c.decode(s) for s in streams[n]] for n in codecs},
            rounds,
        )
