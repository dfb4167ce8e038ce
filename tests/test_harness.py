"""The harness itself: the bit rule fails where bits differ, and the differential builds differ only in the class."""

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from harness import (
    OURS,
    OURS_REFERENCE_GRAPH,
    REFERENCE,
    assert_bits_equal,
    assert_same_as_tf1,
    bits_record,
    differential,
    from_bits_record,
    twin,
)

v1 = tf.compat.v1
BF16 = ml_dtypes.bfloat16


def test_equal_nests_of_numbers_strings_and_none_pass():
    """Equal nests pass: arrays, NumPy and Python scalars, strings and None, dict keys in any order."""
    value = {"b": [np.float32([1.0, -2.0]), (3, "x")], "a": None, "c": np.array([1.5], BF16)}
    assert_bits_equal(value, {"a": None, "c": np.array([1.5], BF16), "b": [np.float32([1.0, -2.0]), (3, "x")]})


@pytest.mark.parametrize(
    "ref, ours, message",
    [
        (np.float32([0.0]), np.float32([-0.0]), r"(?s)value: 1 of 1 float32 elements differ.*0x00000000.*0x80000000"),
        (np.uint32([0x7FC00000]).view(np.float32), np.uint32([0x7FC00001]).view(np.float32), "differ in their bits"),
        (np.float32(1.0), np.float64(1.0), "dtype float32 .reference. != float64"),
        (np.zeros((2, 3)), np.zeros((3, 2)), r"shape \(2, 3\)"),
        ({"w": [1.0, 2.0]}, {"w": [1.0, 2.5]}, r"value\['w'\]\[1\]"),
        ({"w": 1.0}, {"v": 1.0}, "keys only in the reference"),
        ((1.0,), [1.0], "tuple"),
        ([1.0], [1.0, 2.0], "length 1"),
        ("w:0", "w_1:0", "'w:0' .reference. != 'w_1:0'"),
        (1.0, 1, "dtype float64"),
    ],
    ids=["signed_zero", "nan_payload", "dtype", "shape", "path", "keys", "container", "length", "string", "int_float"],
)
def test_any_difference_fails_with_its_path(ref, ours, message):
    """Signed zeros, NaN payloads, dtypes, shapes, keys, containers and strings all fail, naming the leaf."""
    with pytest.raises(AssertionError, match=message):
        assert_bits_equal(ref, ours)


def test_nans_by_position_ignores_only_nan_payloads():
    """nans_by_position=("bfloat16",) lets bfloat16 NaN signs differ, but not NaN positions or other bits."""
    ref = np.array([np.nan, 1.0], BF16)
    ours = np.array([-np.nan, 1.0], BF16)
    with pytest.raises(AssertionError):
        assert_bits_equal(ref, ours)
    assert_bits_equal(ref, ours, nans_by_position=("bfloat16",))
    with pytest.raises(AssertionError):
        assert_bits_equal(ref, np.array([1.0, np.nan], BF16), nans_by_position=("bfloat16",))


def test_bits_records_round_trip_bit_for_bit():
    """A bits_record (dtype, shape, hex bytes) decodes to the very same array, bfloat16 and -0.0 included."""
    for x in (np.array([[-0.0, np.nan]], BF16), np.float16([1e-7, -np.inf]), np.float64(3.0)):
        assert_bits_equal(np.asarray(x), from_bits_record(bits_record(x)))


def test_differential_builds_each_class_in_its_own_fresh_graph():
    """differential() runs the program with TF1's class, ours, and ours with TF1_EMA_FAST=0, each in a fresh graph."""

    def program(cls, amv):
        w = v1.Variable(1.0, name="w")
        cls(0.9).apply([w])
        return cls.__module__, [v.name for v in v1.global_variables()]

    runs = differential(program)
    assert runs[REFERENCE].outcome[1][0].startswith("tensorflow")
    assert runs[OURS].outcome[1][0].startswith("tf1_ema")
    assert runs[OURS_REFERENCE_GRAPH].outcome[1][0].startswith("tf1_ema")
    assert len({id(run.graph) for run in runs.values()}) == 3
    for run in runs.values():
        assert run.outcome[1][1] == ["w:0", "w/ExponentialMovingAverage:0"]


def test_assert_same_as_tf1_fails_on_a_different_value():
    """assert_same_as_tf1 fails when ours returns other bits than TF1's, and when only ours raises."""
    with pytest.raises(AssertionError, match="outcome"):
        assert_same_as_tf1(lambda cls, amv: np.float32(0.0 if cls is v1.train.ExponentialMovingAverage else -0.0))

    def raises_in_ours(cls, amv):
        if cls is not v1.train.ExponentialMovingAverage:
            raise ValueError("ours")
        return 1

    with pytest.raises(AssertionError, match="outcome"):
        assert_same_as_tf1(raises_in_ours)


def test_twin_returns_stock_then_fast():
    """twin(program) builds with TF1's class first, then tf1_ema's, in fresh graphs."""
    stock, fast = twin(lambda cls: (cls.__module__, len(v1.global_variables())))
    assert stock[0].startswith("tensorflow") and fast[0].startswith("tf1_ema")
    assert stock[1] == fast[1] == 0
