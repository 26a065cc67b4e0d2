"""The family seam: the Ballé family's declaration is complete and matches its models, every
shipped codec's model finds its family, and a family defined here (a toy model the engines have
never seen) gets a working codec and ops without any engine edit."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import imgcomp
from imgcomp import StructuredPrune
from imgcomp.codecs.latent import FactorizedLatent, HyperpriorLatent, LatentCodec
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import ImgcompError, UnknownCodecError
from imgcomp.evaluate import evaluate, summarize
from imgcomp.families import family_of, find_family, get_family, list_families
from imgcomp.families.balle import BALLE
from imgcomp.families.balle.model import ARCHITECTURES, FactorizedPrior, build_model
from imgcomp.families.spec import ChannelSlice, Component, FamilySpec, Padding, PrunableGroup
from imgcomp.nn.density import FactorizedDensity
from imgcomp.ops import L1Prune
from imgcomp.ops.pruning import sparsity
from imgcomp.registry import (
    codec_family,
    list_codecs,
    register_codec,
    register_family,
    unregister_codec,
    unregister_family,
)
from imgcomp.study import (
    StudyConfig,
    case_family,
    format_study_table,
    get_grid,
    parse_case_id,
    rows_to_json,
    run_study,
)
from imgcomp.train import (
    LOG_NAME,
    TrainConfig,
    TrainFamily,
    export_weights,
    load_weights,
    read_checkpoint,
    read_metadata,
    train,
)
from imgcomp.train.objectives import psnr_from_mse
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
    """Two strided convolutions, their mirror and a factorized prior: a family of its own.

    ``hidden`` are the widths between analysis_net's and synthesis_net's two layers (what the
    rich toy family's structured pruning cuts), ``channels`` the latent width."""

    downsampling_factor: ClassVar[int] = 8

    def __init__(self, channels: int = 4, hidden: Sequence[int] = (8, 8)) -> None:
        super().__init__()
        a, s = (int(h) for h in hidden)
        self.analysis_net = nn.Sequential(
            nn.Conv2d(3, a, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(a, channels, 5, 4, 2)
        )
        self.synthesis_net = nn.Sequential(
            nn.ConvTranspose2d(channels, s, 4, stride=4),
            nn.ReLU(),
            nn.ConvTranspose2d(s, 3, 2, stride=2),
        )
        self.prior = FactorizedDensity(channels)
        self.channels, self.hidden = int(channels), (a, s)

    @property
    def config(self) -> dict[str, object]:
        return {"channels": self.channels, "hidden": list(self.hidden)}

    @property
    def components(self) -> dict[str, list[nn.Module]]:
        return {
            "analysis": [self.analysis_net],
            "synthesis": [self.synthesis_net],
            "prior": [self.prior],
        }

    def main_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "prior.quantiles"]

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.prior.quantiles]

    def aux_loss(self) -> torch.Tensor:
        return self.prior.aux_loss()

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
    with pytest.raises(ValueError, match="coding components"):
        _toy_spec(coding_components=("hyper",))
    assert BALLE.coding_components == ("entropy",)  # the ONNX backend runs h_a / h_s on 1 thread


# -- the toy family with every declaration: int8, channel groups, MACs, training, study ----------
#: The rich toy family's codec name (registered with the family, inside the fixture only).
TOY_CODEC = "toy"
TOY_HW = (24, 32)


@dataclass(frozen=True)
class ToyRD:
    """``toy-rd``: lmbda * 255^2 * MSE + bpp under the prior; the toy family's own objective."""

    name: ClassVar[str] = "toy-rd"
    progress_keys: ClassVar[tuple[str, ...]] = ("bpp",)
    #: the lmbda of every forward pass run (what training and recovery ran the objective with)
    calls: ClassVar[list[float]] = []

    lmbda: float = 0.01

    def forward(self, model: nn.Module, x: torch.Tensor, amp: bool = False) -> dict[str, Any]:
        ToyRD.calls.append(self.lmbda)
        y_tilde = model.prior.quantize(model.analysis(x), noise=True)
        return {"x_hat": model.synthesis(y_tilde), "likelihood": model.prior.likelihood(y_tilde)}

    def loss(
        self, x: torch.Tensor, out: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, _, h, w = x.shape
        mse = torch.mean((out["x_hat"] - x) ** 2)
        bpp = -torch.log2(out["likelihood"]).sum() / (b * h * w)
        return self.lmbda * 255.0**2 * mse + bpp, {"mse": mse, "bpp": bpp}

    def derived(self, means: Mapping[str, float]) -> dict[str, float]:
        return {"psnr": psnr_from_mse(means["mse"])}


def _toy_train_args(args: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(args) - {"channels", "hidden"})
    if unknown:
        raise ValueError(f"unknown toy model arguments: {unknown}")
    return {"channels": int(args.get("channels", 4)), "hidden": list(args.get("hidden", [8, 8]))}


def _toy_build(args: Mapping[str, Any]) -> nn.Module:
    return ToyModel(args["channels"], args["hidden"])


TOY_TRAINING = TrainFamily(
    name="toy",
    normalize=_toy_train_args,
    build=_toy_build,
    multiple=lambda a: 8,
    defaults={"batch_size": 2, "patch_size": 16, "lr": 1e-3},
    example={"channels": 4, "hidden": [6, 6]},
)


def _conv_out(conv: str, transposed: bool = False) -> list[ChannelSlice]:
    return [ChannelSlice(f"{conv}.weight", 1 if transposed else 0), ChannelSlice(f"{conv}.bias", 0)]


def _toy_channel_groups(model: nn.Module) -> list[PrunableGroup]:
    """The hidden widths of each transform, and the latent (owned by all three components: its
    channels are analysis_net.2's outputs, synthesis_net.0's inputs and the prior's rows)."""
    a, s = model.hidden
    prior = model.prior
    densities = [
        ChannelSlice(f"prior.{kind}.{k}", 0)
        for kind, n in (("matrices", prior.matrices), ("biases", prior.biases))
        for k in range(len(n))
    ]
    densities += [ChannelSlice(f"prior.factors.{k}", 0) for k in range(len(prior.factors))]
    return [
        PrunableGroup(
            "analysis_net.0",
            ("analysis",),
            a,
            (*_conv_out("analysis_net.0"), ChannelSlice("analysis_net.2.weight", 1)),
        ),
        PrunableGroup(
            "synthesis_net.0",
            ("synthesis",),
            s,
            (*_conv_out("synthesis_net.0", True), ChannelSlice("synthesis_net.2.weight", 0)),
        ),
        PrunableGroup(
            "latent",
            ("analysis", "synthesis", "prior"),
            model.channels,
            (
                *_conv_out("analysis_net.2"),
                ChannelSlice("synthesis_net.0.weight", 0),
                *densities,
                ChannelSlice("prior.quantiles", 0),
            ),
        ),
    ]


def _toy_after_resize(model: nn.Module) -> None:
    model.hidden = (model.analysis_net[0].out_channels, model.synthesis_net[0].out_channels)
    model.channels = model.prior.channels = model.analysis_net[2].out_channels


def _toy_coding_pass(model: nn.Module, x: torch.Tensor, params: Mapping[str, Any]) -> object:
    return model.synthesis(model.prior.quantize(model.analysis(x), noise=False))


def _no_shipped(name: str, quality: int) -> Path:
    raise ImgcompError(f"no shipped weights for {name}")


def _rich_spec(**changes: object) -> FamilySpec:
    """The toy family with every declaration the engines read (in the test alone)."""
    fields: dict[str, object] = {
        "shipped": _no_shipped,
        "objective": ToyRD.name,
        "objectives": {ToyRD.name: ToyRD},
        "training": TOY_TRAINING,
        "int8_units": ("analysis_net", "synthesis_net"),
        "int8_float_layers": {"analysis_net": {"last": "writes the latents"}},
        "macs_chain": (("analysis_net", "x", "y"), ("synthesis_net", "y", None)),
        "coding_pass": _toy_coding_pass,
        "channel_groups": _toy_channel_groups,
        "after_resize": _toy_after_resize,
        "rebuild": lambda config: ToyModel(**config),
        "recovery": {"batch_size": 2, "patch_size": 16, "lr": 1e-3},
        "study_components": ("analysis", "synthesis"),
        "example": (TOY_CODEC, {"channels": 4}),
    }
    return _toy_spec(**(fields | changes))


def _toy_factory(
    checkpoint: str | None = None,
    format: str = "imgcomp",
    pretrained: bool = False,
    channels: int = 4,
    hidden: str = "8,8",
    seed: int = 0,
    device: str = "cpu",
) -> LearnedCodec:
    """The toy codec: on exported weights (ours), or seeded random ones (none ship)."""
    if checkpoint is not None:
        assert format == "imgcomp"
        params = {"checkpoint": checkpoint}
        return LearnedCodec(load_weights(checkpoint), TOY_CODEC, params, device=device)
    if pretrained:
        _no_shipped(TOY_CODEC, 0)
    torch.manual_seed(seed)
    model = ToyModel(channels, [int(h) for h in hidden.split(",")])
    params = {"pretrained": False, "channels": channels, "hidden": hidden, "seed": seed}
    return LearnedCodec(model, TOY_CODEC, params, device=device)


@pytest.fixture
def toy_family() -> Iterator[FamilySpec]:
    """The rich toy family and its codec, registered for the test only."""
    spec = register_family(_rich_spec())
    register_codec(TOY_CODEC, family="toy")(_toy_factory)
    ToyRD.calls.clear()
    try:
        yield spec
    finally:
        unregister_codec(TOY_CODEC)
        unregister_family("toy")
    assert TOY_CODEC not in list_codecs() and "toy" not in list_families()


@pytest.fixture
def rich_codec(toy_family: FamilySpec) -> LearnedCodec:
    return imgcomp.create_codec(TOY_CODEC, channels=4)


@pytest.fixture(scope="module")
def small_images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (*TOY_HW, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory, small_images) -> Path:
    """Two small PNGs (never Kodak): the toy's training, recovery and calibration data."""
    root = tmp_path_factory.mktemp("toy_train")
    for i, img in enumerate(small_images):
        Image.fromarray(img).save(root / f"toy{i}.png")
    return root


def _round_trips(codec: LearnedCodec, img: np.ndarray) -> bytes:
    data = codec.encode(img)
    assert codec.encode(img) == data
    assert np.array_equal(codec.decode(data), codec.reconstruct(img))
    return data


def _train_toy(data: Path, out: Path, lmbda: float, **model: object) -> Path:
    """Two training steps of the toy family on ``data``, exported to ``out/toy.safetensors``."""
    config = TrainConfig(
        family="toy",
        model=dict(model),
        objective_args={"lmbda": lmbda},
        steps=2,
        data=str(data),
        out=str(out / "run"),
        progress=False,
        log_every=1,
    )
    return export_weights(train(config), out / "toy.safetensors")


def _same_decode(a: LearnedCodec, b: LearnedCodec, img: np.ndarray) -> None:
    data = a.encode(img)
    assert b.fingerprint == a.fingerprint and b.encode(img) == data
    assert np.array_equal(b.decode(data), a.decode(data))


def test_toy_codec_is_registered_with_its_family(
    rich_codec: LearnedCodec, small_images: list[np.ndarray]
) -> None:
    assert codec_family(TOY_CODEC) == "toy" and rich_codec.family == "toy"
    assert rich_codec.params == {"pretrained": False, "channels": 4, "hidden": "8,8", "seed": 0}
    data = _round_trips(rich_codec, small_images[0])
    with pytest.raises(imgcomp.CodecMismatchError, match="may choose: none"):
        imgcomp.decode_stream(data)
    with pytest.raises(ImgcompError, match="no shipped weights for toy"):
        imgcomp.create_codec(TOY_CODEC, pretrained=True)


def test_toy_family_int8(
    rich_codec: LearnedCodec, small_images: list[np.ndarray], tmp_path: Path
) -> None:
    """int8 replaces the declared int8 units (calibrated on the coding pass), keeps the declared
    float layer on float32 activations and the prior float32; streams round trip, and the saved
    codec rebuilds by replaying int8."""
    from imgcomp.ops.quant.int8 import Int8Transform

    q = imgcomp.quantize(rich_codec, "int8", calibration=small_images)
    assert q.ops == ("quantize:int8:analysis+synthesis+prior",)
    assert q.family == "toy" and q.fingerprint != rich_codec.fingerprint
    assert type(q.model.analysis_net) is Int8Transform
    assert type(q.model.synthesis_net) is Int8Transform
    assert type(q.model.prior) is FactorizedDensity
    assert all(p.dtype == torch.float32 for p in q.model.prior.parameters())
    report = q.op_report
    assert report.mode == "int8" and report.engine in ("x86", "fbgemm")
    layers = {layer.name: layer for layer in report.layers}
    convs = {"analysis_net.0", "analysis_net.2", "synthesis_net.0", "synthesis_net.2"}
    assert convs <= set(layers) and {n.split(".")[0] for n in layers} == {
        "analysis_net",
        "synthesis_net",
    }
    for name in convs - {"analysis_net.2"}:
        assert (layers[name].weights, layers[name].compute) == ("int8", "int8"), name
        assert layers[name].quantized, name
    latent = layers["analysis_net.2"]  # int8_float_layers: the unit's last conv
    assert (latent.weights, latent.compute) == ("int8", "float32")
    assert "writes the latents" in latent.detail
    assert "sub-pixel" in layers["synthesis_net.0"].detail
    assert report.bytes_after < report.bytes_before
    for img in small_images:
        _round_trips(q, img)
    back = imgcomp.load_codec(imgcomp.save_codec(q, tmp_path / "int8.safetensors"))
    assert back.ops == q.ops and type(back.model.synthesis_net) is Int8Transform
    _same_decode(q, back, small_images[0])


def test_toy_family_structured_pruning_by_channel_groups(
    rich_codec: LearnedCodec, small_images: list[np.ndarray], tmp_path: Path
) -> None:
    """The declared groups are cut (each slice along its dim, the largest-L1 units kept), the
    family's after_resize updates the widths, and a saved pruned codec rebuilds from its config
    (the family's rebuild): same decode, also after int8 on top."""
    img = small_images[0]
    before = rich_codec.model
    slim = imgcomp.prune(rich_codec, StructuredPrune({"analysis": 0.5, "synthesis": 0.25}))
    assert slim.ops == ("prune=ana0.5,syn0.25,pri0:structured-l1",)
    m = slim.model
    assert m.hidden == (4, 6) and m.channels == 4
    assert m.config == {"channels": 4, "hidden": [4, 6]}
    assert before.hidden == (8, 8) and before.analysis_net[0].weight.shape[0] == 8  # untouched
    assert m.analysis_net[0].weight.shape == (4, 3, 5, 5) and m.analysis_net[0].bias.shape == (4,)
    assert m.analysis_net[2].weight.shape == (4, 4, 5, 5)
    assert m.synthesis_net[0].weight.shape == (4, 6, 4, 4)
    assert m.synthesis_net[0].bias.shape == (6,)
    assert m.synthesis_net[2].weight.shape == (6, 3, 2, 2)
    assert (m.analysis_net[2].in_channels, m.synthesis_net[0].out_channels) == (4, 6)
    report = slim.op_report
    # the latent is owned by all three components: the prior is not selected, so it stays
    assert [(g.root, g.channels_before, g.channels_after) for g in report.groups] == [
        ("analysis_net.0", 8, 4),
        ("synthesis_net.0", 8, 6),
    ]
    a_kept = [u for u in range(8) if u not in report.groups[0].removed]
    s_kept = [u for u in range(8) if u not in report.groups[1].removed]
    ref, got = before.analysis_net, m.analysis_net
    assert torch.equal(got[0].weight, ref[0].weight[a_kept])
    assert torch.equal(got[0].bias, ref[0].bias[a_kept])
    assert torch.equal(got[2].weight, ref[2].weight[:, a_kept])
    ref, got = before.synthesis_net, m.synthesis_net
    assert torch.equal(got[0].weight, ref[0].weight[:, s_kept])
    assert torch.equal(got[2].weight, ref[2].weight[s_kept])
    w0, b0, w2 = (t.detach() for t in (ref[0].weight, ref[0].bias, ref[2].weight))
    norms = [float(w0[:, u].abs().sum() + b0[u].abs() + w2[u].abs().sum()) for u in range(8)]
    assert min(norms[u] for u in s_kept) >= max(norms[u] for u in report.groups[1].removed)
    assert report.params_after < report.params_before
    assert report.config_after == {"channels": 4, "hidden": [4, 6]}
    _round_trips(slim, img)
    back = imgcomp.load_codec(imgcomp.save_codec(slim, tmp_path / "slim.safetensors"))
    assert back.model.hidden == (4, 6) and back.ops == slim.ops
    _same_decode(slim, back, img)

    # all three selected: the coupled latent goes too, at the smallest of their ratios
    thin = imgcomp.prune(
        rich_codec, StructuredPrune({"analysis": 0.5, "synthesis": 0.5, "prior": 0.25})
    )
    t = thin.model
    assert (t.hidden, t.channels, t.prior.channels) == ((4, 4), 3, 3)
    assert t.analysis_net[2].weight.shape == (3, 4, 5, 5)
    assert t.synthesis_net[0].weight.shape == (3, 4, 4, 4)
    assert t.prior.quantiles.shape == (3, 1, 3) and t.prior.matrices[0].shape[0] == 3
    assert [g.root for g in thin.op_report.groups] == [
        "analysis_net.0",
        "synthesis_net.0",
        "latent",
    ]
    assert thin.op_report.groups[2].ratio == 0.25
    _round_trips(thin, img)
    _same_decode(
        thin, imgcomp.load_codec(imgcomp.save_codec(thin, tmp_path / "t.safetensors")), img
    )

    # structured, then int8: the saved codec rebuilds the pruned widths, then replays int8
    fast = imgcomp.quantize(slim, "int8", calibration=small_images)
    assert fast.ops == (*slim.ops, "quantize:int8:analysis+synthesis+prior")
    _round_trips(fast, img)
    _same_decode(
        fast, imgcomp.load_codec(imgcomp.save_codec(fast, tmp_path / "f.safetensors")), img
    )


def _analysis_macs(a: int, c: int) -> int:
    """MACs of analysis_net on a 24x32 image: 3->a at 12x16 (5x5), a->c at 3x4 (5x5)."""
    return 12 * 16 * a * 3 * 25 + 3 * 4 * c * a * 25


def _synthesis_macs(c: int, s: int) -> int:
    """MACs of synthesis_net from 3x4 latents: c->s (4x4 stride 4), s->3 at 12x16 (2x2)."""
    return 3 * 4 * c * s * 16 + 12 * 16 * s * 3 * 4


def test_toy_family_profile(
    rich_codec: LearnedCodec, small_images: list[np.ndarray], toy_family: FamilySpec
) -> None:
    """Parameters and MACs per toy component (its MACs chain; its coding pass agrees); pruning
    shows in both, int8 keeps both."""
    p = imgcomp.profile(rich_codec, input_hw=TOY_HW)
    assert [c.name for c in p.components] == ["analysis", "synthesis", "prior"]
    for comp, modules in rich_codec.model.components.items():
        assert p[comp].parameters == sum(x.numel() for m in modules for x in m.parameters())
    assert p["total"].parameters == sum(x.numel() for x in rich_codec.model.parameters())
    assert p["analysis"].macs == _analysis_macs(8, 4) > 0
    assert p["synthesis"].macs == _synthesis_macs(4, 8) > 0
    assert p["prior"].macs == 0  # no MACs chain module: densities are not counted
    assert p["total"].macs == p["analysis"].macs + p["synthesis"].macs
    assert p.module_macs == {
        "analysis_net": p["analysis"].macs,
        "synthesis_net": p["synthesis"].macs,
    }
    assert "meta" in p.macs_method

    slim = imgcomp.prune(rich_codec, StructuredPrune({"analysis": 0.5, "synthesis": 0.25}))
    ps = imgcomp.profile(slim, input_hw=TOY_HW)
    assert ps["analysis"].macs == _analysis_macs(4, 4) < p["analysis"].macs
    assert ps["synthesis"].macs == _synthesis_macs(4, 6) < p["synthesis"].macs
    assert ps["total"].macs < p["total"].macs
    assert ps["total"].parameters < p["total"].parameters
    assert ps["prior"].parameters == p["prior"].parameters

    q = imgcomp.profile(
        imgcomp.quantize(rich_codec, "int8", calibration=small_images[:1]), input_hw=TOY_HW
    )
    for comp in ("analysis", "synthesis"):
        assert q[comp].macs == p[comp].macs, comp  # packed convs: the float layers' MACs
        assert q[comp].serialized_bytes < p[comp].serialized_bytes, comp
    # (parameter counts are not compared: the profile counts a sub-pixel rewrite's repeated
    # biases and misses the bias buffer of a layer on float activations)

    # a family that declares its coding pass alone: the same MACs, by hooks on the components
    unregister_family("toy")
    register_family(_rich_spec(macs_chain=()))
    by_pass = imgcomp.profile(rich_codec, input_hw=TOY_HW)
    assert by_pass["analysis"].macs == p["analysis"].macs
    assert by_pass["synthesis"].macs == p["synthesis"].macs


def test_toy_family_trains_exports_and_loads(
    toy_family: FamilySpec, train_dir: Path, tmp_path: Path, small_images: list[np.ndarray]
) -> None:
    """imgcomp.train runs the family's TrainFamily (its recipe as defaults) under its own
    objective; export writes its arguments; load_weights and the codec rebuild the model."""
    config = TrainConfig(family="toy", model={"hidden": [6, 6]}, data=str(train_dir), steps=2)
    assert config.objective == "toy-rd" and config.objective_args == {"lmbda": 0.01}
    assert (config.batch_size, config.patch_size, config.lr) == (2, 16, 1e-3)
    assert config.model == {"channels": 4, "hidden": [6, 6]}
    with pytest.raises(ValueError, match="unknown toy model arguments"):
        TrainConfig(family="toy", model={"width": 2})
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(family="toy", patch_size=12)

    out = _train_toy(train_dir, tmp_path, 0.05, hidden=[6, 6])
    assert ToyRD.calls == [0.05, 0.05]  # two steps, each one forward of the toy objective
    state = read_checkpoint(tmp_path / "run")
    assert state["step"] == 2 and state["finished"] and state["aux_optimizer"]
    assert state["config"].model == {"channels": 4, "hidden": [6, 6]}
    logs = [json.loads(x) for x in (tmp_path / "run" / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2]
    assert all({"loss", "mse", "bpp", "psnr", "aux"} <= set(r) for r in logs)
    torch.manual_seed(0)
    fresh = ToyModel(4, (6, 6)).state_dict()
    assert not all(torch.equal(v, state["model"][k]) for k, v in fresh.items())  # it trained

    meta = read_metadata(out)
    assert (meta["family"], meta["objective"], meta["lmbda"]) == ("toy", "toy-rd", "0.05")
    assert meta["hidden"] == "[6, 6]" and meta["steps"] == "2"
    model = load_weights(out)
    assert type(model) is ToyModel and model.hidden == (6, 6) and not model.training
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    codec = imgcomp.load_codec(TOY_CODEC, out)
    assert codec.family == "toy" and codec.params == {"checkpoint": str(out)}
    assert codec.model.hidden == (6, 6)
    _round_trips(codec, small_images[0])


def test_toy_family_structured_recovery(
    rich_codec: LearnedCodec, train_dir: Path, tmp_path: Path, small_images: list[np.ndarray]
) -> None:
    """recover_steps fine-tunes with the family's objective, on its recovery settings, with the
    objective arguments of the weights the codec was built from (their metadata)."""
    ratios = {"analysis": 0.5, "synthesis": 0.25}
    rng = torch.get_rng_state()
    slim = imgcomp.prune(rich_codec, StructuredPrune(ratios, recover_steps=2), data=str(train_dir))
    assert ToyRD.calls == [0.01, 0.01]  # random weights: the objective's defaults
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    assert slim.ops == ("prune=ana0.5,syn0.25,pri0:structured-l1:recover2",)
    plain = imgcomp.prune(rich_codec, StructuredPrune(ratios))
    assert slim.model.hidden == plain.model.hidden == (4, 6)
    assert not torch.equal(slim.model.analysis_net[0].weight, plain.model.analysis_net[0].weight)
    assert not slim.model.training
    assert not torch.equal(slim.model.prior.quantiles, plain.model.prior.quantiles)  # refitted
    _round_trips(slim, small_images[0])

    trained = imgcomp.load_codec(TOY_CODEC, _train_toy(train_dir, tmp_path, 0.05))
    ToyRD.calls.clear()
    again = imgcomp.prune(trained, StructuredPrune(ratios, recover_steps=2), data=str(train_dir))
    assert ToyRD.calls == [0.05, 0.05]  # the lmbda the weights were trained with
    _round_trips(again, small_images[0])


def test_toy_family_study(rich_codec: LearnedCodec, small_images: list[np.ndarray]) -> None:
    """The study's grid of the toy family crosses its study_components, and its table's ratio
    columns carry the components' display names."""
    grid = get_grid("study", family="toy")
    assert [c.label for c in grid] == [
        "prune=none/quant=none",
        "prune=ana0,syn0.3,pri0:l1/quant=none",
        "prune=ana0.3,syn0,pri0:l1/quant=none",
        "prune=ana0.3,syn0.3,pri0:l1/quant=none",
    ]
    configs = [*grid, StudyConfig(quant="w8", family="toy")]
    rows = run_study(rich_codec, configs, [("toy0", small_images[0])], repeats=1, warmup=0)
    assert [r.label for r in rows] == [c.label for c in configs]
    assert all(r.family == "toy" and r.images == 1 and r.avg_bytes > 0 for r in rows)
    assert all(r.macs is not None and r.macs > 0 for r in rows)
    assert rows[3].nonzero_parameters < rows[1].nonzero_parameters < rows[0].nonzero_parameters
    assert rows[0].parameters == sum(x.numel() for x in rich_codec.model.parameters())
    markdown = format_study_table(rows, style="markdown")
    heads = [h.strip() for h in markdown.splitlines()[0].strip("| ").split(" | ")]
    assert heads[:4] == [
        "Analysis transform pruning ratio",
        "Synthesis transform pruning ratio",
        "Method",
        "Quantization",
    ]
    assert format_study_table(rows).splitlines()[0].split()[:3] == ["ana", "syn", "method"]
    assert list(rows_to_json(rows)[2])[:4] == ["label", "analysis", "synthesis", "prior"]
    assert rows_to_json(rows)[2]["analysis"] == 0.3
    with pytest.raises(ImgcompError, match="take the grid of its family"):
        run_study(rich_codec, [StudyConfig(encoder=0.3)], [("toy0", small_images[0])])


def test_toy_family_bench_cases(
    toy_family: FamilySpec,
    train_dir: Path,
    small_images: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    study_table_lines,
) -> None:
    """A bench base case of the toy codec, its op cases (ids the study reads back with the
    family), built and evaluated through real bytes as the quality gate does, and the bench's
    study table of their summaries."""
    from bench import matrix
    from bench.case import codec_case

    monkeypatch.setattr(matrix, "_PRUNED", {})  # the matrix's shared pruned codecs: this test's
    base = codec_case(TOY_CODEC, "c4", quick=True, channels=4)
    assert (base.id, base.family, case_family(base.id)) == ("toy-c4", TOY_CODEC, "toy")
    table = matrix.study_op_cases(base, "study")
    ratios = ["ana0,syn0.3,pri0:l1", "ana0.3,syn0,pri0:l1", "ana0.3,syn0.3,pri0:l1"]
    assert [c.id for c in table] == [f"toy-c4/prune={r}/quant=none" for r in ratios]
    extended = matrix.matrix_op_cases(base)
    structured = "toy-c4/prune=ana0.3,syn0.3,pri0:structured"
    assert [c.id for c in extended] == [
        *(c.id for c in table),
        f"{structured}/quant=none",
        "toy-c4/prune=none/quant=bf16",
        "toy-c4/prune=none/quant=int8",
        f"{structured}/quant=int8",
    ]
    for case in extended:
        family, config = parse_case_id(case.id)
        assert family == base.id and config.family == "toy"
        assert case.id == f"{family}/{config.label}" and case.family == base.id
    assert parse_case_id(base.id)[1] == StudyConfig(family="toy")

    images = [(f"toy{i}", img) for i, img in enumerate(small_images)]
    int8 = extended[5]
    summaries = {}
    for case in (base, table[2], int8):
        codec = case.build("cpu", str(train_dir))  # int8 calibrates on the training data
        results = evaluate(codec, images, verify=True)
        assert [r.image for r in results] == ["toy0", "toy1"] and all(r.bytes > 0 for r in results)
        summaries[case.id] = {"case": case.id, "images": len(results), **summarize(results)}
    assert table[2].build("cpu", str(train_dir)).ops == ("prune=ana0.3,syn0.3,pri0:l1-layer",)
    assert int8.build("cpu", str(train_dir)).ops == ("quantize:int8:analysis+synthesis+prior",)

    lines = study_table_lines(summaries)
    assert lines[1].startswith("toy-c4 (2 images")
    assert lines[2].split()[:4] == ["ana", "syn", "method", "quant"]
    assert len(lines) == 2 + 2 + 3  # section, title, head, rule, one row per case
    assert [line.split()[:2] for line in lines[4:]] == [["0", "0"], ["0.3", "0.3"], ["0", "0"]]


def test_int8_float_layers_by_position_or_name() -> None:
    from imgcomp.ops.quant.int8 import float_layers

    unit = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 3))
    assert float_layers(unit, {"2": "middle", "last": "end"}) == {"2": "middle", "3": "end"}
    assert float_layers(unit, {"first": "start"}) == {"0": "start"}
    with pytest.raises(ImgcompError, match="no convolutions"):
        float_layers(unit, {"1": "a ReLU"})
    with pytest.raises(ValueError, match="layer names"):
        _rich_spec(int8_float_layers={"analysis_net": {"": "nothing"}})
