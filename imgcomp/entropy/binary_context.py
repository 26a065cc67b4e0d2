"""Context-modelled coding of iterative binary codes [T, C, h, w] in {-1, +1} (the RNN codec).

Each bit is coded under P(+1 | context), with contexts the decoder knows before the bit:

* its iteration's bucket (0, 1, 2, 3 and later) and its channel (learned tables only);
* ``s_prev``: the bit at the same place one iteration earlier (or "none" in the first);
* ``s_ch``: the bit at the same place in the previous channel of this iteration (or "none");
* a checkerboard split of every channel: the "anchor" half (``(i + j)`` even) is coded first,
  then the other half knows ``nsum``, the sum of its four anchor neighbours (-4..4).

That is 9 anchor and 81 non-anchor contexts. Decoding goes channel by channel, anchors then the
rest, so every context is vectorised (two constriction calls per channel). Two models:

* :class:`LearnedContextModel` - fixed 16-bit frequencies per (channel, bucket, context),
  fitted on training codes (:func:`context_counts`, :func:`fit_frequencies`), shipped with the
  weights;
* :class:`AdaptiveContextModel` - no tables: counts per context, pooled over channels, start
  at (1, 1) and are updated after each channel in coding order, identically in the decoder
  (what a model from an original checkpoint, which has no entropy model, uses).

Each iteration is one section (an ANS stream ending in the magic of :mod:`imgcomp.entropy.stream`).
"""

from __future__ import annotations

from collections.abc import Sequence

import constriction
import numpy as np

from imgcomp.entropy.stream import (
    close_decoder,
    decoding_errors,
    new_encoder,
    open_decoder,
    to_bytes,
)
from imgcomp.errors import BitstreamError

__all__ = [
    "CONTEXTS",
    "ITER_BUCKETS",
    "AdaptiveContextModel",
    "ContextBitCoder",
    "LearnedContextModel",
    "context_counts",
    "contexts",
    "fit_frequencies",
]

ITER_BUCKETS = 4
ANCHOR_CONTEXTS = 9
CONTEXTS = ANCHOR_CONTEXTS + 81
PRECISION = 16
_ONE = 1 << PRECISION
_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _bucket(t: int) -> int:
    return min(t, ITER_BUCKETS - 1)


def _anchor_mask(h: int, w: int) -> np.ndarray:
    i, j = np.indices((h, w))
    return (i + j) % 2 == 0


def _neighbour_sum(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Sum of the four neighbours of every place over the anchor values only ([..., h, w])."""
    a = np.where(anchors, x, 0).astype(np.int8)
    pad = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    return pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1] + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:]


def contexts(cur: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """The context (0..89) of every bit of one iteration ``cur`` [C, h, w] (int8 +-1), given
    the previous iteration ``prev`` (None in the first): what the decoder knows at that bit."""
    _, h, w = cur.shape
    anchors = _anchor_mask(h, w)
    s_prev = (prev + 1) if prev is not None else np.ones_like(cur)  # 0, 2 or 1 (none)
    s_ch = np.concatenate([np.ones_like(cur[:1]), cur[:-1] + 1])
    nsum = _neighbour_sum(cur, anchors) + 4
    ctx_anchor = s_prev * 3 + s_ch
    ctx_other = ANCHOR_CONTEXTS + s_prev * 27 + s_ch * 9 + nsum
    return np.where(anchors, ctx_anchor, ctx_other).astype(np.int64)


def _order(h: int, w: int) -> np.ndarray:
    """Flat indices of one channel in coding order: anchors, then the rest (raster order)."""
    anchors = _anchor_mask(h, w).reshape(-1)
    return np.concatenate([np.flatnonzero(anchors), np.flatnonzero(~anchors)])


def _rows(q: np.ndarray) -> np.ndarray:
    """constriction weights [n, 2] for P(+1) = q / 2**16 that quantize exactly (see
    :func:`imgcomp.entropy.tables.categorical_model`)."""
    q = q.astype(np.int64)
    return (np.stack([_ONE - q, q], axis=1) * (1 << (24 - PRECISION)) - 1).astype(np.float64)


def context_counts(codes: np.ndarray) -> np.ndarray:
    """Counts [C, ITER_BUCKETS, CONTEXTS, 2] of (-1, +1) per context in codes [T, C, h, w]."""
    codes = np.asarray(codes, dtype=np.int8)
    t_, c_, _, _ = codes.shape
    counts = np.zeros((c_, ITER_BUCKETS, CONTEXTS, 2), np.int64)
    for t in range(t_):
        ctx = contexts(codes[t], codes[t - 1] if t else None)
        ones = (codes[t] > 0).astype(np.int64)
        for c in range(c_):
            idx = ctx[c].reshape(-1) * 2 + ones[c].reshape(-1)
            counts[c, _bucket(t)] += np.bincount(idx, minlength=CONTEXTS * 2).reshape(CONTEXTS, 2)
    return counts


def fit_frequencies(counts: np.ndarray, prior: float = 0.5) -> np.ndarray:
    """16-bit P(+1) frequencies (int32, 1..2**16-1) of counts [..., 2] with a ``prior`` count."""
    counts = np.asarray(counts, dtype=np.float64)
    p = (counts[..., 1] + prior) / (counts.sum(-1) + 2 * prior)
    return np.clip(np.round(p * _ONE), 1, _ONE - 1).astype(np.int32)


class ContextBitCoder:
    """Shared coding loop: ``_probs(t, c, ctx, state)`` gives the frequencies of channel ``c``."""

    def __init__(self, channels: int) -> None:
        self.channels = int(channels)

    def _new_state(self) -> object:
        return None

    def _probs(self, t: int, c: int, ctx: np.ndarray, state: object) -> np.ndarray:
        raise NotImplementedError

    def _update(self, t: int, ctx: np.ndarray, bits: np.ndarray, state: object) -> None:
        """Called after each channel of iteration ``t`` with its contexts and 0/1 bits."""

    def encode(self, codes: np.ndarray) -> list[bytes]:
        """One section per iteration of codes [T, C, h, w] (int8 or float, +-1)."""
        codes = np.asarray(codes).astype(np.int8)
        t_, c_, h, w = codes.shape
        if c_ != self.channels:
            raise ValueError(f"codes have {c_} channels, the model {self.channels}")
        order = _order(h, w)
        state = self._new_state()
        out = []
        for t in range(t_):
            ctx = contexts(codes[t], codes[t - 1] if t else None).reshape(c_, -1)[:, order]
            bits = (codes[t] > 0).reshape(c_, -1)[:, order].astype(np.int32)
            probs = []
            for c in range(c_):
                probs.append(self._probs(t, c, ctx[c], state))
                self._update(t, ctx[c], bits[c], state)
            coder = new_encoder()
            coder.encode_reverse(bits.reshape(-1), _FAMILY, _rows(np.concatenate(probs)))
            out.append(to_bytes(coder))
        return out

    def decode(self, sections: Sequence[bytes], h: int, w: int) -> np.ndarray:
        """Codes [T, C, h, w] (int8 +-1) of one section per iteration."""
        c_ = self.channels
        anchors = _anchor_mask(h, w).reshape(-1)
        order = _order(h, w)
        n_anchor = int(anchors.sum())
        state = self._new_state()
        prev: np.ndarray | None = None
        out = []
        for t, data in enumerate(sections):
            cur = np.zeros((c_, h * w), np.int8)
            coder = open_decoder(data)
            with decoding_errors():
                for c in range(c_):
                    s_prev = (prev[c].reshape(-1) + 1) if prev is not None else np.ones(h * w)
                    s_ch = (cur[c - 1] + 1) if c else np.ones(h * w, np.int8)
                    ctx = np.empty(h * w, np.int64)
                    ctx[anchors] = (s_prev * 3 + s_ch)[anchors]
                    pos_a = order[:n_anchor]
                    q_a = self._probs(t, c, ctx[pos_a], state)
                    cur[c, pos_a] = coder.decode(_FAMILY, _rows(q_a)) * 2 - 1
                    nsum = _neighbour_sum(cur[c].reshape(h, w), anchors.reshape(h, w)) + 4
                    pos_o = order[n_anchor:]
                    ctx[pos_o] = (ANCHOR_CONTEXTS + s_prev * 27 + s_ch * 9 + nsum.reshape(-1))[
                        pos_o
                    ]
                    q_o = self._probs(t, c, ctx[pos_o], state)
                    if pos_o.size:
                        cur[c, pos_o] = coder.decode(_FAMILY, _rows(q_o)) * 2 - 1
                    self._update(t, ctx[order], (cur[c, order] > 0).astype(np.int32), state)
                close_decoder(coder)
            prev = cur.reshape(c_, h, w)
            out.append(prev)
        return np.stack(out)

    def bits(self, codes: np.ndarray) -> np.ndarray:
        """Ideal code length (bits) of every bit of codes [T, C, h, w], coding order aside."""
        codes = np.asarray(codes).astype(np.int8)
        t_, c_, h, w = codes.shape
        order = _order(h, w)
        state = self._new_state()
        out = np.zeros((t_, c_, h * w))
        for t in range(t_):
            ctx = contexts(codes[t], codes[t - 1] if t else None).reshape(c_, -1)[:, order]
            ones = (codes[t] > 0).reshape(c_, -1)[:, order]
            for c in range(c_):
                q = self._probs(t, c, ctx[c], state) / _ONE
                out[t, c, order] = -np.log2(np.where(ones[c], q, 1 - q))
                self._update(t, ctx[c], ones[c].astype(np.int32), state)
        return out.reshape(t_, c_, h, w)


class LearnedContextModel(ContextBitCoder):
    """Fixed P(+1) frequencies [C, ITER_BUCKETS, CONTEXTS] (int, 1..2**16-1)."""

    def __init__(self, freqs: np.ndarray) -> None:
        freqs = np.asarray(freqs)
        if freqs.ndim != 3 or freqs.shape[1:] != (ITER_BUCKETS, CONTEXTS):
            raise ValueError(f"freqs must be [C, {ITER_BUCKETS}, {CONTEXTS}], got {freqs.shape}")
        if freqs.size and (int(freqs.min()) < 1 or int(freqs.max()) >= _ONE):
            raise ValueError("frequencies must be in 1..2**16-1")
        super().__init__(freqs.shape[0])
        self.freqs = freqs.astype(np.int64)

    def _probs(self, t: int, c: int, ctx: np.ndarray, state: object) -> np.ndarray:
        return self.freqs[c, _bucket(t)][ctx]


class AdaptiveContextModel(ContextBitCoder):
    """Per-context counts pooled over channels, from (1, 1), updated after each channel."""

    def _new_state(self) -> np.ndarray:
        return np.ones((ITER_BUCKETS, CONTEXTS, 2), np.int64)

    def _probs(self, t: int, c: int, ctx: np.ndarray, state: np.ndarray) -> np.ndarray:
        n = state[_bucket(t)]
        # integer arithmetic only: the decoder reproduces it bit for bit
        q = (n[:, 1] * _ONE + n.sum(1) // 2) // n.sum(1)
        return np.clip(q, 1, _ONE - 1)[ctx]

    def _update(self, t: int, ctx: np.ndarray, bits: np.ndarray, state: np.ndarray) -> None:
        idx = ctx * 2 + bits
        state[_bucket(t)] += np.bincount(idx, minlength=CONTEXTS * 2).reshape(CONTEXTS, 2)


def check_sections(sections: Sequence[bytes], max_iterations: int) -> None:
    """BitstreamError unless 1..max_iterations sections are present."""
    if not 1 <= len(sections) <= max_iterations:
        raise BitstreamError(
            f"binary stream must have 1..{max_iterations} sections (one per iteration), "
            f"has {len(sections)}"
        )
