"""Pack exported safetensors weights into ``.imgw`` (imgcomp.packed), checking the round trip.

Run (from the repository root)::

    python scripts/pack_weights.py imgcomp/weights/*.safetensors [--remove]

Each ``X.safetensors`` becomes ``X.imgw``, written only once unpacking it gives back the
original bytes exactly; ``--remove`` then deletes the ``.safetensors``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgcomp.packed import SUFFIX, pack, unpack


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--remove", action="store_true", help="delete each source once packed")
    args = p.parse_args()
    before = after = 0
    for src in args.files:
        data = src.read_bytes()
        blob = pack(data)
        if unpack(blob) != data:
            raise SystemExit(f"{src}: the packed file does not unpack to the same bytes")
        dest = src.with_suffix(SUFFIX)
        dest.write_bytes(blob)
        before, after = before + len(data), after + len(blob)
        print(f"{src.name}: {len(data):,} -> {len(blob):,} bytes ({len(blob) / len(data):.3f})")
        if args.remove:
            src.unlink()
    print(f"total: {before:,} -> {after:,} bytes")


if __name__ == "__main__":
    main()
