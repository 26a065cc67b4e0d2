"""The Toderici et al. 2017 RNN codec family: importing it registers its declaration
(:data:`imgcomp.families.rnn.spec.RNN`)."""

from imgcomp.families.rnn.spec import RNN, rnn_latent, rnn_padding
from imgcomp.registry import register_family

register_family(RNN)

from imgcomp.families.rnn import codec  # noqa: E402  registers toderici2017 (needs the family)

__all__ = ["RNN", "codec", "rnn_latent", "rnn_padding"]
