"""Loaders for checkpoints written by other implementations of the codecs imgcomp re-implements."""

from imgcomp.compat.compressai import convert_compressai_state_dict, load_compressai

__all__ = ["convert_compressai_state_dict", "load_compressai"]
