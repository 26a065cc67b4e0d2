"""Model profile: parameter counts, sparsity, storage sizes and hand-checked MACs per component."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcomp.errors import ImgcompError
from imgcomp.families.balle.model import build_model
from imgcomp.ops.profile import format_profile, profile_model
from imgcomp.ops.pruning import prune_unstructured

N, M = 12, 20


def _model(arch: str = "mbt2018-mean", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, N, M).eval()


def _numel(modules: list[nn.Module]) -> int:
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def _conv_macs(cin: int, cout: int, k: int, h_out: int, w_out: int) -> int:
    return cin * cout * k * k * h_out * w_out


def _deconv_macs(cin: int, cout: int, k: int, h_in: int, w_in: int) -> int:
    return cin * cout * k * k * h_in * w_in  # every input pixel scatters a k*k*Cout patch


def _gdn_macs(c: int, h: int, w: int) -> int:
    return c * c * h * w  # GDN's normalisation is a 1x1 convolution over the channels


def _g_a_macs(h: int, w: int) -> int:
    """g_a by hand: 4 stride-2 5x5 convs (3->N->N->N->M) with GDN(N) after the first three."""
    total, cin = 0, 3
    for i, cout in enumerate((N, N, N, M)):
        h, w = h // 2, w // 2
        total += _conv_macs(cin, cout, 5, h, w)
        if i < 3:
            total += _gdn_macs(cout, h, w)
        cin = cout
    return total


def _g_s_macs(h: int, w: int) -> int:
    """g_s by hand: 4 stride-2 5x5 transposed convs (M->N->N->N->3), IGDN(N) after three."""
    total, cin, h, w = 0, M, h // 16, w // 16
    for i, cout in enumerate((N, N, N, 3)):
        total += _deconv_macs(cin, cout, 5, h, w)
        h, w = 2 * h, 2 * w
        if i < 3:
            total += _gdn_macs(cout, h, w)
        cin = cout
    return total


def _mean_scale_entropy_macs(h: int, w: int) -> int:
    """h_a (3x3 M->N at y size, two stride-2 5x5 N->N) + h_s (two 5x5 deconvs, 3x3 conv)."""
    hy, wy = h // 16, w // 16
    h_a = (
        _conv_macs(M, N, 3, hy, wy)
        + _conv_macs(N, N, 5, hy // 2, wy // 2)
        + _conv_macs(N, N, 5, hy // 4, wy // 4)
    )
    h_s = (
        _deconv_macs(N, M, 5, hy // 4, wy // 4)
        + _deconv_macs(M, M * 3 // 2, 5, hy // 2, wy // 2)
        + _conv_macs(M * 3 // 2, M * 2, 3, hy, wy)
    )
    return h_a + h_s


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_parameters_sum_per_component_and_total(arch: str) -> None:
    model = _model(arch)
    p = profile_model(model, (64, 64), compress=False)
    for name, modules in model.components.items():
        assert p[name].parameters == _numel(modules)
        assert p[name].nonzero_parameters == sum(
            int(torch.count_nonzero(t)) for m in modules for t in m.parameters()
        )
    assert p.total.parameters == sum(t.numel() for t in model.parameters())
    assert p.total.parameters == sum(c.parameters for c in p.components)
    assert [c.name for c in p.components] == ["encoder", "decoder", "entropy"]


def test_serialized_size_is_about_four_bytes_per_parameter() -> None:
    p = profile_model(_model(), (64, 64))
    for comp in (*p.components, p.total):
        assert 4.0 <= comp.serialized_bytes / comp.parameters <= 4.4, comp
    half = profile_model(_model().to(torch.bfloat16), (64, 64), compress=False)
    assert 2.0 <= half.total.serialized_bytes / half.total.parameters <= 2.4


def test_pruning_lowers_non_zeros_and_compressed_size_not_serialized_size() -> None:
    model = _model()
    before = profile_model(model, (64, 64))
    prune_unstructured(model, {"encoder": 0.6})
    after = profile_model(model, (64, 64))
    conv_weights = [m.weight for m in model.g_a.modules() if isinstance(m, nn.Conv2d)]
    newly_zero = sum(round(0.6 * w.numel()) for w in conv_weights)  # random init: no zeros yet
    enc0, enc1 = before["encoder"], after["encoder"]
    assert enc1.nonzero_parameters == enc0.nonzero_parameters - newly_zero
    assert enc1.parameters == enc0.parameters
    assert abs(enc1.serialized_bytes - enc0.serialized_bytes) < 64  # dense format: same size
    assert enc1.compressed_bytes < 0.75 * enc0.compressed_bytes
    assert after["decoder"] == before["decoder"]
    assert after["entropy"] == before["entropy"]
    assert after.total.sparsity > before.total.sparsity


@pytest.mark.parametrize("hw", [(64, 64), (128, 192), (512, 768)])
def test_macs_match_hand_computed_sums_over_the_layers(hw: tuple[int, int]) -> None:
    p = profile_model(_model(), hw, compress=False)
    assert p.module_macs["g_a"] == p["encoder"].macs == _g_a_macs(*hw)
    assert p.module_macs["g_s"] == p["decoder"].macs == _g_s_macs(*hw)  # transposed convs
    assert p["entropy"].macs == _mean_scale_entropy_macs(*hw)
    assert p.total.macs == _g_a_macs(*hw) + _g_s_macs(*hw) + _mean_scale_entropy_macs(*hw)


def test_macs_scale_with_image_area_and_count_the_padded_size() -> None:
    model = _model()
    small = profile_model(model, (64, 64), compress=False)
    big = profile_model(model, (512, 768), compress=False)
    for name in ("g_a", "g_s", "h_a", "h_s"):
        assert big.module_macs[name] == 96 * small.module_macs[name]
    odd = profile_model(model, (500, 700), compress=False)  # padded to 512x704 like the codec
    assert odd.padded_hw == (512, 704)
    assert odd["encoder"].macs == _g_a_macs(512, 704)


def test_transposed_convolution_counted_over_its_input() -> None:
    """One stride-2 transposed conv alone: Cin*Cout*k*k per INPUT pixel, not per output pixel."""
    model = _model()
    model.g_s = nn.Sequential(nn.ConvTranspose2d(M, 5, 3, stride=2, padding=1, output_padding=1))
    p = profile_model(model, (128, 64), compress=False)
    assert p["decoder"].macs == M * 5 * 9 * (128 // 16) * (64 // 16)


def test_factorized_entropy_has_no_macs_and_says_why() -> None:
    p = profile_model(_model("bmshj2018-factorized"), (64, 64), compress=False)
    assert p["entropy"].macs == 0
    assert p["encoder"].macs == _g_a_macs(64, 64)
    assert any("factorized densities" in n for n in p.notes)


def test_bf16_model_is_measured_on_float_copies_and_left_as_is() -> None:
    model = _model().to(torch.bfloat16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    p = profile_model(model, (128, 128), compress=False)
    assert p["encoder"].macs == _g_a_macs(128, 128)
    assert p.total.parameters == sum(t.numel() for t in model.parameters())
    for k, v in model.state_dict().items():
        assert v.dtype == state[k].dtype and v.device.type == "cpu" and torch.equal(v, state[k])


class _Opaque(nn.Module):
    """Has a conv-shaped weight but does no convolution FlopCounterMode could see."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2 * M, N, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.mean()


def test_unmeasurable_macs_are_none_with_a_reason() -> None:
    model = _model()
    model.h_s = _Opaque()
    p = profile_model(model, (64, 64), compress=False)
    assert p.module_macs["h_s"] is None
    assert p["entropy"].macs is None and p.total.macs is None
    assert p["encoder"].macs == _g_a_macs(64, 64)
    assert any("h_s" in n and "None" in n for n in p.notes)
    assert "n/a" in format_profile(p)


def _quantize_fx(module: nn.Module, example: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from imgcomp.nn.gdn import GDN

    engine = torch.backends.quantized.engine
    cfg = PrepareCustomConfig().set_non_traceable_module_classes([GDN])
    prepared = prepare_fx(
        module, get_default_qconfig_mapping(engine), (example,), prepare_custom_config=cfg
    )
    prepared(example)
    return convert_fx(prepared)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int8_graph_module_reports_float_structure_macs_and_parameters() -> None:
    if torch.backends.quantized.engine == "none":
        pytest.skip("no quantized engine in this torch build")
    model = _model()
    float_profile = profile_model(model, (128, 192))
    model.g_a = _quantize_fx(model.g_a, torch.rand(1, 3, 64, 64))
    model.g_s = _quantize_fx(model.g_s, torch.rand(1, M, 4, 4))
    q = profile_model(model, (128, 192))
    assert any(isinstance(v, torch.Tensor) and v.is_quantized for v in model.state_dict().values())
    assert q["encoder"].macs == float_profile["encoder"].macs == _g_a_macs(128, 192)
    assert q["decoder"].macs == float_profile["decoder"].macs == _g_s_macs(128, 192)
    assert q.module_macs == float_profile.module_macs
    assert "packed" in q.macs_method
    assert q["encoder"].parameters == float_profile["encoder"].parameters
    assert q["encoder"].serialized_bytes < 0.5 * float_profile["encoder"].serialized_bytes
    assert q["entropy"] == float_profile["entropy"]


def test_format_profile_is_a_table_of_the_numbers() -> None:
    p = profile_model(_model(), (64, 64))
    text = format_profile(p)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["component", "params", "non-zero"]
    for comp in (*p.components, p.total):
        row = next(line for line in lines if line.startswith(comp.name))
        assert f"{comp.parameters:,}" in row
        assert f"{comp.macs / 1e9:.3f}" in row
    assert "64x64" in text and "zlib level 9" in text


@pytest.mark.parametrize("hw", [(0, 64), (64,), (64.0, 64), "64x64"])
def test_bad_input_size_is_a_clear_error(hw) -> None:
    with pytest.raises(ImgcompError, match="input_hw"):
        profile_model(_model(), hw)


def test_model_without_components_is_a_clear_error() -> None:
    with pytest.raises(ImgcompError, match="components"):
        profile_model(nn.Conv2d(3, 3, 3))
