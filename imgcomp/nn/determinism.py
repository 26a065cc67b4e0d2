"""Thread-count-independent evaluation of the entropy parameters.

The decoder must rebuild exactly the scale-table indexes the encoder used; one index off and the
entropy decoder reads garbage. Float convolutions on the CPU sum in an order that depends on the
number of threads, so a stream encoded with 2 threads could fail to decode with 1 (measured on
the shipped mbt2018-mean q3: the hyperprior's scales differed on all 24 Kodak images, 4 indexes
flipped, one stream undecodable). Both sides therefore run the hyper-synthesis on one thread: it
works at 1/64 of the image's resolution, so this costs little. Different CPU instruction sets
can still differ; the stream's index checksum turns that into a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["single_cpu_thread"]


@contextmanager
def single_cpu_thread(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the enclosed torch CPU work on one thread (no-op for other devices), then restore."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
