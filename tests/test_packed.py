"""imgcomp.packed: byte-planed, xz-compressed safetensors that unpack to the exact bytes."""

from __future__ import annotations

import lzma

import pytest
import torch
from safetensors.torch import load, save

from imgcomp.errors import CheckpointError
from imgcomp.packed import (
    MAGIC,
    pack,
    read_safetensors_bytes,
    safetensors_header,
    unpack,
)


def _sample() -> bytes:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "half": torch.randn(64, 33, generator=g).half(),
        "bf16": torch.randn(7, 5, generator=g).bfloat16(),
        "float": torch.randn(11, generator=g),
        "index": torch.arange(9),
        "empty": torch.zeros(0, 3).half(),
    }
    return save(tensors, metadata={"format": "imgcomp.weights/1", "note": "x"})


def test_unpack_gives_back_the_exact_bytes_and_tensors() -> None:
    data = _sample()
    blob = pack(data)
    assert blob.startswith(MAGIC) and unpack(blob) == data
    back, orig = load(unpack(blob)), load(data)
    assert back.keys() == orig.keys()
    assert all(torch.equal(back[k], orig[k]) and back[k].dtype == orig[k].dtype for k in orig)
    tensors, meta, _ = safetensors_header(data)
    assert meta == {"format": "imgcomp.weights/1", "note": "x"}
    assert tensors["half"]["shape"] == [64, 33] and tensors["half"]["dtype"] == "F16"


def test_float16_planes_compress_better_than_xz_alone() -> None:
    t = torch.randn(256, 256, generator=torch.Generator().manual_seed(1)).mul(0.05).half()
    data = save({"w": t})
    assert len(pack(data)) < 0.95 * len(lzma.compress(data, preset=9))


def test_plain_xz_of_a_packed_file_is_not_mistaken_for_one() -> None:
    blob = pack(_sample())
    with pytest.raises(CheckpointError, match=r"no \.imgw magic"):
        unpack(blob[len(MAGIC) :])  # an xz stream without our magic
    with pytest.raises(CheckpointError, match=r"no \.imgw magic"):
        unpack(_sample())  # a plain safetensors file


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated|corrupt"),
        (lambda b: b[:-1], "truncated|corrupt"),
        (lambda b: b + b"tail", "after their end|corrupt"),
        (lambda b: b[:20] + bytes(x ^ 0x5A for x in b[20:60]) + b[60:], "corrupt|truncated"),
        (lambda b: MAGIC, "truncated"),
    ],
)
def test_damaged_packed_files_are_refused(edit, message) -> None:
    with pytest.raises(CheckpointError, match=message):
        unpack(edit(pack(_sample())))


def test_unpacking_is_bounded() -> None:
    data = save({"zeros": torch.zeros(1 << 20, dtype=torch.float16)})  # 2 MiB, packs to ~1 KiB
    blob = pack(data)
    assert len(blob) < 10_000
    with pytest.raises(CheckpointError, match="unpack past 1,000,000 bytes"):
        unpack(blob, max_bytes=1_000_000)
    assert unpack(blob, max_bytes=len(data)) == data


def test_a_header_pointing_outside_the_file_is_refused() -> None:
    data = bytearray(_sample())
    n = int.from_bytes(data[:8], "little")
    header = bytes(data[8 : 8 + n]).replace(b'"data_offsets":[0,', b'"data_offsets":[9999999,', 1)
    bad = len(header).to_bytes(8, "little") + header + bytes(data[8 + n :])
    with pytest.raises(CheckpointError, match=r"lies outside the file|malformed"):
        safetensors_header(bad)
    with pytest.raises(CheckpointError, match="header runs past the end"):
        safetensors_header(b"\xff" * 8 + b"{}")


def test_read_safetensors_bytes_reads_both_kinds_and_sees_a_rewrite(tmp_path) -> None:
    data = _sample()
    plain, packed = tmp_path / "w.safetensors", tmp_path / "w.imgw"
    plain.write_bytes(data)
    packed.write_bytes(pack(data))
    assert read_safetensors_bytes(plain) == data == read_safetensors_bytes(packed)
    other = save({"w": torch.ones(3).half()})
    packed.write_bytes(pack(other))  # a new file at the same path is read again
    assert read_safetensors_bytes(packed) == other
    with pytest.raises(CheckpointError, match="cannot read weights"):
        read_safetensors_bytes(tmp_path / "missing.imgw")


def test_shipped_weights_are_packed_and_load() -> None:
    from imgcomp.train.export import read_metadata, read_weight_shapes, read_weight_tensors
    from imgcomp.zoo import shipped_weights_path

    path = shipped_weights_path("mean-scale-hyperprior", 3)
    assert path.suffix == ".imgw" and path.read_bytes().startswith(MAGIC)
    assert read_metadata(path)["lmbda"] == "0.0067"
    tensors = read_weight_tensors(path)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == read_weight_shapes(path)
    assert tensors["g_a.0.weight"].dtype == torch.float16
    for shipped in sorted(path.parent.glob("*.imgw")):  # every shipped file unpacks and loads
        header, meta, _ = safetensors_header(read_safetensors_bytes(shipped))
        assert meta["format"] == "imgcomp.weights/1", shipped.name
        assert set(load(read_safetensors_bytes(shipped))) == set(header), shipped.name


def test_export_writes_packed_weights_that_load_like_plain_ones(tmp_path) -> None:
    from imgcomp.train import export_weights, load_weights
    from imgcomp.zoo import shipped_weights_path

    src = shipped_weights_path("mean-scale-hyperprior", 3)
    plain = export_weights(src, tmp_path / "q3.safetensors", half=True)
    packed = export_weights(src, tmp_path / "q3.imgw", half=True)
    assert packed.read_bytes().startswith(MAGIC) and not plain.read_bytes().startswith(MAGIC)
    # the same header (safetensors orders metadata keys at random, so not byte for byte)
    assert (
        safetensors_header(read_safetensors_bytes(packed))[:2]
        == safetensors_header(plain.read_bytes())[:2]
    )
    a, b = load_weights(plain).state_dict(), load_weights(packed).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
