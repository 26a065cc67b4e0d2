"""Every registered family's example codec through every engine path its declaration enables.

A family that registers gets these for free: stream round trip, saved codecs, L1 pruning of
each component, structured pruning (declared channel groups or the Ballé path), bf16, w8, int8
where it declares int8 units, and the profile's MACs per component.
"""

from __future__ import annotations

import numpy as np
import pytest

import imgcomp
from imgcomp import L1Prune, StructuredPrune
from imgcomp.registry import get_family, list_families

FAMILIES = [name for name in list_families() if get_family(name).example is not None]
_IMG = np.random.default_rng(11).integers(0, 256, (72, 88, 3), dtype=np.uint8)
_IMG = np.repeat(np.repeat(_IMG[::4, ::4], 4, 0), 4, 1)[:72, :88]
_CODECS: dict[str, object] = {}


def _codec(family: str):
    if family not in _CODECS:
        name, params = get_family(family).example
        _CODECS[family] = imgcomp.create_codec(name, **params)
    return _CODECS[family]


def _round_trips(codec) -> None:
    data = codec.encode(_IMG)
    assert np.array_equal(codec.decode(data), codec.reconstruct(_IMG))


def test_every_builtin_family_has_an_example() -> None:
    assert {"balle", "rnn", "hific"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_example_codec_round_trips_and_saves(family: str, tmp_path) -> None:
    codec = _codec(family)
    assert codec.family == family
    data = codec.encode(_IMG)
    assert np.array_equal(codec.decode(data), codec.reconstruct(_IMG))
    with pytest.raises(imgcomp.CodecMismatchError, match="pretrained=False"):
        imgcomp.decode_stream(data)  # a stream never asks for random weights
    back = imgcomp.load_codec(imgcomp.save_codec(codec, tmp_path / "c.safetensors"))
    assert back.fingerprint == codec.fingerprint
    assert np.array_equal(back.decode(data), codec.reconstruct(_IMG))


@pytest.mark.parametrize("family", FAMILIES)
def test_l1_pruning_reaches_each_component(family: str) -> None:
    codec = _codec(family)
    spec = get_family(family)
    for comp in spec.component_names:
        pruned = imgcomp.prune(codec, L1Prune({comp: 0.3}))
        before = imgcomp.profile(codec)[comp]
        after = imgcomp.profile(pruned)[comp]
        if before.parameters:
            assert after.nonzero_parameters < before.nonzero_parameters, comp
        _round_trips(pruned)


@pytest.mark.parametrize("family", FAMILIES)
def test_structured_pruning_shrinks_the_model(family: str) -> None:
    codec = _codec(family)
    spec = get_family(family)
    if spec.channel_groups is None and spec.structured_prune is None:
        with pytest.raises(imgcomp.ImgcompError, match="declares no channel groups"):
            imgcomp.prune(codec, StructuredPrune(dict.fromkeys(spec.table_components, 0.3)))
        return
    comps = spec.table_components
    slim = imgcomp.prune(codec, StructuredPrune(dict.fromkeys(comps, 0.3)))
    assert imgcomp.profile(slim)["total"].parameters < imgcomp.profile(codec)["total"].parameters
    _round_trips(slim)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["bf16", "w8", "int8"])
def test_quantization_modes(family: str, mode: str) -> None:
    codec = _codec(family)
    spec = get_family(family)
    if mode == "int8" and not spec.int8_units:
        with pytest.raises(imgcomp.ImgcompError, match="int8"):
            imgcomp.quantize(codec, mode)
        return
    q = imgcomp.quantize(codec, mode)
    _round_trips(q)


@pytest.mark.parametrize("family", FAMILIES)
def test_profile_counts_macs_per_component(family: str) -> None:
    p = imgcomp.profile(_codec(family), input_hw=(64, 96))
    for comp in get_family(family).component_names:
        c = p[comp]
        if c.parameters and any(t for t in (c.macs,)):
            assert c.macs > 0
    assert p["total"].macs and p["total"].macs > 0


TRAINABLE = [name for name in FAMILIES if get_family(name).training is not None]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory):
    from skimage import data

    from imgcomp.images import save_png

    root = tmp_path_factory.mktemp("contract_train")
    save_png(np.ascontiguousarray(data.astronaut()[::2, ::2]), root / "astronaut.png")
    save_png(np.ascontiguousarray(data.coffee()[:160, :200]), root / "coffee.png")
    return root


def test_every_builtin_family_trains() -> None:
    assert {"balle", "rnn", "hific"} <= set(TRAINABLE)


@pytest.mark.parametrize("family", TRAINABLE)
def test_tiny_model_trains_exports_and_codes(family: str, train_dir, tmp_path) -> None:
    """The family's tiny training example: two steps on its own objective, resumable config,
    export (the family's finalize step included), load and a real stream round trip."""
    from imgcomp.train import TrainConfig, export_weights, read_checkpoint, read_metadata, train

    spec = get_family(family)
    training = spec.training
    assert training.example, f"{family} declares no tiny training example"
    config = TrainConfig(
        family=family,
        model=dict(training.example),
        steps=2,
        batch_size=1,
        patch_size=max(64, training.min_patch),
        data=str(train_dir),
        out=str(tmp_path / "run"),
        progress=False,
    )
    assert config.objective == spec.objective
    state = read_checkpoint(train(config))
    assert state["step"] == 2 and state["finished"]
    path = export_weights(tmp_path / "run", tmp_path / "w.safetensors", half=True)
    assert read_metadata(path)["family"] == family
    codec = imgcomp.create_codec(spec.example[0], checkpoint=path)
    assert codec.family == family
    _round_trips(codec)
