"""HiFiC's channel groups for structured pruning (declared; :mod:`imgcomp.ops.structured` slices
them).

A ``ChannelNorm2D`` normalizes over the channels of its input, so its ``gamma`` / ``beta``
([1, C, 1, 1], dim 1) go with the channels they scale. A ``ConvTranspose2d`` keeps its outputs
in weight dim 1 and its inputs in dim 0. Padding layers have no parameters.

=============================  ============  ==================================================
group                          components    slices
=============================  ============  ==================================================
``Encoder.conv_block{1..5}``   encoder       its conv's outputs (weight, bias), its norm, the
                                             next conv's inputs (``conv_block_out`` after 5)
``latent``                     encoder,      C: ``Encoder.conv_block_out`` outputs; the
                               generator,    generator's input norm and first conv's inputs;
                               probability   ``analysis_net.conv1`` inputs; ``synthesis_mu`` /
                                             ``synthesis_std.conv3`` outputs (dim 1, bias); the
                                             discriminator's context conv inputs when present
``Generator.residual``         generator     the residual stream (``filters[0]``): the head
                                             conv's outputs and norm, every block's conv1
                                             inputs and conv2 outputs with norm2 (the block's
                                             sum), ``upconv_block1``'s inputs: one group, so
                                             every block and the global skip lose the same
                                             channels
``Generator.resblock_{m}``     generator     block m's hidden width: conv1 outputs, norm1,
                                             conv2 inputs
``Generator.upconv_block{i}``  generator     its transposed conv's outputs (dim 1, bias), its
                                             norm, the next transposed conv's inputs (dim 0;
                                             after block 4 ``conv_block_out``'s inputs, dim 1)
``Hyperprior.<t>.conv{1,2}``   probability   hidden layers of ``analysis_net``,
                                             ``synthesis_mu``, ``synthesis_std``: outputs and
                                             the next layer's inputs
``hyperlatent``                probability   N: ``analysis_net.conv3`` outputs, both
                                             synthesis ``conv1`` inputs (dim 0), every
                                             per-channel parameter of the density (dim 0)
=============================  ============  ==================================================

The image channels (encoder input, generator output) are never pruned.
"""

from __future__ import annotations

from torch import nn

from imgcomp.families.hific.model import HYPER_TRANSFORMS, HiFiC
from imgcomp.families.spec import ChannelSlice, PrunableGroup
from imgcomp.nn.channel_norm import ChannelNorm2D

__all__ = ["hific_after_resize", "hific_channel_groups"]

_ENC = ("encoder",)
_GEN = ("generator",)
_PROB = ("probability",)


def _out(conv: str, transposed: bool = False) -> list[ChannelSlice]:
    """A conv's output channels: weight (dim 0; a transposed conv's dim 1) and bias."""
    return [ChannelSlice(f"{conv}.weight", 1 if transposed else 0), ChannelSlice(f"{conv}.bias", 0)]


def _in(conv: str, transposed: bool = False) -> ChannelSlice:
    """A conv's input channels (dim 1; a transposed conv's dim 0)."""
    return ChannelSlice(f"{conv}.weight", 0 if transposed else 1)


def _norm(norm: str) -> list[ChannelSlice]:
    """A ChannelNorm2D's gamma / beta, [1, C, 1, 1]."""
    return [ChannelSlice(f"{norm}.gamma", 1), ChannelSlice(f"{norm}.beta", 1)]


def _group(name: str, components: tuple[str, ...], units: int, *slices) -> PrunableGroup:
    flat: list[ChannelSlice] = []
    for s in slices:
        flat.extend(s if isinstance(s, list) else [s])
    return PrunableGroup(name, components, int(units), tuple(flat))


def hific_channel_groups(model: nn.Module) -> list[PrunableGroup]:
    """The channel groups of a :class:`HiFiC` (see the module docstring)."""
    assert isinstance(model, HiFiC)
    enc, gen, hp = model.Encoder, model.Generator, model.Hyperprior
    groups = []
    # encoder: conv_block{i} = (pad, conv, norm, relu)
    for i in range(1, 6):
        block = f"Encoder.conv_block{i}"
        reader = f"Encoder.conv_block{i + 1}.1" if i < 5 else "Encoder.conv_block_out.1"
        units = getattr(enc, f"conv_block{i}")[1].out_channels
        groups.append(
            _group(block, _ENC, units, _out(f"{block}.1"), _norm(f"{block}.2"), _in(reader))
        )
    # the latent C
    latent = [
        *_out("Encoder.conv_block_out.1"),
        *_norm("Generator.conv_block_init.0"),
        _in("Generator.conv_block_init.2"),
        _in("Hyperprior.analysis_net.conv1"),
        *_out("Hyperprior.synthesis_mu.conv3", transposed=True),
        *_out("Hyperprior.synthesis_std.conv3", transposed=True),
    ]
    if model.has_discriminator:
        latent.append(_in("Discriminator.context_conv"))
    groups.append(
        _group("latent", ("encoder", "generator", "probability"), model.latent_channels, latent)
    )
    # generator: the residual stream, one group
    stream = [*_out("Generator.conv_block_init.2"), *_norm("Generator.conv_block_init.3")]
    for m in range(gen.n_residual_blocks):
        b = f"Generator.resblock_{m}"
        stream += [_in(f"{b}.conv1"), *_out(f"{b}.conv2"), *_norm(f"{b}.norm2")]
    stream.append(_in("Generator.upconv_block1.0", transposed=True))
    groups.append(_group("Generator.residual", _GEN, gen.conv_block_init[2].out_channels, stream))
    for m in range(gen.n_residual_blocks):
        b = f"Generator.resblock_{m}"
        units = getattr(gen, f"resblock_{m}").conv1.out_channels
        groups.append(
            _group(b, _GEN, units, _out(f"{b}.conv1"), _norm(f"{b}.norm1"), _in(f"{b}.conv2"))
        )
    # generator: upconv_block{i} = (deconv, norm, relu)
    for i in range(1, 5):
        block = f"Generator.upconv_block{i}"
        if i < 4:
            reader = _in(f"Generator.upconv_block{i + 1}.0", transposed=True)
        else:
            reader = _in("Generator.conv_block_out.1")
        units = getattr(gen, f"upconv_block{i}")[0].out_channels
        groups.append(
            _group(block, _GEN, units, _out(f"{block}.0", True), _norm(f"{block}.1"), reader)
        )
    # hyperprior: the hidden layers of each transform
    for t in HYPER_TRANSFORMS:
        transposed = t != "analysis_net"
        net = getattr(hp, t)
        for k in (1, 2):
            conv = f"Hyperprior.{t}.conv{k}"
            units = getattr(net, f"conv{k}").out_channels
            reader = _in(f"Hyperprior.{t}.conv{k + 1}", transposed)
            groups.append(_group(conv, _PROB, units, _out(conv, transposed), reader))
    # the hyper-latent N
    density = hp.hyperlatent_likelihood
    per_channel = [
        ChannelSlice(f"Hyperprior.hyperlatent_likelihood.{p}_{k}", 0)
        for k in range(density.n_layers)
        for p in "Hab"
    ]
    groups.append(
        _group(
            "hyperlatent",
            _PROB,
            model.hyperlatent_filters,
            _out("Hyperprior.analysis_net.conv3"),
            _in("Hyperprior.synthesis_mu.conv1", True),
            _in("Hyperprior.synthesis_std.conv1", True),
            per_channel,
        )
    )
    return groups


def hific_after_resize(model: nn.Module) -> None:
    """Norms' ``channels``, the density's ``channels`` and the model's widths (its ``config``)
    from the sliced weights."""
    assert isinstance(model, HiFiC)
    for module in model.modules():
        if isinstance(module, ChannelNorm2D) and module.affine:
            module.channels = int(module.gamma.shape[1])
    enc, gen, hp = model.Encoder, model.Generator, model.Hyperprior
    c = int(enc.conv_block_out[1].out_channels)
    n = int(hp.analysis_net.conv3.out_channels)
    model.latent_channels = hp.latent_channels = c
    model.hyperlatent_filters = hp.hyperlatent_filters = n
    hp.hyperlatent_likelihood.channels = n
    model.filters = tuple(int(getattr(enc, f"conv_block{i}")[1].out_channels) for i in range(1, 6))
    model.generator_filters = (
        int(gen.conv_block_init[2].out_channels),
        *(int(getattr(gen, f"upconv_block{i}")[0].out_channels) for i in range(1, 4)),
        int(gen.conv_block_out[1].in_channels),
    )
    model.residual_widths = tuple(
        int(getattr(gen, f"resblock_{m}").conv1.out_channels) for m in range(gen.n_residual_blocks)
    )
    model.hyper_widths = {
        t: (int(getattr(hp, t).conv1.out_channels), int(getattr(hp, t).conv2.out_channels))
        for t in HYPER_TRANSFORMS
    }
