"""The hific codec: real streams of random and original-checkpoint models, any image size,
rate estimates against coded bytes, hostile sections, other models, pruning, bf16 / w8, profile."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.bitstream import unpack
from imgcomp.errors import CodecMismatchError, ImgcompError
from imgcomp.families.hific.codec import HiFiCCodec
from imgcomp.families.hific.latent import SCALE_TABLE, HyperDensityTables, pad_image, padded_side
from imgcomp.families.hific.model import HiFiC
from imgcomp.registry import get_family

pytestmark = pytest.mark.usefixtures("one_thread")

_TINY = {"channels": 16, "blocks": 1, "hyper_channels": 16, "width": 0.125}


def _tiny(seed: int = 0) -> HiFiCCodec:
    return imgcomp.create_codec("hific", pretrained=False, seed=seed, **_TINY)


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 64 * 4], -1)
    return img.astype(np.uint8)


_CODEC = _tiny()
_IMG = _img(37, 50)
_STREAM = _CODEC.encode(_IMG)


def test_registered_as_a_family_with_the_study_columns(monkeypatch, tmp_path) -> None:
    family = get_family("hific")
    assert family.component_names == ("encoder", "generator", "probability")
    headers = [
        f"{c.display[:1].upper()}{c.display[1:]} pruning ratio" for c in family.components.values()
    ]
    assert headers == [
        "Encoder pruning ratio",
        "Generator pruning ratio",
        "Probability model pruning ratio",
    ]
    assert family.table_components == ("encoder", "generator", "probability")
    assert family.training.name == "hific" and family.objective == "hific-gan"
    assert family.checkpoint_formats == ("imgcomp", "original")
    assert isinstance(_CODEC, HiFiCCodec) and _CODEC.family == "hific"
    assert imgcomp.registry.canonical_name("mentzer2020") == "hific"
    with monkeypatch.context() as m:  # a package without the shipped file
        m.setattr("imgcomp.families.hific.spec.WEIGHTS_DIR", tmp_path)
        with pytest.raises(ImgcompError, match="no shipped weights for hific"):
            imgcomp.create_codec("hific")
    with pytest.raises(ImgcompError, match="unknown checkpoint format"):
        imgcomp.create_codec("hific", checkpoint="x.pt", format="compressai")
    with pytest.raises(ImgcompError, match="width"):
        imgcomp.create_codec("hific", pretrained=False, width=0)


def test_padding_reflects_to_16_and_at_least_80_a_side() -> None:
    assert [padded_side(n) for n in (1, 37, 64, 65, 80, 81, 200)] == [80, 80, 80, 80, 80, 96, 208]
    x = torch.rand(1, 3, 100, 37)
    p = pad_image(x)
    assert p.shape == (1, 3, 112, 80)
    # sides > 64: exactly the original's reflection; shorter ones reflect, then replicate
    torch.testing.assert_close(
        p[:, :, :, :37], torch.nn.functional.pad(x, (0, 0, 0, 12), "reflect")
    )
    assert torch.equal(p[:, :, :100, 37:73], x.flip(-1)[:, :, :, 1:])
    assert torch.equal(p[:, :, :100, 73:], x[:, :, :, :1].expand(-1, -1, -1, 7))
    assert pad_image(torch.rand(1, 3, 1, 1)).shape == (1, 3, 80, 80)


def test_any_size_round_trips_to_the_models_reconstruction() -> None:
    for shape in [(80, 96), (37, 50), (1, 1), (130, 70)]:
        img = _img(*shape)
        data = _CODEC.encode(img)
        header, sections = unpack(data)
        assert header.codec == "hific" and len(sections) == 3 and len(sections[2]) == 4
        out = _CODEC.decode(data)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.array_equal(out, _CODEC.reconstruct(img)), shape


def test_the_hyper_latent_tables_follow_the_models_density() -> None:
    density = _CODEC.model.Hyperprior.hyperlatent_likelihood
    table = HyperDensityTables(density).pmf_table()
    assert np.all(table.lo <= table.hi)
    sums = np.array([table.pmf[c, :n].sum() for c, n in enumerate(table.length)])
    np.testing.assert_allclose(sums + table.tail_mass, 1.0, atol=1e-9)
    assert np.all(table.tail_mass <= 2e-9)
    # the table's probabilities are the model's likelihoods (float64 vs its float32)
    k = torch.arange(-3, 4, dtype=torch.float32)
    v = torch.from_numpy(table.lo).float()[None, :, None] + 40 + k
    with torch.no_grad():
        lik = density.likelihood(v)[0].double().numpy()
    ref = np.stack([table.pmf[c, 37:44] for c in range(density.channels)])
    np.testing.assert_allclose(lik, ref, rtol=1e-3)


def _sane(codec: HiFiCCodec) -> HiFiCCodec:
    """The codec's model with mu = 0 and sigma a scale-table level near 1.5 (random weights put
    40% of the latents at the 1e-9 likelihood floor, where the estimate and an escape code part
    ways; a sigma between two levels is coded with the next one up, up to 13% wider)."""
    model = HiFiC(**codec.model.config)
    model.load_state_dict(codec.model.state_dict())
    with torch.no_grad():
        sigma = float(SCALE_TABLE[int(torch.argmin((SCALE_TABLE - 1.5).abs()))])
        for net, bias in (
            (model.Hyperprior.synthesis_mu, 0.0),
            (model.Hyperprior.synthesis_std, sigma),
        ):
            net.conv3.weight.zero_()
            net.conv3.bias.fill_(bias)
    return HiFiCCodec(model.eval(), codec.name, codec.params)


def test_estimated_bits_match_the_coded_bytes() -> None:
    codec = _sane(_CODEC)
    img = _smooth(256, 256)
    _, sections = unpack(codec.encode(img))
    with torch.no_grad():
        q = codec.latent.quantize(codec._analysis(img))
    est = [float(-torch.log2(v.double()).sum()) / 8 for v in q.likelihoods]
    for got, want in zip(sections[:2], est, strict=True):
        assert abs(len(got) - want) <= 0.03 * want + 8, (len(got), want)
    # any model: the coded bytes are the tables' ideal code length (escapes included)
    _, sections = unpack(_CODEC.encode(img))
    lat = _CODEC.latent
    with torch.no_grad():
        y = lat._pad(_CODEC._analysis(img))
        z_sym, _, scales, means = lat._hyper(y)
        y_sym, _ = lat._y_symbols(y, means)
        idx = lat.y_conditional.build_indexes(scales)[0].numpy()
    z_coder, y_coder = lat.coders
    z_bits = z_coder.estimated_bits(z_sym.to(torch.int32)[0].numpy())
    y_bits = y_coder.estimated_bits(y_sym.to(torch.int32)[0].numpy().reshape(-1), idx.reshape(-1))
    for got, bits in zip(sections[:2], (z_bits, y_bits), strict=True):
        assert abs(len(got) - bits / 8) <= 0.01 * bits / 8 + 8


def test_another_model_is_refused() -> None:
    with pytest.raises(CodecMismatchError):
        _tiny(seed=1).decode(_STREAM)
    with pytest.raises(CodecMismatchError):
        imgcomp.create_codec("rnn", pretrained=False, width=0.125).decode(_STREAM)


@pytest.fixture(scope="module")
def original_file(compat_dir, tmp_path_factory):
    """A compression_gan train.py checkpoint of C=8, one residual block (discriminator saved)."""
    args = json.loads((compat_dir / "hific" / "hific.manifest.json").read_text())["args_example"]
    args = {**args, "latent_channels": 8, "n_residual_blocks": 1}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        sd = HiFiC(latent_channels=8, n_residual_blocks=1).state_dict()
    path = tmp_path_factory.mktemp("hific_orig") / "tiny_epoch1_idx10_2020_09_01_12:00.pt"
    torch.save({"model_state_dict": sd, "epoch": 1, "steps": 10, "args": args}, path)
    return path


def test_an_original_checkpoint_codes_its_own_reconstruction(original_file) -> None:
    codec = imgcomp.load_codec("hific", checkpoint=original_file, format="original")
    assert isinstance(codec, HiFiCCodec) and not codec.model.has_discriminator
    assert codec.model.config["latent_channels"] == 8
    img = _smooth(80, 96)
    data = codec.encode(img)
    out = codec.decode(data)
    assert np.array_equal(out, codec.reconstruct(img))
    with pytest.raises(imgcomp.CodecMismatchError, match="checkpoint="):
        imgcomp.decode_stream(data)
    # sides > 64 pad as the original: the codec's reconstruction is the original forward's
    with torch.no_grad():
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
        ref = codec.model.reconstruct(x)[0].permute(1, 2, 0).mul(255).round().to(torch.uint8)
    assert np.array_equal(ref.numpy(), out)


def test_pruned_and_quantized_codecs_round_trip() -> None:
    img = _img(37, 50)
    pruned = imgcomp.prune(
        _CODEC, imgcomp.L1Prune({"encoder": 0.3, "generator": 0.3, "probability": 0.3})
    )
    assert pruned.ops and pruned.fingerprint != _CODEC.fingerprint
    w = pruned.model.Generator.resblock_0.conv1.weight
    assert abs(float((w == 0).float().mean()) - 0.3) < 0.05
    for codec in (pruned, imgcomp.quantize(_CODEC, "bf16"), imgcomp.quantize(_CODEC, "w8")):
        assert isinstance(codec, HiFiCCodec)
        data = codec.encode(img)
        assert np.array_equal(codec.decode(data), codec.reconstruct(img)), codec.ops
        with pytest.raises(CodecMismatchError):
            _CODEC.decode(data)
    q = imgcomp.quantize(_CODEC, "int8", calibration=[img])
    assert type(q.model.Generator).__name__ == "Int8Transform"
    assert np.array_equal(q.decode(q.encode(img)), q.reconstruct(img))
    # the declared layers (the latent's writer, the two texture upsamplings) run on float
    # activations, the rest in int8
    compute = {layer.name: layer.compute for layer in q.op_report.layers}
    kept = ["Encoder.conv_block_out.1", "Generator.upconv_block3.0", "Generator.upconv_block4.0"]
    assert [compute[name] for name in kept] == ["float32"] * 3
    others = ["Encoder.conv_block5.1", "Generator.upconv_block2.0", "Generator.resblock_0.conv1"]
    assert [compute[name] for name in others] == ["int8"] * 3


def test_profile_gives_macs_per_component() -> None:
    for codec in (_CODEC, imgcomp.quantize(_CODEC, "bf16")):
        prof = imgcomp.profile(codec)
        comps = {c.name: c for c in prof.components}
        assert list(comps) == ["encoder", "generator", "probability"]
        assert all(c.macs and c.macs > 0 for c in comps.values()), prof
        assert comps["generator"].macs > comps["probability"].macs
    assert prof.total.parameters == sum(p.numel() for p in _CODEC.model.parameters())
