"""Original RNN checkpoints (1zb/pytorch-image-comp-rnn): file triple, refusals, seed-0 references.

The references (shared/compat/rnn) were computed by the original code from synthetic weights on a
64x64 crop of kodim23, 2 iterations; see shared/compat/rnn/README.md. Floats are compared with
``atol = 1e-4 * max(1, absmax)``, codes exactly.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import imgcomp
from imgcomp.errors import CheckpointError
from imgcomp.families.rnn.codec import RNNCodec
from imgcomp.families.rnn.model import TodericiRNN
from imgcomp.families.rnn.original import load_original, original_paths

_cache: dict[str, object] = {}


@pytest.fixture
def rnn_case(compat_dir, make_state, tmp_path_factory) -> dict:
    """Seed-0 weights saved as the original triple, the reference tensors, the loaded codec."""
    if not _cache:
        d = compat_dir / "rnn"
        states = make_state.make_state(make_state.load_manifest(d / "rnn.manifest.json"), 0)
        root = tmp_path_factory.mktemp("rnn_ckpt") / "checkpoint"
        root.mkdir()
        for part, sd in states.items():
            torch.save(sd, root / f"{part}_epoch_00000066.pth")
        ref = torch.load(d / "rnn_seed0.pt", map_location="cpu", weights_only=True)
        sha = json.loads((d / "rnn_seed0.state_sha256.json").read_text())
        encoder_file = root / "encoder_epoch_00000066.pth"
        codec = imgcomp.load_codec(
            "toderici2017", checkpoint=encoder_file, format="original", iterations=2
        )
        _cache.update(
            states=states, ref=ref, sha=sha, ms=make_state, file=encoder_file, codec=codec
        )
    return _cache


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, what
    atol = 1e-4 * max(1.0, want.abs().max().item())
    err = (got.float() - want.float()).abs().max().item()
    assert err <= atol, f"{what}: max error {err:.3g} > {atol:.3g}"


def test_generated_weights_match_published_digests(rnn_case):
    for part, sd in rnn_case["states"].items():
        digest, _ = rnn_case["ms"].state_sha256(sd)
        assert digest == rnn_case["sha"][part]["sha256"], part


def test_the_triple_is_found_by_name_and_loaded(rnn_case):
    codec = rnn_case["codec"]
    assert isinstance(codec, RNNCodec) and codec.name == "toderici2017"
    assert codec.params["format"] == "original" and codec.iterations == 2
    model = codec.model
    assert model.config == TodericiRNN().config and not model.training
    for part, sd in rnn_case["states"].items():
        ours = getattr(model, part).state_dict()
        assert list(ours) == list(sd), part
        assert all(torch.equal(ours[k], v) for k, v in sd.items()), part
    paths = original_paths(rnn_case["file"])
    assert paths["decoder"].name == "decoder_epoch_00000066.pth"


def test_each_stage_matches_the_reference(rnn_case):
    ref, model = rnn_case["ref"], rnn_case["codec"].model
    x = ref["input/image"]
    with torch.no_grad():
        enc_state = model.encoder.zero_states(x)
        dec_state = None
        for t in (1, 2):
            encoded, enc_state = model.encoder(ref[f"iter{t}/res_in"], enc_state)
            _close(encoded, ref[f"iter{t}/encoded"], f"iter{t} encoder")
            _close(enc_state[2][0], ref[f"iter{t}/encoder_rnn3_h"], f"iter{t} encoder rnn3 h")
            _close(enc_state[2][1], ref[f"iter{t}/encoder_rnn3_c"], f"iter{t} encoder rnn3 c")
            conv = model.binarizer.conv(ref[f"iter{t}/encoded"])
            _close(conv, ref[f"iter{t}/binarizer_conv"], f"iter{t} binarizer conv")
            assert torch.equal(model.binarizer(ref[f"iter{t}/encoded"]), ref[f"iter{t}/codes"])
            codes = ref[f"iter{t}/codes"]
            if dec_state is None:
                dec_state = model.decoder.zero_states(codes)
            out, dec_state = model.decoder(codes, dec_state)
            _close(out, ref[f"iter{t}/decoder_out"], f"iter{t} decoder")
            _close(dec_state[0][0], ref[f"iter{t}/decoder_rnn1_h"], f"iter{t} decoder rnn1 h")
            _close(dec_state[0][1], ref[f"iter{t}/decoder_rnn1_c"], f"iter{t} decoder rnn1 c")
            _close(ref[f"iter{t}/res_in"] - out, ref[f"iter{t}/res_out"], f"iter{t} residual")


def test_the_chained_loop_matches_the_reference(rnn_case):
    ref, model = rnn_case["ref"], rnn_case["codec"].model
    with torch.no_grad():
        codes = model.analysis(ref["input/image"], 2)
        assert torch.equal(codes, torch.cat([ref["iter1/codes"], ref["iter2/codes"]]))
        _close(model.synthesis(codes[:1]), ref["iter1/recon"], "recon after 1 iteration")
        _close(model.synthesis(codes), ref["iter2/recon"], "recon after 2 iterations")


def test_streams_of_an_original_checkpoint_decode_to_its_reconstruction(rnn_case):
    codec, ref = rnn_case["codec"], rnn_case["ref"]
    img = ref["input/uint8"][0].permute(1, 2, 0).numpy()
    data = codec.encode(img)
    assert np.array_equal(codec.decode(data), codec.reconstruct(img))
    with pytest.raises(imgcomp.CodecMismatchError, match="checkpoint="):
        imgcomp.decode_stream(data)  # a stream never makes the decoder read a file
    # the same codes as the original encoder.py's code file, and back through decode_npz
    npz = codec.encode_npz(img)
    with np.load(__import__("io").BytesIO(npz)) as f:
        assert f["shape"].tolist() == [2, 1, 32, 4, 4]
        bits = np.unpackbits(f["codes"]).reshape(2, 1, 32, 4, 4).astype(np.float32) * 2 - 1
    want = torch.stack([ref["iter1/codes"], ref["iter2/codes"]]).numpy()
    assert np.array_equal(bits, want)
    assert np.array_equal(codec.decode_npz(npz), codec.reconstruct(img))


def _triple(tmp_path: Path, states: dict, skip: str | None = None) -> Path:
    for part, sd in states.items():
        if part != skip:
            torch.save(sd, tmp_path / f"{part}_iter_00000500.pth")
    return tmp_path / "encoder_iter_00000500.pth"


def test_a_missing_sibling_is_a_checkpoint_error(rnn_case, tmp_path):
    path = _triple(tmp_path, rnn_case["states"], skip="binarizer")
    with pytest.raises(CheckpointError, match=r"binarizer_iter_00000500\.pth.*missing"):
        load_original(path)


def test_a_file_not_named_encoder_is_refused(rnn_case, tmp_path):
    path = _triple(tmp_path, rnn_case["states"])
    other = path.with_name("model.pth")
    path.rename(other)
    with pytest.raises(CheckpointError, match="encoder_"):
        load_original(other)


def test_wrong_shapes_and_keys_are_refused(rnn_case, tmp_path):
    states = {k: dict(v) for k, v in rnn_case["states"].items()}
    states["decoder"]["rnn4.conv_hh.weight"] = torch.zeros(512, 128, 1, 1)
    with pytest.raises(CheckpointError, match=r"rnn4.conv_hh.weight.*\[512, 128, 1, 1\]"):
        load_original(_triple(tmp_path, states))
    states = {k: dict(v) for k, v in rnn_case["states"].items()}
    states["encoder"]["rnn1.conv_ih.bias"] = torch.zeros(1024)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*rnn1\.conv_ih\.bias"):
        load_original(_triple(tmp_path, states))


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_foreign_and_code_carrying_files_are_refused(rnn_case, tmp_path):
    path = _triple(tmp_path, rnn_case["states"])
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"encoder_iter_00000500\.pth"):
        load_original(path)
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": _Payload()}, f)
    with pytest.raises(CheckpointError):
        load_original(path)
    torch.save({"conv.weight": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_original(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_original(path)
