"""Latent codecs (imgcomp.codecs.latent): exact round trips, hostile sections, options, the
binary codec's prefix property, and a LearnedCodec subclass that survives every op."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imgcomp
from imgcomp.codecs.latent import (
    BinaryLatent,
    FactorizedLatent,
    HyperpriorLatent,
    LatentCodec,
    quantize_values,
)
from imgcomp.codecs.learned import LearnedCodec
from imgcomp.errors import BitstreamError, CodecMismatchError
from imgcomp.families.balle import balle_latent
from imgcomp.families.balle.model import build_model
from imgcomp.nn.density import FactorizedDensity, GaussianConditional

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CPU = torch.device("cpu")


def _model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, N=8, M=12).eval()


def _latents(channels: int, h: int, w: int, seed: int, scale: float = 4.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, h, w, generator=g) * scale


def _codec(kind: str, seed: int = 0, **options: object) -> tuple[LatentCodec, int]:
    """A latent codec over a small random Ballé model, and y's channel count."""
    if kind == "factorized":
        model = _model("bmshj2018-factorized", seed)
        return FactorizedLatent(model.y_prior, **options), model.M  # type: ignore[arg-type]
    model = _model("mbt2018-mean" if kind == "mean-scale" else "bmshj2018-hyperprior", seed)
    latent = HyperpriorLatent(
        model.hyper_analysis,
        model.z_prior,
        model.entropy_parameters,
        model.y_conditional,
        **options,  # type: ignore[arg-type]
    )
    return latent, model.M


KINDS = ["factorized", "scale", "mean-scale"]


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(seed=st.integers(0, 2**16), h=st.integers(1, 3), w=st.integers(1, 3))
def test_round_trip_equals_the_quantized_latents(kind: str, seed: int, h: int, w: int) -> None:
    latent, m = _codec(kind)
    y = _latents(m, 4 * h, 4 * w, seed)
    with torch.inference_mode():
        sections = latent.encode(y)
        decoded = latent.decode(sections, (4 * h, 4 * w), CPU)
        assert torch.equal(decoded, latent.quantize(y).latents)
    assert len(sections) == (1 if kind == "factorized" else 3)


@pytest.mark.parametrize(
    "options",
    [
        {"rounding": "floor_half"},
        {"z_offset": "zero"},
        {"mean_offset": False},
        {"rounding": "floor_half", "z_offset": "zero", "mean_offset": True},  # HiFiC's
    ],
)
@pytest.mark.parametrize("kind", ["scale", "mean-scale"])
def test_hyperprior_options_round_trip(kind: str, options: dict[str, object]) -> None:
    latent, m = _codec(kind, **options)
    y = _latents(m, 8, 12, seed=7)
    with torch.inference_mode():
        decoded = latent.decode(latent.encode(y), (8, 12), CPU)
        q = latent.quantize(y)
    assert torch.equal(decoded, q.latents)
    assert len(q.likelihoods) == 2 and all(bool((p > 0).all()) for p in q.likelihoods)


@pytest.mark.parametrize("hw", [(5, 7), (2, 1), (8, 8)])
def test_pad_y_codes_the_padded_latents(hw: tuple[int, int]) -> None:
    """HiFiC's layout: y padded to a multiple of 4 (reflect) is coded; decode gives it back."""
    latent, m = _codec("mean-scale", pad_y=True, rounding="floor_half", z_offset="zero")
    y = _latents(m, *hw, seed=9)
    with torch.inference_mode():
        q = latent.quantize(y)
        decoded = latent.decode(latent.encode(y), hw, CPU)
    padded = tuple(-(-n // 4) * 4 for n in hw)
    assert q.latents.shape[-2:] == padded and torch.equal(decoded, q.latents)
    if padded != hw:  # a decoder without the option sees entropy parameters of another size
        unpadded, _ = _codec("mean-scale", rounding="floor_half", z_offset="zero")
        with pytest.raises(BitstreamError, match="entropy parameters of"):
            unpadded.decode(latent.encode(y), hw, CPU)


def test_mean_offset_false_puts_y_hat_on_the_integer_grid() -> None:
    latent, m = _codec("mean-scale", mean_offset=False)
    with torch.inference_mode():
        y_hat = latent.quantize(_latents(m, 8, 8, seed=3)).latents
    assert torch.equal(y_hat, torch.round(y_hat))


def test_factorized_latent_matches_the_model_quantization() -> None:
    model = _model("bmshj2018-factorized")
    x = torch.rand(1, 3, 64, 48)
    with torch.inference_mode():
        lat = model.quantize_latents(x)
        q = balle_latent(model).quantize(lat["y"])
    assert torch.equal(q.latents, lat["y_hat"])
    assert torch.equal(q.likelihoods[0], lat["y_likelihoods"])


# -- rounding options --------------------------------------------------------------------------
def test_floor_half_differs_from_round_exactly_at_halves() -> None:
    v = torch.arange(-40, 41, dtype=torch.float32) / 4  # quarters: halves, ties and non-ties
    r, f = quantize_values(v, "round"), quantize_values(v, "floor_half")
    differ = r != f
    halves = (v - torch.floor(v)) == 0.5
    assert bool((differ <= halves).all())  # only ever at .5
    assert torch.equal(differ, halves & (torch.floor(v) % 2 == 0))  # round() ties to even
    with pytest.raises(ValueError, match="rounding"):
        quantize_values(v, "nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize("mean", [0.0, 0.25])
def test_hyperprior_floor_half_differs_from_round_only_at_halves(mean: float) -> None:
    """y - mu on a grid of quarters: the two roundings give different y_hat exactly where
    y - mu is a half whose floor is even, and both streams decode exactly."""
    c, h, w = 2, 4, 10
    density = FactorizedDensity(c)
    diff = (torch.arange(c * h * w, dtype=torch.float32) / 4 - 10).reshape(1, c, h, w)
    mu = torch.full_like(diff, mean)

    def params(z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(1, c, h, w), mu

    def build(rounding: str) -> HyperpriorLatent:
        return HyperpriorLatent(
            lambda y: torch.zeros(1, c, 1, 3),
            density,
            params,
            GaussianConditional(),
            rounding=rounding,  # type: ignore[arg-type]
        )

    y = diff + mu
    out = {}
    for rounding in ("round", "floor_half"):
        latent = build(rounding)
        with torch.inference_mode():
            out[rounding] = latent.quantize(y).latents
            assert torch.equal(latent.decode(latent.encode(y), (h, w), CPU), out[rounding])
    differ = out["round"] != out["floor_half"]
    halves = (diff - torch.floor(diff)) == 0.5
    assert bool(differ.any())
    assert torch.equal(differ, halves & (torch.floor(diff) % 2 == 0))


# -- hostile sections --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_section_counts_are_bitstream_errors(kind: str) -> None:
    latent, m = _codec(kind)
    sections = latent.encode(_latents(m, 4, 4, seed=1))
    for bad in (sections[:-1], [*sections, b""], [*sections, sections[0]], []):
        with pytest.raises(BitstreamError, match="must have"):
            latent.decode(bad, (4, 4), CPU)


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_and_padded_sections_are_bitstream_errors(kind: str) -> None:
    latent, m = _codec(kind)
    sections = latent.encode(_latents(m, 4, 8, seed=2))
    for i in range(len(sections) - (kind != "factorized")):  # the entropy-coded ones
        for bad in (sections[i][:-4], sections[i][:-1], sections[i] + b"\x01\0\0\0", b""):
            forged = list(sections)
            forged[i] = bad
            with pytest.raises(BitstreamError):
                latent.decode(forged, (4, 8), CPU)


@pytest.mark.parametrize("kind", ["scale", "mean-scale"])
def test_index_check_section(kind: str) -> None:
    latent, m = _codec(kind)
    sections = latent.encode(_latents(m, 4, 4, seed=3))
    for bad in (sections[2][:3], sections[2] + b"\0", b""):
        with pytest.raises(BitstreamError, match="index checksum section"):
            latent.decode([*sections[:2], bad], (4, 4), CPU)
    flipped = bytes(b ^ 0xFF for b in sections[2])
    with pytest.raises(CodecMismatchError, match="entropy parameters differ"):
        latent.decode([*sections[:2], flipped], (4, 4), CPU)


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_corrupted_sections_raise_only_bitstream_errors(kind: str, data: st.DataObject) -> None:
    """A flipped byte either decodes to something well-formed or is a BitstreamError (the
    container's CRC is what catches the rest); never another exception."""
    latent, m = _codec(kind)
    sections = latent.encode(_latents(m, 4, 4, seed=4))
    i = data.draw(st.integers(0, len(sections) - 1))
    raw = bytearray(sections[i])
    if not raw:
        return
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    forged = [*sections[:i], bytes(raw), *sections[i + 1 :]]
    try:
        out = latent.decode(forged, (4, 4), CPU)
    except BitstreamError:
        return
    assert out.shape == (1, m, 4, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_latent_size_is_a_bitstream_error(kind: str) -> None:
    latent, m = _codec(kind)
    sections = latent.encode(_latents(m, 4, 4, seed=5))
    with pytest.raises(BitstreamError, match="empty"):
        latent.decode(sections, (0, 4), CPU)


# -- binary iterative --------------------------------------------------------------------------
def _codes(t: int, c: int, h: int, w: int, seed: int, p_one: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(t, c, h, w, generator=g) < p_one, 1.0, -1.0)


PROBABILITIES = [0.5, 0.2, [0.1, 0.5, 0.9, 0.3], None]


@pytest.mark.parametrize("probability", PROBABILITIES)
@SETTINGS
@given(seed=st.integers(0, 2**16), t=st.integers(1, 5), h=st.integers(1, 4), w=st.integers(1, 4))
def test_binary_prefix_decodes_to_fewer_iterations_exactly(
    probability: object, seed: int, t: int, h: int, w: int
) -> None:
    latent = BinaryLatent(4, probability, max_iterations=5)  # type: ignore[arg-type]
    codes = _codes(t, 4, h, w, seed)
    sections = latent.encode(codes)
    assert len(sections) == t  # one section per iteration
    for k in range(1, t + 1):
        decoded = latent.decode(sections[:k], (h, w), CPU)
        assert decoded.shape == (k, 4, h, w)
        assert torch.equal(decoded, codes[:k])  # the bits are exact
    assert torch.equal(latent.quantize(codes).latents, codes)


def test_binary_sections_are_independent_of_later_iterations() -> None:
    latent = BinaryLatent(4, [0.1, 0.5, 0.9, 0.3])
    codes = _codes(3, 4, 5, 6, seed=1)
    assert latent.encode(codes)[:2] == latent.encode(codes[:2])


def test_binary_section_counts_and_payloads() -> None:
    latent = BinaryLatent(4, 0.3, max_iterations=3)
    sections = latent.encode(_codes(3, 4, 2, 3, seed=2))
    for bad in ([], [*sections, sections[0]]):
        with pytest.raises(BitstreamError, match=r"1\.\.3 sections"):
            latent.decode(bad, (2, 3), CPU)
    for bad in (sections[1][:-4], sections[1][:-1], sections[1] + b"\x01\0\0\0", b""):
        with pytest.raises(BitstreamError):
            latent.decode([sections[0], bad], (2, 3), CPU)
    with pytest.raises(BitstreamError):
        latent.decode(sections, (2, 4), CPU)  # the wrong size leaves words unread or runs out
    adaptive = BinaryLatent(4, None)
    with pytest.raises(BitstreamError):
        adaptive.decode([b"\0"], (2, 3), CPU)


def test_binary_rejects_bad_codes_and_options() -> None:
    latent = BinaryLatent(2, 0.5, max_iterations=2)
    with pytest.raises(ValueError, match="-1 or \\+1"):
        latent.encode(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="iterations"):
        latent.encode(_codes(3, 2, 2, 2, seed=0))
    with pytest.raises(ValueError, match=r"\[T, 2, h, w\]"):
        latent.encode(_codes(1, 3, 2, 2, seed=0))
    with pytest.raises(ValueError, match="probability"):
        BinaryLatent(2, 1.0)
    with pytest.raises(ValueError):
        BinaryLatent(2, [0.5, 0.5, 0.5])


def test_binary_skewed_model_codes_below_one_bit_per_code() -> None:
    codes = _codes(2, 4, 16, 16, seed=3, p_one=0.1)
    n = codes.numel()
    for probability in (0.1, None):
        payload = sum(len(s) for s in BinaryLatent(4, probability).encode(codes))
        assert payload * 8 < 0.6 * n
    assert len(list(BinaryLatent(4, 0.1).tables())) == 4
    assert not list(BinaryLatent(4, None).tables())


# -- LearnedCodec is generic -------------------------------------------------------------------
class _MyCodec(LearnedCodec):
    """A subclass that ops must keep."""


def _floor_half_factorized(model: torch.nn.Module) -> LatentCodec:
    return FactorizedLatent(model.y_prior, rounding="floor_half")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:164, 150:214])


@pytest.mark.parametrize("latent", [None, _floor_half_factorized])
def test_learned_codec_subclass_keeps_its_type_through_ops(
    latent: object, photo: np.ndarray
) -> None:
    base = imgcomp.create_codec("bmshj2018-factorized", pretrained=False, N=8, M=8)
    codec = _MyCodec(base.model, base.name, base.params, latent=latent)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    derived = [
        imgcomp.prune(codec, 0.3, 0.3, 0.0),
        imgcomp.prune(codec, 0.3, 0.3, 0.0, method="structured"),
        imgcomp.quantize(codec, "w6"),
        imgcomp.quantize(codec, "int8", calibration=calibration),
        imgcomp.quantize(imgcomp.prune(codec, 0.2, 0.0, 0.0), "bf16"),
    ]
    for new in derived:
        assert type(new) is _MyCodec
        assert new.latent_factory is codec.latent_factory
        assert new.fingerprint != codec.fingerprint
        assert np.array_equal(new.decode(new.encode(photo)), new.reconstruct(photo))
    assert len(derived[-1].ops) == 2


def test_latent_factory_changes_the_stream_not_the_protocol(photo: np.ndarray) -> None:
    base = imgcomp.create_codec("bmshj2018-factorized", pretrained=False, N=8, M=8)
    other = LearnedCodec(base.model, base.name, base.params, latent=_floor_half_factorized)
    assert isinstance(other.latent, LatentCodec) and isinstance(base.latent, FactorizedLatent)
    assert np.array_equal(other.decode(other.encode(photo)), other.reconstruct(photo))


def test_balle_latent_refuses_other_models() -> None:
    with pytest.raises(TypeError, match="no latent codec"):
        balle_latent(torch.nn.Conv2d(1, 1, 1))


class _ToyIterative(torch.nn.Module):
    """A non-Ballé model: 3 iterations of 4-channel binary codes, the codes' sum decoded."""

    downsampling_factor = 16
    config = {"arch": "toy-iterative"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Conv2d(3, 12, 16, stride=16)
        self.dec = torch.nn.ConvTranspose2d(4, 3, 16, stride=16)

    @property
    def components(self) -> dict[str, list[torch.nn.Module]]:
        return {"encoder": [self.enc], "decoder": [self.dec]}

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        e = self.enc(x - 0.5)
        return torch.where(e >= 0, 1.0, -1.0).reshape(3, 4, *e.shape[-2:])

    def synthesis(self, codes: torch.Tensor) -> torch.Tensor:
        return 0.5 + self.dec(codes).sum(0, keepdim=True)


def test_generic_learned_codec_with_binary_latents_decodes_a_prefix(photo: np.ndarray) -> None:
    from imgcomp.bitstream import pack, unpack

    codec = LearnedCodec(
        _ToyIterative(), "toy-iterative", latent=lambda m: BinaryLatent(4, 0.5, max_iterations=3)
    )
    data = codec.encode(photo)
    assert np.array_equal(codec.decode(data), codec.reconstruct(photo))
    header, sections = unpack(data)
    assert len(sections) == 3
    model = codec.model
    with torch.inference_mode():
        codes = model.analysis(codec._to_input(photo))
        for k in (1, 2):
            expect = codec._to_image(model.synthesis(codes[:k]), *photo.shape[:2])
            assert np.array_equal(codec.decode(pack(header, sections[:k])), expect)
    with pytest.raises(BitstreamError, match="sections"):
        codec.decode(pack(header, []))
