"""The case type and the learned base cases: what both halves of the matrix build on.

:mod:`bench.cases` (the classic half and the whole matrix) and :mod:`bench.matrix` (the op half)
both import this module and never each other in a circle: ``cases`` imports ``matrix``, and
``matrix`` imports only this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imgcomp.baselines import Tolerance
from imgcomp.codecs.base import Codec
from imgcomp.registry import create_codec

__all__ = [
    "BASELINE_TRAIN_DATA",
    "DEFAULT_BASE",
    "HIFIC_CODEC",
    "MATRICES",
    "RNN_CODEC",
    "RNN_ITERATIONS",
    "Case",
    "codec_case",
    "hific_cases",
    "learned_cases",
    "on_backend",
    "require_shipped",
    "rnn_cases",
]

#: Training data (a spec of :func:`imgcomp.trainsets.load_training_set`) the committed baselines
#: were made with: the offline bundled set, so they reproduce on any machine.
BASELINE_TRAIN_DATA = "bundled"

#: Base case of the default and study matrices (the shipped mean-scale model the study-style
#: table uses).
DEFAULT_BASE = "mbt2018-mean-q3"
MATRICES = ("default", "study", "full")
#: The Toderici RNN codec of the study's Table 1, and the iteration count its table is measured at
#: (3 iterations: 0.375 bpp before entropy coding).
RNN_CODEC = "toderici2017"
RNN_ITERATIONS = 3
#: HiFiC (Mentzer et al. 2020), the study's Table 2: one model ships
#: (``imgcomp/weights/hific.imgw``), so its case id is the codec's name alone.
HIFIC_CODEC = "hific"


@dataclass(frozen=True)
class Case:
    """One row of the matrix: how to build the codec, how strictly to gate it, how to select it.

    ``factory(device, train_data)`` builds the codec; ``train_data`` is the training-data spec
    ops calibrate and fine-tune on. ``default``: part of the default matrix.
    """

    id: str
    family: str
    factory: Callable[[str, str], Codec] = field(compare=False)
    tolerance: Tolerance = field(default_factory=Tolerance)
    quick: bool = False
    slow: bool = False
    default: bool = False

    def build(self, device: str = "cpu", train_data: str = BASELINE_TRAIN_DATA) -> Codec:
        """The case's codec on ``device``, its ops learning from ``train_data``."""
        return self.factory(device, train_data)


def learned_cases() -> list[Case]:
    """Every shipped learned model at every shipped quality (the middle one, rounded down, is
    quick: quality 3, the op matrix's base and the default matrix's learned case)."""
    from imgcomp.zoo import LEARNED, shipped_qualities  # imports torch: only when asked

    cases = []
    for name, alias in LEARNED.items():
        qualities = shipped_qualities(name)
        for q in qualities:
            cases.append(
                Case(
                    id=f"{alias}-q{q}",
                    family=alias,
                    factory=lambda device, train_data, name=name, q=q: create_codec(
                        name, quality=q, device=device
                    ),
                    quick=q == qualities[(len(qualities) - 1) // 2],
                    default=f"{alias}-q{q}" == DEFAULT_BASE,
                )
            )
    return cases


def codec_case(name: str, setting: str, quick: bool = False, **params: object) -> Case:
    """The learned base case of registered codec ``name`` built with ``params`` (any family: the
    registry builds it), id ``<name>-<setting>`` (e.g. ``toderici2017-i3``; the study's tables
    find the model family from the id, :func:`imgcomp.study.case_family`)."""
    case_id = f"{name}-{setting}"
    return Case(
        id=case_id,
        family=name,
        factory=lambda device, train_data: create_codec(name, device=device, **params),
        quick=quick,
    )


def require_shipped(name: str) -> None:
    """Skip the calling test (``pytest.skip``, with the reason) when registered codec ``name``
    has no shipped weights: its family's ``shipped`` lookup says which file is missing. Called
    by a case's factory, so the matrix lists the case (ids, plans, ``--case``) whether or not
    the weights are there, and only building it skips."""
    import pytest

    from imgcomp.errors import ImgcompError
    from imgcomp.registry import codec_family, get_family

    try:
        get_family(codec_family(name)).shipped(name, 0)
    except ImgcompError as exc:
        pytest.skip(f"{name}'s cases need its shipped weights: {exc}")


def hific_cases(quick: bool = False) -> list[Case]:
    """HiFiC on its shipped weights (``imgcomp/weights/hific.imgw``): ``hific``, the
    codec's name alone (one model ships; :func:`imgcomp.study.case_family` reads it as family
    hific). Building it skips the test (:func:`require_shipped`) while the weights are absent;
    :func:`bench.matrix.matrix_op_cases` gives its Table 2 / structured cases."""

    def factory(device: str, train_data: str) -> Codec:
        require_shipped(HIFIC_CODEC)
        return create_codec(HIFIC_CODEC, device=device)

    return [Case(id=HIFIC_CODEC, family=HIFIC_CODEC, factory=factory, quick=quick)]


def rnn_cases(iterations: tuple[int, ...] = (RNN_ITERATIONS,), quick: bool = False) -> list[Case]:
    """The Toderici RNN on its shipped weights (``imgcomp/weights/toderici2017.imgw``) at
    each iteration count: ``toderici2017-i3`` (in the study and full matrices);
    :func:`bench.matrix.study_op_cases` gives a base's Table 1 / extended cases."""
    return [codec_case(RNN_CODEC, f"i{n}", quick=quick, iterations=n) for n in iterations]


#: The backend learned codecs run on unless ``--backend`` says otherwise.
TORCH = "torch"


def float_case_id(case_id: str) -> str | None:
    """The id of the float (possibly pruned) case an int8 case quantizes, or None when
    ``case_id`` is no int8 case: ``<base>/prune=P/quant=int8`` -> ``<base>/prune=P/quant=none``
    (``<base>`` when P is none)."""
    head, sep, quant = case_id.rpartition("/quant=")
    if not sep or quant != "int8":
        return None
    return (
        head.removesuffix("/prune=none") if head.endswith("/prune=none") else f"{head}/quant=none"
    )


def on_backend(
    case: Case,
    backend: str,
    torch_codec: Callable[[Case], Codec],
    find: Callable[[str], Case],
    train_data: str = BASELINE_TRAIN_DATA,
) -> Codec:
    """The codec of ``case`` with its transforms on ``backend`` (``--backend``): the case's
    torch codec converted (:func:`imgcomp.backends.to_backend`), except that an int8 case is
    its float case (``find(id)``) quantized by the backend itself, calibrated on
    ``train_data``'s crops; classic codecs as they are. Skips (``pytest.skip``, with the
    reason) what the backend cannot run: bf16 cases, families it cannot export."""
    import pytest

    from imgcomp.backends import to_backend
    from imgcomp.codecs.learned import LearnedCodec
    from imgcomp.errors import ImgcompError
    from imgcomp.ops.quant.calibration import calibration_images

    if case.id.endswith("/quant=bf16"):
        pytest.skip(f"{case.id}: bf16 is torch's; {backend} runs float32 and its own int8")
    float_id = float_case_id(case.id)
    source = torch_codec(find(float_id) if float_id else case)
    if not isinstance(source, LearnedCodec):
        return source  # a classic codec has no transforms to move
    try:
        if float_id is None:
            return to_backend(source, backend)
        crops = calibration_images(data_dir=train_data)
        return to_backend(source, backend, int8=True, calibration=crops)
    except ImgcompError as exc:
        pytest.skip(f"{case.id} does not run on {backend}: {exc}")
