"""Typed op configs: one grammar for case-id tags and fingerprint records, both ways."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgcomp
from imgcomp.errors import ImgcompError
from imgcomp.ops.config import (
    BALLE_COMPONENTS,
    MODES,
    Bf16,
    Int8,
    L1Prune,
    OpConfigError,
    StructuredPrune,
    WeightOnly,
    parse_record,
    parse_tag,
    quant_config,
)

#: Records the code wrote before the op configs existed (the stream fingerprints depend on them):
#: each parses to a config whose record is the same string, byte for byte.
TODAY_RECORDS = [
    "prune=enc0.3,dec0.3,ent0.3:l1-layer",
    "prune=enc0.5,dec0.5,ent0.5:l1-global",
    "prune=enc0.3,dec0.3,ent0.3:structured-l1:round4",
    "quantize:bf16:encoder+decoder+entropy",
    "quantize:int8:encoder+decoder+entropy",
    "quantize:w8:encoder+decoder+entropy",
    "prune=enc0.3,dec0,ent0.3:l1-layer",
    "prune=enc1e-05,dec0.999,ent0.125:l1-global",
    "prune=enc0.25,dec0.3,ent0:structured-l2",
    "prune=enc0.3,dec0.3,ent0.3:structured-activation:round4:recover2@0.0067",
    "prune=enc0.3,dec0.3,ent0.3:structured-activation:round4:recover300@0.0067",
    "prune=enc0,dec0.5,ent0:structured-l1:recover1@0.01",
    "quantize:int8:decoder;deconv=native;float_activations=[]",
    "quantize:int8:decoder+encoder;float_activations=['g_s.0'];gdn=float",
    "quantize:w4:encoder+decoder",
    "quantize:bf16:entropy",
    "quantize:w2:encoder+decoder+entropy",
]

ALL3 = {"encoder": 0.3, "decoder": 0.3, "entropy": 0.3}


@pytest.mark.parametrize("record", TODAY_RECORDS)
def test_todays_records_read_back_byte_identical(record: str) -> None:
    assert parse_record(record).record() == record


def test_configs_write_todays_records_and_tags() -> None:
    half = {"encoder": 0.5, "decoder": 0.5, "entropy": 0.5}
    expected = [
        (L1Prune(ALL3), "enc0.3,dec0.3,ent0.3:l1", "prune=enc0.3,dec0.3,ent0.3:l1-layer"),
        (L1Prune(half, scope="global"), "enc0.5,dec0.5,ent0.5:l1-global", TODAY_RECORDS[1]),
        (
            StructuredPrune(ALL3, round_to=4),
            "enc0.3,dec0.3,ent0.3:structured",
            "prune=enc0.3,dec0.3,ent0.3:structured-l1:round4",
        ),
        (
            StructuredPrune(
                ALL3, importance="activation", recover_steps=300, lmbda=0.0067, round_to=4
            ),
            "enc0.3,dec0.3,ent0.3:structured",
            TODAY_RECORDS[10],
        ),
        (Bf16(), "bf16", "quantize:bf16:encoder+decoder+entropy"),
        (Int8(), "int8", "quantize:int8:encoder+decoder+entropy"),
        (WeightOnly(8), "w8", "quantize:w8:encoder+decoder+entropy"),
    ]
    for config, tag, record in expected:
        assert (config.tag, config.record()) == (tag, record)
        assert parse_record(record) == config
    assert WeightOnly(4, ("encoder", "decoder")).record() == "quantize:w4:encoder+decoder"
    fa = Int8(("decoder", "encoder"), gdn="float", float_activations=["g_s.0"])
    assert fa.record() == TODAY_RECORDS[13]


def test_the_shipped_model_records_its_ops_as_before() -> None:
    codec = imgcomp.create_codec("mbt2018-mean", quality=3)
    l1 = imgcomp.prune(codec, encoder=0.3, decoder=0.3, entropy=0.3)
    assert l1.ops == (TODAY_RECORDS[0],)
    assert imgcomp.prune(codec, L1Prune(ALL3)).fingerprint == l1.fingerprint
    part = imgcomp.prune(codec, L1Prune({"decoder": 0.3}))  # missing components: ratio 0
    assert part.ops == ("prune=enc0,dec0.3,ent0:l1-layer",)
    s = imgcomp.prune(codec, StructuredPrune(ALL3, round_to=4))
    assert s.ops == (TODAY_RECORDS[2],)
    assert imgcomp.quantize(s, WeightOnly(8)).ops == (*s.ops, TODAY_RECORDS[5])
    assert imgcomp.quantize(codec, "bf16").ops == (TODAY_RECORDS[3],)
    with pytest.raises(ImgcompError, match="unknown component 'generator'"):
        imgcomp.prune(codec, L1Prune({"generator": 0.3}))
    with pytest.raises(ImgcompError, match="in the config"):
        imgcomp.prune(codec, L1Prune(ALL3), method="structured")
    with pytest.raises(ImgcompError, match="in the config"):
        imgcomp.quantize(codec, Bf16(), components=("decoder",))


#: Ratios as records write them (``%g``: 6 significant digits), so they read back equal.
ratio = st.one_of(
    st.sampled_from([0.0, 0.3, 0.5, 0.999, 1e-05]),
    st.floats(min_value=0.0, max_value=0.999, allow_nan=False).map(lambda v: float(f"{v:g}")),
)
ratios = st.tuples(ratio, ratio, ratio).map(lambda r: dict(zip(BALLE_COMPONENTS, r, strict=True)))


@settings(max_examples=200, deadline=None)
@given(ratios, st.sampled_from(["layer", "global"]))
def test_l1_round_trips(values: dict[str, float], scope: str) -> None:
    config = L1Prune(values, scope=scope)
    assert parse_record(config.record()) == config
    assert parse_tag(config.tag) == config
    assert parse_tag(config.tag).tag == config.tag


@settings(max_examples=200, deadline=None)
@given(
    ratios,
    st.sampled_from(["l1", "l2", "activation"]),
    st.integers(0, 1000),
    st.floats(min_value=1e-6, max_value=1e3, allow_nan=False),
    st.one_of(st.none(), st.integers(2, 64)),
)
def test_structured_round_trips(values, importance, steps, lmbda, round_to) -> None:
    config = StructuredPrune(
        values, importance=importance, recover_steps=steps, lmbda=lmbda, round_to=round_to
    )
    back = parse_record(config.record())
    assert back.record() == config.record()
    if steps:  # the record writes lmbda with %g: equal up to that rounding
        assert back.lmbda == pytest.approx(lmbda, rel=1e-5)
    else:
        assert back == StructuredPrune(values, importance=importance, round_to=round_to)
    assert parse_tag(config.tag) == StructuredPrune(values)  # the tag names the method only


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(MODES),
    st.lists(st.sampled_from(BALLE_COMPONENTS), min_size=1, max_size=3, unique=True),
)
def test_quant_round_trips(mode: str, components: list[str]) -> None:
    config = quant_config(mode, components)
    assert parse_record(config.record()) == config
    assert parse_tag(quant_config(mode).tag) == quant_config(mode)


def test_any_component_names() -> None:
    hific = ("encoder", "generator", "probability")
    config = L1Prune({"generator": 0.3}).over(hific)
    assert config.tag == "enc0,gen0.3,pro0:l1"
    assert parse_tag(config.tag, hific) == config
    assert parse_record(config.record(), hific) == config
    with pytest.raises(OpConfigError, match="share the abbreviation 'dec'"):
        L1Prune({"decoder": 0.3, "decimator": 0.1})
    with pytest.raises(OpConfigError, match="share the abbreviation"):
        parse_tag("dec0.3:l1", ("decoder", "decimator"))
    with pytest.raises(OpConfigError, match="unknown component 'hyper'"):
        L1Prune({"hyper": 0.3}).over(BALLE_COMPONENTS)
    assert Bf16(("generator",)).within(hific).record() == "quantize:bf16:generator"
    with pytest.raises(OpConfigError, match="unknown component 'generator'"):
        Bf16(("generator",)).within(BALLE_COMPONENTS)
    with pytest.raises(OpConfigError, match="identifiers"):
        Bf16(("a+b",))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("enc0.3:l1", "every component"),
        ("enc0.3,dec0,ent0:magic", "methods are"),
        ("enc0.3,dec0,ent0:l1-diagonal", "methods are"),
        ("enc0.3,dec0,ent0:l1-layer", "methods are"),  # the record's spelling, not the tag's
        ("enc0.3,dec0,gen0:l1", "ABBR one of enc, dec, ent"),
        ("encx,dec0,ent0:l1", "cannot read 'encx'"),
        ("enc1,dec0,ent0:l1", r"\[0, 1\)"),
        ("enc0.3,enc0,ent0:l1", "twice"),
        ("0.3", "quantization mode"),
        ("int4", "quantization mode"),
        (":l1", "RATIOS:METHOD"),
    ],
)
def test_bad_tags_are_clear_errors(text: str, match: str) -> None:
    with pytest.raises(ImgcompError, match=match):
        parse_tag(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("rot13", "known ops are"),
        ("prune=enc0.3,dec0,ent0:l1", "unknown pruning method"),
        ("prune=enc0.3,dec0,ent0:structured-l3", "importance"),
        ("prune=enc0.3,dec0,ent0:structured-l1:recover5@", "number"),
        ("prune=enc0.3,dec0,ent0:structured-l1:recover5@0.01:round4", "cannot read 'round4'"),
        ("prune=enc0.3,dec0,ent0:structured-l1:round1", "not written as this imgcomp writes"),
        ("prune=enc0.30,dec0,ent0:l1-layer", "not written as this imgcomp writes"),
        ("quantize:int9:encoder", "unknown quantization mode"),
        ("quantize:int8", "quantize:MODE:COMPONENTS"),
        ("quantize:int8:encoder;winograd=1", "unknown option"),
        ("quantize:w8:encoder;deconv=native", "int8 mode only"),
        ("quantize:w8:hyper", "unknown component"),
    ],
)
def test_bad_records_are_clear_errors(text: str, match: str) -> None:
    with pytest.raises(ImgcompError, match=match):
        parse_record(text)


def test_every_full_matrix_case_id_reads_back_to_itself() -> None:
    from bench.cases import all_cases
    from imgcomp.study import parse_case_id

    ids = [c.id for c in all_cases("full")]
    assert any("/prune=" in i for i in ids)
    for case_id in ids:
        family, config = parse_case_id(case_id)
        assert case_id == (f"{family}/{config.label}" if "/prune=" in case_id else family)


def test_a_recovery_without_a_lambda_round_trips() -> None:
    """Objectives without a lambda (the RNN's residual L1) record the steps alone."""
    config = StructuredPrune({"decoder": 0.3}, recover_steps=20)
    record = config.over(("encoder", "binarizer", "decoder")).record()
    assert record.endswith(":structured-l1:recover20")
    back = parse_record(record, ("encoder", "binarizer", "decoder"))
    assert back.recover_steps == 20 and back.lmbda is None
