"""The family seam: the Ballé family's declaration is complete and matches its models, every
shipped codec's model finds its family, and a family defined here (a toy model the engines have
never seen) gets a working codec and ops without any engine edit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import imgcomp
from imgcomp.codecs.latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError, UnknownCodecError
from imgcomp.families import family_of, find_family, get_family, list_families
from imgcomp.families.balle import BALLE
from imgcomp.families.balle.model import ARCHITECTURES, FactorizedPrior, build_model
from imgcomp.families.spec import Component, FamilySpec, Padding
from imgcomp.nn.density import FactorizedDensity
from imgcomp.ops import L1Prune
from imgcomp.ops.pruning import sparsity
from imgcomp.registry import register_family, unregister_family
from imgcomp.zoo import LEARNED, shipped_qualities


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)


# -- the Ballé family ----------------------------------------------------------------------------
def test_balle_is_registered_and_found_by_name() -> None:
    assert "balle" in list_families()
    assert get_family("balle") is BALLE
    with pytest.raises(UnknownCodecError, match="unknown model family"):
        get_family("no-such-family")


def test_balle_components_in_table_order_with_the_study_display_names() -> None:
    assert BALLE.component_names == ("encoder", "decoder", "entropy")
    assert [c.display for c in BALLE.components.values()] == [
        "encoder",
        "decoder",
        "probability model",
    ]
    assert BALLE.objective == "rd"
    assert BALLE.checkpoint_formats == ("imgcomp", "compressai")
    assert set(BALLE.architectures) == set(ARCHITECTURES) == set(LEARNED.values())


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_balle_component_modules_are_the_models_components(arch: str) -> None:
    """Each component's prefixes select exactly the modules the model lists for that role."""
    model = BALLE.architectures[arch](N=8, M=8)
    named = dict(model.named_modules())
    for role, component in BALLE.components.items():
        found = [named[p] for p in component.modules if p in named]
        assert [id(m) for m in found] == [id(m) for m in model.components[role]], role


def test_every_balle_module_prefix_exists_in_some_architecture() -> None:
    names = set()
    for arch in ARCHITECTURES:
        names |= dict(build_model(arch, 8, 8).named_modules()).keys()
    for component in BALLE.components.values():
        assert set(component.modules) <= names, component.name


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_balle_latent_and_padding_are_as_before(arch: str) -> None:
    model = build_model(arch, 8, 8)
    latent = BALLE.latent(model)
    expected = FactorizedLatent if isinstance(model, FactorizedPrior) else HyperpriorLatent
    assert type(latent) is expected and latent.stride == 16
    assert BALLE.padding(model) == Padding(model.downsampling_factor, "replicate")
    codec = LearnedCodec(model, "x")
    assert type(codec.latent) is expected
    assert (codec.pad_multiple, codec.pad_mode) == (model.downsampling_factor, "replicate")
    assert codec.family == "balle"


@pytest.mark.parametrize("name", [n for n in sorted(LEARNED) if shipped_qualities(n)])
def test_family_of_every_shipped_codec(name: str) -> None:
    quality = shipped_qualities(name)[0]
    codec = imgcomp.create_codec(name, quality=quality)
    assert family_of(codec.model) is BALLE
    assert BALLE.shipped(name, quality).is_file()


def test_family_of_survives_the_ops() -> None:
    codec = imgcomp.create_codec("bmshj2018-factorized", pretrained=False, N=8, M=8)
    for op in (imgcomp.prune(codec, encoder=0.3), imgcomp.quantize(codec, "w8")):
        assert family_of(op.model) is BALLE and op.family == "balle"


def test_a_model_of_no_family() -> None:
    with pytest.raises(UnknownCodecError, match="no registered model family"):
        family_of(nn.Conv2d(1, 1, 1))
    assert find_family(nn.Conv2d(1, 1, 1)) is None
    with pytest.raises(ImgcompError, match="pass latent="):
        LearnedCodec(nn.Conv2d(1, 1, 1), "x")


def test_spec_types_check_themselves() -> None:
    with pytest.raises(ValueError, match="module prefixes"):
        Component("encoder", "encoder", ())
    with pytest.raises(ValueError, match="padding mode"):
        Padding(8, "wrap")
    with pytest.raises(ValueError, match="positive"):
        Padding(0)
    with pytest.raises(ValueError, match="listed under"):
        _toy_spec(components={"a": Component("b", "b", ("x",))})


# -- a family the engines have never seen --------------------------------------------------------
class ToyModel(nn.Module):
    """Two strided convolutions, their mirror and a factorized prior: a family of its own."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.analysis_net = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(8, channels, 5, 4, 2)
        )
        self.synthesis_net = nn.Sequential(
            nn.ConvTranspose2d(channels, 8, 4, stride=4),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 3, 2, stride=2),
        )
        self.prior = FactorizedDensity(channels)

    @property
    def config(self) -> dict[str, object]:
        return {"arch": "toy"}

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return self.analysis_net(x)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.synthesis_net(y_hat)


def _toy_spec(**changes: object) -> FamilySpec:
    fields: dict[str, object] = {
        "name": "toy",
        "components": {
            "analysis": Component("analysis", "analysis transform", ("analysis_net",)),
            "synthesis": Component("synthesis", "synthesis transform", ("synthesis_net",)),
            "prior": Component("prior", "prior", ("prior",)),
        },
        "model_types": (ToyModel,),
        "latent": lambda m: FactorizedLatent(m.prior, stride=8),
        "padding": lambda m: Padding(8, "reflect"),
        "objective": "rd",
        "checkpoint_formats": ("imgcomp",),
        "architectures": {"toy": ToyModel},
        "shipped": lambda name, quality: Path("/nonexistent"),
        "quant_units": {"analysis": ("analysis_net",), "synthesis": ("synthesis_net",)},
    }
    return FamilySpec(**(fields | changes))  # type: ignore[arg-type]


@pytest.fixture
def toy_codec() -> Iterator[LearnedCodec]:
    register_family(_toy_spec())
    try:
        torch.manual_seed(0)
        yield LearnedCodec(ToyModel(), "toy")
    finally:
        unregister_family("toy")


def test_toy_family_codec_round_trip(toy_codec: LearnedCodec, photo: np.ndarray) -> None:
    assert toy_codec.family == "toy" and family_of(toy_codec.model).name == "toy"
    assert isinstance(toy_codec.latent, LatentCodec)
    assert (toy_codec.pad_multiple, toy_codec.pad_mode) == (8, "reflect")
    data = toy_codec.encode(photo)
    assert toy_codec.encode(photo) == data
    assert np.array_equal(toy_codec.decode(data), toy_codec.reconstruct(photo))


def test_toy_family_l1_prune(toy_codec: LearnedCodec, photo: np.ndarray) -> None:
    pruned = imgcomp.prune(toy_codec, L1Prune({"analysis": 0.5, "synthesis": 0.25}))
    assert pruned.ops == ("prune=ana0.5,syn0.25,pri0:l1-layer",)
    assert type(pruned) is LearnedCodec and pruned.family == "toy"
    got = sparsity(pruned.model)
    assert set(got) == {"analysis", "synthesis", "prior", "total"}
    assert got["analysis"] == pytest.approx(0.5, abs=0.01)
    assert got["synthesis"] == pytest.approx(0.25, abs=0.01)
    assert got["prior"] == 0.0
    assert pruned.fingerprint != toy_codec.fingerprint
    assert np.array_equal(pruned.decode(pruned.encode(photo)), pruned.reconstruct(photo))
    with pytest.raises(ImgcompError, match="unknown component 'encoder'"):
        imgcomp.prune(toy_codec, L1Prune({"encoder": 0.3}))
    with pytest.raises(ImgcompError, match="unknown component 'encoder'"):
        imgcomp.prune(toy_codec, encoder=0.3)


@pytest.mark.parametrize("mode", ["w8", "bf16"])
def test_toy_family_quantize(toy_codec: LearnedCodec, photo: np.ndarray, mode: str) -> None:
    """bf16 and wK replace the family's quantization units; the prior stays float32."""
    q = imgcomp.quantize(toy_codec, mode)
    assert q.ops == (f"quantize:{mode}:analysis+synthesis+prior",)
    assert q.family == "toy" and q.fingerprint != toy_codec.fingerprint
    assert {layer.name.split(".")[0] for layer in q.op_report.layers} == {
        "analysis_net",
        "synthesis_net",
    }
    assert all(p.dtype == torch.float32 for p in q.model.prior.parameters())
    assert np.array_equal(q.decode(q.encode(photo)), q.reconstruct(photo))
    part = imgcomp.quantize(toy_codec, mode, components=("synthesis",))
    assert part.ops == (f"quantize:{mode}:synthesis",)
    before, after = toy_codec.model.analysis_net, part.model.analysis_net
    assert type(after) is nn.Sequential  # an unselected unit stays as it was
    pairs = zip(before.parameters(), after.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    with pytest.raises(ImgcompError, match="unknown component 'decoder'"):
        imgcomp.quantize(toy_codec, mode, components=("decoder",))


def test_toy_family_int8_is_a_clear_error(toy_codec: LearnedCodec) -> None:
    with pytest.raises(ImgcompError, match="int8 needs the family to declare its int8 units"):
        imgcomp.quantize(toy_codec, "int8", calibration=[np.zeros((32, 32, 3), np.uint8)])


def test_quant_units_are_checked() -> None:
    with pytest.raises(ValueError, match="no component"):
        _toy_spec(quant_units={"decoder": ("synthesis_net",)})
    with pytest.raises(ValueError, match="lie in no quantization unit"):
        _toy_spec(int8_units=("prior",))
    assert BALLE.int8_units == ("g_a", "g_s", "h_a", "h_s")
