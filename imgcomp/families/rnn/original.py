"""The original checkpoints of ``1zb/pytorch-image-comp-rnn``: three bare state dicts.

``train.py`` saves ``encoder_{epoch|iter}_{index:08d}.pth`` and its ``binarizer_`` and
``decoder_`` siblings, with tensors on CUDA; ``encoder.py`` is given the encoder file and finds
the other two by replacing ``encoder`` in the name. This module does the same (in the file name
only), reads each file with ``weights_only`` onto the CPU and loads it strictly into the module
of the original widths: a missing sibling, a foreign or code-carrying file, a missing or extra
key and a wrong shape are :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgcomp.checkpoints import load_plain, load_state_strict
from imgcomp.errors import CheckpointError
from imgcomp.families.rnn.model import TodericiRNN

__all__ = ["PARTS", "load_original", "original_paths"]

#: The three files, in the order the original saves them, by the module each holds.
PARTS = ("encoder", "binarizer", "decoder")


def original_paths(encoder_file: str | os.PathLike[str]) -> dict[str, Path]:
    """The encoder file and its binarizer / decoder siblings (``encoder`` replaced in the name)."""
    path = Path(encoder_file)
    if "encoder" not in path.name:
        raise CheckpointError(
            f"{os.fspath(path)!r}: an original RNN checkpoint is named encoder_*.pth (its "
            "binarizer_ and decoder_ siblings are found by that name)"
        )
    return {part: path.with_name(path.name.replace("encoder", part)) for part in PARTS}


def load_original(encoder_file: str | os.PathLike[str]) -> TodericiRNN:
    """The model of an original checkpoint triple, at the original widths, in eval mode."""
    model = TodericiRNN()
    for part, path in original_paths(encoder_file).items():
        if not path.is_file():
            raise CheckpointError(
                f"{os.fspath(path)!r} is missing: the original RNN checkpoint needs the "
                f"{part} file beside {Path(encoder_file).name}"
            )
        load_state_strict(
            getattr(model, part), load_plain(path), os.fspath(path), f"the original {part}"
        )
    return model.eval()
