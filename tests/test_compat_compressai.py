"""CompressAI checkpoints: layout handling, refusal of unsafe files, seed-0 reference tensors.

The reference data (shared/compat) was produced by the original CompressAI 1.2.8 code from
synthetic weights; see shared/compat/compressai/README.md. Float tensors are compared with
``atol = 1e-4 * max(1, absmax)``; quantised and integer tensors exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcomp.codecs.learned import LearnedCodec
from imgcomp.entropy import gaussian_pmf
from imgcomp.errors import CheckpointError
from imgcomp.families.balle.compressai import (
    convert_compressai_state_dict,
    detect_arch,
    export_compressai_state_dict,
    load_compressai,
)
from imgcomp.families.balle.model import MeanScaleHyperprior
from imgcomp.nn import scale_table

ARCHS = ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"]
REPO = Path(__file__).resolve().parents[1]


_cache: dict[str, dict] = {}


@pytest.fixture(params=ARCHS)
def case(request, compat_dir, make_state) -> dict:
    """Generated seed-0 weights, our loaded model, the reference tensors and our eval latents."""
    arch = request.param
    if arch not in _cache:
        d = compat_dir / "compressai"
        man = make_state.load_manifest(d / f"{arch}.manifest.json")
        sd = make_state.make_state(man, 0)["state_dict"]
        ref = torch.load(d / f"{arch}_seed0.pt", map_location="cpu", weights_only=True)
        sha = json.loads((d / f"{arch}_seed0.state_sha256.json").read_text())["state_dict"]
        model = load_compressai(sd)
        with torch.no_grad():
            lat = model.quantize_latents(ref["input/image"])
            fwd = model(ref["input/image"])
        _cache[arch] = dict(
            arch=arch, sd=sd, ref=ref, sha=sha, model=model, lat=lat, fwd=fwd, ms=make_state
        )
    return _cache[arch]


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    atol = 1e-4 * max(1.0, want.abs().max().item())
    err = (got.float() - want.float()).abs().max().item()
    assert err <= atol, f"{what}: max error {err:.3g} > {atol:.3g}"


def _chained_round_check(ours_pre: torch.Tensor, ref_pre: torch.Tensor, got, want, what):
    """``got`` (rounded from our floats) equals ``want`` wherever the reference value is farther
    from a rounding boundary than our float error; elsewhere it may be one step off."""
    err = (ours_pre - ref_pre).abs().max().item()
    dist = (ref_pre - torch.floor(ref_pre) - 0.5).abs()
    safe = dist > err
    assert safe.float().mean() > 0.99, what
    assert torch.equal(got[safe], want[safe]), what
    assert torch.all((got - want).abs() <= 1.0 + 1e-4), what


def test_generated_weights_match_published_digests(case):
    digest, per_key = case["ms"].state_sha256(case["sd"])
    bad = [k for k, h in per_key.items() if case["sha"]["per_key"].get(k) != h]
    assert not bad, f"this torch build generates different weights for {bad[:5]}"
    assert digest == case["sha"]["sha256"]


def test_arch_and_dims_are_inferred(case):
    model, arch = case["model"], case["arch"]
    assert detect_arch(case["sd"]) == arch
    assert model.config == {"arch": arch, "N": 128, "M": 192}
    assert not model.training


def test_analysis_and_synthesis(case):
    ref, model, lat = case["ref"], case["model"], case["lat"]
    _close(lat["y"], ref["y"], "y = g_a(x)")
    with torch.no_grad():
        _close(model.synthesis(ref["y_hat"]), ref["x_hat"], "g_s(ref y_hat)")
        _close(model.synthesis(ref["y_round"]), ref["x_hat_from_round_y"], "g_s(round y)")


def test_y_quantisation(case):
    ref, model, lat, arch = case["ref"], case["model"], case["lat"], case["arch"]
    # from the reference tensors: exact
    if arch == "bmshj2018-factorized":
        offset = model.y_prior.medians.detach()[None, :, None, None]
        assert torch.equal(model.y_prior.quantize(ref["y"], noise=False), ref["y_hat"])
    elif arch == "bmshj2018-hyperprior":
        offset = torch.zeros(())
        assert torch.equal(model.y_conditional.quantize(ref["y"]), ref["y_hat"])
    else:
        offset = ref["means_hat"]
        assert torch.equal(model.y_conditional.quantize(ref["y"], ref["means_hat"]), ref["y_hat"])
    assert torch.equal(torch.round(ref["y"]), ref["y_round"])
    # chained on our own y (and, for mbt2018-mean, the reference means)
    y_hat = torch.round(lat["y"] - offset) + offset
    _chained_round_check(lat["y"] - offset, ref["y"] - offset, y_hat, ref["y_hat"], "y_hat")
    if arch != "mbt2018-mean":
        assert torch.equal(lat["y_hat"], y_hat)
    if torch.equal(lat["y_hat"], ref["y_hat"]):  # holds for seed 0: the whole eval forward
        _close(case["fwd"]["x_hat"], ref["x_hat"], "forward x_hat")
        _close(case["fwd"]["likelihoods"]["y"], ref["y_likelihood"], "forward y likelihood")


def test_y_likelihood_from_reference_tensors(case):
    ref, model, arch = case["ref"], case["model"], case["arch"]
    with torch.no_grad():
        if arch == "bmshj2018-factorized":
            lik = model.y_prior.likelihood(ref["y_hat"])
        else:
            means = ref.get("means_hat")
            lik = model.y_conditional.likelihood(ref["y_hat"], ref["scales_hat"], means)
    _close(lik, ref["y_likelihood"], "y likelihood")
    _close(case["lat"]["y_likelihoods"], ref["y_likelihood"], "y likelihood (chained)")


def test_hyperprior_path(case):
    ref, model, lat, arch = case["ref"], case["model"], case["lat"], case["arch"]
    if arch == "bmshj2018-factorized":
        assert "z" not in lat and not any(k.startswith("z") for k in ref)
        return
    _close(lat["z"], ref["z"], "z = h_a(y)")
    assert torch.equal(torch.round(ref["z"]), ref["z_round"])
    prior = model.z_prior
    med = prior.medians.detach()[None, :, None, None]
    assert torch.equal(prior.quantize(ref["z"], noise=False), ref["z_hat"])
    _chained_round_check(lat["z"] - med, ref["z"] - med, lat["z_hat"], ref["z_hat"], "z_hat")
    with torch.no_grad():
        _close(prior.likelihood(ref["z_hat"]), ref["z_likelihood"], "z likelihood")
        _close(lat["z_likelihoods"], ref["z_likelihood"], "z likelihood (chained)")
        _close(model.h_s(ref["z_hat"]), ref["h_s_out"], "h_s(z_hat)")
        _close(model.h_s(ref["z_round"]), ref["h_s_out_from_round_z"], "h_s(round z)")
        scales, means = model.hyper_synthesis(ref["z_hat"])
    _close(scales, ref["scales_hat"], "scales")
    if arch == "mbt2018-mean":
        _close(means, ref["means_hat"], "means")
        _close(lat["means"], ref["means_hat"], "means (chained)")
    else:
        assert means is None
    indexes = model.y_conditional.build_indexes(ref["scales_hat"])
    assert indexes.dtype == torch.int32 and torch.equal(indexes, ref["indexes"])
    if torch.equal(lat["z_hat"], ref["z_hat"]):
        # chained indexes: equal unless a scale sits within float noise of a table level
        table = model.y_conditional.scale_table
        near = (ref["scales_hat"][..., None] - table).abs().min(-1).values < 1e-4
        assert torch.equal(lat["indexes"][~near], ref["indexes"][~near])


def _freq_check(pmf: np.ndarray, tail: np.ndarray, lengths, cdf: torch.Tensor, what: str):
    """The reference quantised CDF (16-bit) is the pmf + tail, rounded and renormalised, with
    frequency 1 stolen for every symbol that rounds to 0: compare where the frequency is large."""
    for r in range(pmf.shape[0]):
        n = int(lengths[r])
        freq = np.diff(cdf[r, : n + 2].double().numpy())
        mine = np.append(pmf[r, :n], tail[r]) * 65536
        assert np.all(freq >= 1), f"{what} row {r}"
        big = mine >= 64
        assert big.any(), f"{what} row {r}"
        assert np.all(np.abs(freq - mine)[big] <= 2 + 0.01 * mine[big]), f"{what} row {r}"


def test_entropy_bottleneck_tables(case):
    ref, model, arch = case["ref"], case["model"], case["arch"]
    prior = model.y_prior if arch == "bmshj2018-factorized" else model.z_prior
    t = prior.pmf_table()
    assert np.array_equal(t.lo, ref["update/entropy_bottleneck._offset"].numpy())
    assert np.array_equal(t.length + 2, ref["update/entropy_bottleneck._cdf_length"].numpy())
    np.testing.assert_allclose(t.pmf.sum(1) + t.tail_mass, 1.0, atol=1e-12)
    cdf = ref["update/entropy_bottleneck._quantized_cdf"]
    _freq_check(t.pmf, t.tail_mass, t.length, cdf, "entropy bottleneck")


def test_gaussian_conditional_tables(case):
    ref, model, arch = case["ref"], case["model"], case["arch"]
    if arch == "bmshj2018-factorized":
        return
    want = ref["update/gaussian_conditional.scale_table"]
    assert torch.equal(scale_table(), want)
    assert torch.equal(model.y_conditional.scale_table, want)
    coder = LearnedCodec(model, arch).coders[1]  # the tables the codec's streams are coded with
    key = "update/gaussian_conditional."
    assert np.array_equal(-coder.radii, ref[key + "_offset"].numpy())
    assert np.array_equal(2 * coder.radii + 3, ref[key + "_cdf_length"].numpy())
    rows = [gaussian_pmf(float(s), coder.tail_mass)[0] for s in coder.scale_table]
    lengths = np.array([len(row) - 1 for row in rows])
    pmf = np.zeros((len(rows), int(lengths.max())))
    for r, row in enumerate(rows):
        pmf[r, : lengths[r]] = row[:-1]
    tail = np.array([row[-1] for row in rows])
    cdf = ref["update/gaussian_conditional._quantized_cdf"]
    _freq_check(pmf, tail, lengths, cdf, "gaussian conditional")


# -- checkpoint layouts and refusals (factorized: the smallest) ----------------------------------


@pytest.fixture(scope="module")
def factorized_sd(compat_dir, make_state):
    man = make_state.load_manifest(compat_dir / "compressai" / "bmshj2018-factorized.manifest.json")
    return make_state.make_state(man, 0)["state_dict"]


@pytest.fixture(scope="module")
def hyper_sd(compat_dir, make_state):
    man = make_state.load_manifest(compat_dir / "compressai" / "mbt2018-mean.manifest.json")
    return make_state.make_state(man, 0)["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_training_wrapper_prefix_and_old_names_load_identically(factorized_sd, tmp_path):
    base = convert_compressai_state_dict(factorized_sd)
    assert set(base) == {k for k in base if not k.startswith("entropy_bottleneck")}
    # training checkpoint: wrapper, DataParallel prefix, empty (never updated) tables
    training = {}
    for k, v in factorized_sd.items():
        empty = k.rsplit(".", 1)[-1] in ("_offset", "_quantized_cdf", "_cdf_length")
        training["module." + k] = torch.empty(0, dtype=v.dtype) if empty else v.clone()
    wrapper = {"epoch": 3, "state_dict": training, "loss": 0.5, "optimizer": {"state": {}}}
    assert _same(convert_compressai_state_dict(wrapper), base)
    # old entropy-bottleneck names, both generations
    for style in ("list", "flat"):
        old = {}
        for k, v in factorized_sd.items():
            head, _, rest = k.partition(".")
            kind, _, idx = rest.partition(".")
            if head == "entropy_bottleneck" and kind in ("matrices", "biases", "factors") and idx:
                single = {"matrices": "matrix", "biases": "bias", "factors": "factor"}[kind]
                k = f"{head}._{kind}.{idx}" if style == "list" else f"{head}._{single}{idx}"
            old[k] = v
        assert _same(convert_compressai_state_dict(old), base)
    # the same through a file, with the wrapper
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(wrapper, path)
    model = load_compressai(path)
    assert _same(dict(model.state_dict()), dict(base))
    assert _same(dict(load_compressai(factorized_sd).state_dict()), dict(base))


def test_training_checkpoint_without_scale_table_gets_the_default(hyper_sd):
    sd = dict(hyper_sd)
    for k in list(sd):
        if k.split(".")[-1] in ("_offset", "_quantized_cdf", "_cdf_length", "scale_table"):
            sd[k] = torch.empty(0, dtype=sd[k].dtype)
    assert sd["gaussian_conditional.scale_table"].numel() == 0
    model = load_compressai(sd)
    assert isinstance(model, MeanScaleHyperprior)
    assert torch.equal(model.y_conditional.scale_table, scale_table())


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:
    pass


@pytest.mark.parametrize("kind", ["reduce", "instance", "function"])
def test_checkpoint_carrying_code_is_refused(factorized_sd, tmp_path, kind):
    marker = tmp_path / "executed"
    extra = {"reduce": _Payload(marker), "instance": _Plain(), "function": os.system}[kind]
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": dict(factorized_sd), "extra": extra}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_compressai(path)
    assert not marker.exists()


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_compressai(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_compressai(junk)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(CheckpointError, match="not a"):
        load_compressai(listing)


def test_wrong_keys_and_values_are_rejected(factorized_sd, hyper_sd):
    sd = dict(factorized_sd)
    del sd["g_s.3.gamma"]
    sd["g_s.9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        convert_compressai_state_dict(sd)
    assert "missing keys: g_s.3.gamma" in str(err.value)
    assert "unexpected keys: g_s.9.weight" in str(err.value)

    sd = dict(factorized_sd)
    sd["g_a.1.gamma_reparam.pedestal"] = torch.tensor([1e-3])
    with pytest.raises(CheckpointError, match=r"gamma_reparam\.pedestal"):
        convert_compressai_state_dict(sd)

    sd = dict(factorized_sd)
    sd["g_s.2.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"g_s\.2\.bias"):
        convert_compressai_state_dict(sd)

    sd = dict(factorized_sd)
    sd["entropy_bottleneck.biases.2"] = sd["entropy_bottleneck.biases.2"].clone()
    sd["entropy_bottleneck.biases.2"][0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        convert_compressai_state_dict(sd)

    with pytest.raises(CheckpointError, match="not bmshj2018-hyperprior"):
        load_compressai(hyper_sd, arch="bmshj2018-hyperprior")
    with pytest.raises(CheckpointError, match=r"g_a\.6\.weight"):
        convert_compressai_state_dict({"g_a.0.weight": torch.zeros(4, 3, 5, 5)})
    with pytest.raises(CheckpointError):
        convert_compressai_state_dict({"g_a.0.weight": [1, 2]})


def test_named_arch_with_missing_hyper_keys_lists_them(hyper_sd):
    sd = {k: v for k, v in hyper_sd.items() if not k.startswith("h_s.4.")}
    with pytest.raises(CheckpointError, match=r"missing keys: h_s\.4\.bias, h_s\.4\.weight"):
        load_compressai(sd, arch="mbt2018-mean")
    with pytest.raises(CheckpointError, match="cannot detect"):
        load_compressai(sd)


def test_export_is_the_inverse_of_the_conversion(case):
    """Our weights in CompressAI's layout (for side-by-side runs) convert back unchanged, with
    CompressAI's checked constants and (empty) coder tables in place."""
    model = case["model"]
    exported = export_compressai_state_dict(model)
    assert set(exported) == set(case["sd"])
    back = convert_compressai_state_dict(exported)
    ours = model.state_dict()
    assert list(back) == list(ours)
    assert all(torch.equal(back[k], ours[k]) for k in ours)
    tables = {k for k in exported if k.endswith(("_offset", "_quantized_cdf", "_cdf_length"))}
    assert all(exported[k].shape == case["sd"][k].shape for k in set(exported) - tables)
