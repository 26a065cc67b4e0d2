"""What every compression op shares: copy the codec's model, change the copy, record the op.

An op never mutates the caller's codec. The new codec keeps the registry name and parameters
but carries the op in ``codec.ops``, which enters the stream fingerprint: a stream written by a
pruned or quantized model refuses to decode with the original one, and vice versa.

A model's components (names and modules) are its family's declaration
(:func:`imgcomp.registry.family_of`); :data:`COMPONENTS` are the Ballé family's, the default of
the ratio checks below (every engine passes its model's family's own).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from torch import nn

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError
from imgcomp.ops.config import BALLE_COMPONENTS, check_components, check_ratio
from imgcomp.registry import family_of

#: The Ballé family's components (the default of :func:`check_ratios`).
COMPONENTS = BALLE_COMPONENTS


def require_learned(codec: object) -> LearnedCodec:
    """The codec as a LearnedCodec, or a clear error (ops need a model to work on)."""
    if not isinstance(codec, LearnedCodec):
        raise ImgcompError(
            f"compression ops apply to learned codecs; {getattr(codec, 'name', codec)!r} is not one"
        )
    return codec


def component_names(model: nn.Module) -> tuple[str, ...]:
    """The component names of ``model``'s family, in table order (what op configs are keyed by)."""
    return family_of(model).component_names


def component_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Component name -> the model's modules its family names for it (prefixes it lacks skipped:
    a factorized prior has no hyper transforms), in the family's order."""
    named = dict(model.named_modules())
    return {
        name: [named[prefix] for prefix in component.modules if prefix in named]
        for name, component in family_of(model).components.items()
    }


def copy_model(codec: LearnedCodec) -> nn.Module:
    """A deep copy of the codec's model on the CPU, in eval mode, safe to modify."""
    return copy.deepcopy(codec.model).cpu().eval()


def replace_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` in place of the submodule of ``root`` called ``name`` (qualified)."""
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent), attr, module)


def derive(codec: LearnedCodec, model: nn.Module, op: str) -> LearnedCodec:
    """A new codec of ``codec``'s type around ``model`` with ``op`` appended to the ops already
    applied (:meth:`LearnedCodec.derive`: a subclass survives every op)."""
    return codec.derive(model, op)


def check_component(name: str, components: Sequence[str] = COMPONENTS) -> str:
    """Validate a component name (one of ``components``: the Ballé ones by default)."""
    return check_components((name,), components)[0]


def check_ratios(ratios: object, components: Sequence[str] = COMPONENTS) -> dict[str, float]:
    """Component -> ratio as floats (:func:`check_component`, :func:`check_ratio`): the one
    ratio check of every pruning method."""
    if not isinstance(ratios, Mapping):
        raise ImgcompError(f"ratios must map component names to ratios, got {ratios!r}")
    return {check_component(name, components): check_ratio(name, r) for name, r in ratios.items()}
