"""The RNN's channel groups for structured pruning (declared; :mod:`imgcomp.ops.structured`
slices them).

* ``encoder.conv`` (its output channels): also the input channels of ``encoder.rnn1.conv_ih``.
* each ConvLSTM's hidden channels: channel ``j`` is gate rows ``j, H+j, 2H+j, 3H+j`` of
  ``conv_ih`` and ``conv_hh``, input ``j`` of ``conv_hh``, and input ``j`` of the next layer
  (the next cell's ``conv_ih``; after ``encoder.rnn3`` the binarizer's conv, which stays in the
  encoder's group: the code width, 32 bits per position, is the stream format and never pruned).
  A decoder cell is followed by a 2x pixel shuffle, so its hidden channels go in aligned blocks
  of 4 (block ``m`` is channel ``m`` of the next layer's input).
* ``decoder.conv1`` (its outputs): also the inputs of ``decoder.rnn1.conv_ih``.
"""

from __future__ import annotations

from torch import nn

from imgcomp.families.rnn.model import TodericiRNN
from imgcomp.families.spec import ChannelSlice, PrunableGroup

__all__ = ["rnn_after_resize", "rnn_channel_groups"]


def _cell_slices(cell: str, hidden: int, block: int) -> list[ChannelSlice]:
    return [
        ChannelSlice(f"{cell}.conv_ih.weight", 0, block=block, repeats=4, stride=hidden),
        ChannelSlice(f"{cell}.conv_hh.weight", 0, block=block, repeats=4, stride=hidden),
        ChannelSlice(f"{cell}.conv_hh.weight", 1, block=block),
    ]


def rnn_channel_groups(model: nn.Module) -> list[PrunableGroup]:
    """The channel groups of a :class:`TodericiRNN` (see the module docstring)."""
    assert isinstance(model, TodericiRNN)
    enc, dec = model.encoder, model.decoder
    groups = [
        PrunableGroup(
            "encoder.conv",
            ("encoder",),
            enc.conv.out_channels,
            (
                ChannelSlice("encoder.conv.weight", 0),
                ChannelSlice("encoder.rnn1.conv_ih.weight", 1),
            ),
        )
    ]
    readers = ["encoder.rnn2.conv_ih", "encoder.rnn3.conv_ih", "binarizer.conv"]
    for k, (cell, reader) in enumerate(zip(enc.cells, readers, strict=True), 1):
        name = f"encoder.rnn{k}"
        slices = [*_cell_slices(name, cell.hidden_channels, 1), ChannelSlice(f"{reader}.weight", 1)]
        groups.append(PrunableGroup(name, ("encoder",), cell.hidden_channels, tuple(slices)))
    groups.append(
        PrunableGroup(
            "decoder.conv1",
            ("decoder",),
            dec.conv1.out_channels,
            (
                ChannelSlice("decoder.conv1.weight", 0),
                ChannelSlice("decoder.rnn1.conv_ih.weight", 1),
            ),
        )
    )
    readers = [
        "decoder.rnn2.conv_ih",
        "decoder.rnn3.conv_ih",
        "decoder.rnn4.conv_ih",
        "decoder.conv2",
    ]
    for k, (cell, reader) in enumerate(zip(dec.cells, readers, strict=True), 1):
        name = f"decoder.rnn{k}"
        h = cell.hidden_channels
        slices = [*_cell_slices(name, h, 4), ChannelSlice(f"{reader}.weight", 1)]
        groups.append(PrunableGroup(name, ("decoder",), h // 4, tuple(slices)))
    return groups


def rnn_after_resize(model: nn.Module) -> None:
    """Cells' ``hidden_channels`` and the model's widths from the sliced weights."""
    assert isinstance(model, TodericiRNN)
    for cell in (*model.encoder.cells, *model.decoder.cells):
        cell.hidden_channels = int(cell.conv_hh.weight.shape[1])
    model.encoder_widths = (
        int(model.encoder.conv.out_channels),
        *(c.hidden_channels for c in model.encoder.cells),
    )
    model.decoder_widths = (
        int(model.decoder.conv1.out_channels),
        *(c.hidden_channels for c in model.decoder.cells),
    )
