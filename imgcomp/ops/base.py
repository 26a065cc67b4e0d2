"""What every compression op shares: copy the codec's model, change the copy, record the op.

An op never mutates the caller's codec. The new codec keeps the registry name and parameters
but carries the op in ``codec.ops``, which enters the stream fingerprint: a stream written by a
pruned or quantized model refuses to decode with the original one, and vice versa.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.nn.balle import BalleModel
from imgcomp.ops.config import BALLE_COMPONENTS, check_components, check_ratio

COMPONENTS = BALLE_COMPONENTS


def require_learned(codec: object) -> LearnedCodec:
    """The codec as a LearnedCodec, or a clear error (ops need a model to work on)."""
    if not isinstance(codec, LearnedCodec):
        raise ImgcompError(
            f"compression ops apply to learned codecs; {getattr(codec, 'name', codec)!r} is not one"
        )
    return codec


def copy_model(codec: LearnedCodec) -> BalleModel:
    """A deep copy of the codec's model on the CPU, in eval mode, safe to modify."""
    return copy.deepcopy(codec.model).cpu().eval()


def derive(codec: LearnedCodec, model: BalleModel, op: str) -> LearnedCodec:
    """A new codec of ``codec``'s type around ``model`` with ``op`` appended to the ops already
    applied (:meth:`LearnedCodec.derive`: a subclass survives every op)."""
    return codec.derive(model, op)


def check_component(name: str) -> str:
    """Validate a component name (encoder, decoder, entropy)."""
    return check_components((name,), COMPONENTS)[0]


def check_ratios(ratios: object) -> dict[str, float]:
    """Component -> ratio as floats (:func:`check_component`, :func:`check_ratio`): the one
    ratio check of every pruning method."""
    if not isinstance(ratios, Mapping):
        raise ImgcompError(f"ratios must map component names to ratios, got {ratios!r}")
    return {check_component(name): check_ratio(name, r) for name, r in ratios.items()}
