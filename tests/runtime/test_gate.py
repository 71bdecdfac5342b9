"""The one gate and its measurements (``edgecnn.runtime.gate``): numpy only, small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecnn.runtime.gate import (
    DEFAULT_MAX_ACCURACY_DROP_PP,
    DEFAULT_MAX_PROB_DIFF,
    DEFAULT_MIN_AGREEMENT,
    GATES,
    Gate,
    Scores,
    accuracy,
    agreement_floor,
    compare,
    default_gate,
    predicted,
    top1_agreement,
)


def _probs(classes, n_classes=3, peak=0.8):
    """Rows whose top-1 class is ``classes``, summing to 1."""
    rest = (1 - peak) / (n_classes - 1)
    rows = np.full((len(classes), n_classes), rest, dtype=np.float32)
    rows[np.arange(len(classes)), classes] = peak
    return rows


def _scores(agreement=1.0, acc=0.9, ref_acc=0.9, diff=0.0, images=500):
    return Scores(acc, ref_acc, agreement, images, diff)


# ---- the measurements ---------------------------------------------------------------------


def test_compare_measures_agreement_accuracy_and_per_class():
    # Keras answers 0 1 2 0 1 2; the file moves the last two. Labels for the first five.
    keras = _probs([0, 1, 2, 0, 1, 2])
    probs = _probs([0, 1, 2, 0, 2, 0], peak=0.7)
    labels = np.array([0, 1, 2, 1, 1])
    s = compare(probs, keras, labels)
    assert s.agreement == pytest.approx(4 / 6) and s.agreement_images == 6
    assert s.reference_accuracy == pytest.approx(4 / 5)  # 0 1 2 0 1 vs 0 1 2 1 1
    assert s.accuracy == pytest.approx(3 / 5)  # 0 1 2 0 2 vs 0 1 2 1 1
    assert s.delta_pp == pytest.approx(-20.0)
    # class 0: 1 of 1; class 1: 1 of 3 (rows 1, 3, 4); class 2: 1 of 1
    assert s.per_class_accuracy == pytest.approx((1.0, 1 / 3, 1.0))
    assert s.max_prob_diff == pytest.approx(0.8 - 0.15)


def test_the_helpers_are_what_compare_uses():
    keras, probs = _probs([0, 1, 2, 2]), _probs([0, 2, 2, 2])
    labels = np.array([0, 1, 2, 0])
    assert list(predicted(probs)) == [0, 2, 2, 2]
    assert top1_agreement(probs, keras) == 0.75 == compare(probs, keras, labels).agreement
    assert accuracy(probs, labels) == 0.5 == compare(probs, keras, labels).accuracy
    assert accuracy(probs, labels[:2]) == 0.5  # only the labelled rows


def test_a_class_absent_from_the_labels_is_not_a_division_by_zero():
    s = compare(_probs([0, 0]), _probs([0, 0]), np.array([0, 0]))
    assert s.per_class_accuracy == (1.0, 0.0, 0.0)


# ---- the gate's verdict -------------------------------------------------------------------


def test_failures_say_what_failed_with_the_limit():
    gate = Gate(0.99, max_accuracy_drop_pp=0.5, max_prob_diff=1e-4)
    assert gate.failures(_scores(agreement=0.995, acc=0.897, diff=5e-5)) == []
    why = gate.failures(_scores(agreement=0.98, acc=0.88, diff=2e-3))
    assert why == [
        "top-1 agreement with Keras 98.00% < 99.00%",
        "accuracy dropped 2.00 pp > 0.50 pp",
        "max probability difference 2.00e-03 > 1e-04",
    ]


def test_failures_print_enough_decimals_to_tell_value_and_limit_apart():
    (why,) = Gate(0.999).failures(_scores(agreement=0.99899))
    assert why == "top-1 agreement with Keras 99.899% < 99.900%"


def test_limits_that_are_not_set_are_not_applied():
    assert Gate(0.5).failures(_scores(agreement=0.6, acc=0.1, diff=1.0)) == []


def test_nan_fails_every_rule():
    gate = Gate(0.0, max_accuracy_drop_pp=100.0, max_prob_diff=1.0)
    nan = math.nan
    why = gate.failures(Scores(nan, 0.9, nan, 10, nan))
    assert [w.split()[0] for w in why] == ["top-1", "accuracy", "max"]
    assert gate.failures(Scores(0.9, nan, 1.0, 10, 0.0)) != []  # the reference's NaN too


def test_the_default_gates():
    assert {p: default_gate(p) for p in DEFAULT_MIN_AGREEMENT} == GATES
    assert GATES["int8"] == Gate(0.99, max_accuracy_drop_pp=0.5)
    assert GATES["float32"] == Gate(0.999, max_prob_diff=1e-4)
    assert GATES["float16"].max_accuracy_drop_pp is GATES["float16"].max_prob_diff is None
    assert set(DEFAULT_MAX_ACCURACY_DROP_PP) | set(DEFAULT_MAX_PROB_DIFF) <= set(GATES)


# ---- the gate on a sample of its images ---------------------------------------------------


def test_the_floor_follows_the_default_gates():
    """At most one file in a million that met its default gate would show less."""
    assert agreement_floor("int8", 500) == pytest.approx(0.962)
    assert agreement_floor("float32", 500) == pytest.approx(0.988)
    assert agreement_floor("int8", 1) == 0.0  # one image proves nothing
    for precision, least in DEFAULT_MIN_AGREEMENT.items():
        floors = [agreement_floor(precision, n) for n in (10, 100, 300, 500)]
        assert floors == sorted(floors) and floors[-1] < least


@pytest.mark.parametrize("precision", list(DEFAULT_MIN_AGREEMENT))
@pytest.mark.parametrize("recorded", [0.0, 0.5, 0.97, 0.99, 0.999, 1.0])
@pytest.mark.parametrize("at_export", [0.0, 0.9, 0.97, 0.995, 1.0])
def test_on_sample_lies_between_the_floor_and_the_gate(precision, recorded, at_export):
    gate = Gate(recorded)
    sample = gate.on_sample(precision, _scores(agreement=at_export))
    floor = agreement_floor(precision, 500)
    assert sample.min_agreement >= floor
    assert sample.min_agreement <= max(floor, recorded)
    assert sample.min_agreement == max(floor, min(recorded, at_export))


def test_on_sample_asks_what_the_file_reached_at_export_on_those_images():
    gate = Gate(0.99, max_accuracy_drop_pp=0.5)
    sample = gate.on_sample("int8", _scores(agreement=0.986, acc=0.88, ref_acc=0.89))
    assert sample.min_agreement == 0.986
    assert sample.max_accuracy_drop_pp == pytest.approx(1.0)  # the export's drop there
    same = gate.on_sample("int8", _scores(agreement=1.0, acc=0.9))
    assert same.min_agreement == gate.min_agreement  # asks no more than the gate


def test_on_sample_lets_each_answer_the_agreement_rule_allows_cost_a_right_one():
    """At 100% agreement at export and a 99% gate, five of 500 answers may change here:
    the accuracy rule must not fail a file the agreement rule accepts for that alone."""
    gate = Gate(0.99, max_accuracy_drop_pp=0.5)
    sample = gate.on_sample("int8", _scores(agreement=1.0, acc=0.9))
    assert sample.max_accuracy_drop_pp == pytest.approx(0.5 + 1.0)
    flipped = _scores(agreement=0.99, acc=0.89, ref_acc=0.9)  # five right answers lost
    assert sample.failures(flipped) == []


def test_on_sample_keeps_the_precisions_probability_limit():
    at_export = _scores()
    assert Gate(0.999).on_sample("float32", at_export).max_prob_diff == 1e-4
    assert Gate(0.999, max_prob_diff=1.0).on_sample("float32", at_export).max_prob_diff == 1e-4
    assert Gate(0.999, max_prob_diff=0.0).on_sample("float32", at_export).max_prob_diff == 0.0
    assert Gate(0.99, max_prob_diff=0.5).on_sample("int8", at_export).max_prob_diff == 0.5
    assert Gate(0.99).on_sample("int8", at_export).max_prob_diff is None


# ---- the gate as a reference records it ---------------------------------------------------


@pytest.mark.parametrize("gate", [*GATES.values(), Gate(0.9, 2.5, 0.01)])
def test_to_dict_and_from_dict_round_trip(gate):
    assert Gate.from_dict(gate.to_dict()) == gate


def test_an_older_reference_without_the_accuracy_drop_reads():
    old = {"min_agreement": 0.99, "max_prob_diff": None, "file": "model_int8.tflite"}
    assert Gate.from_dict(old) == Gate(0.99)


@pytest.mark.parametrize(
    "data,name",
    [
        ({}, "min_agreement"),
        ({"min_agreement": "0.99"}, "min_agreement"),
        ({"min_agreement": True}, "min_agreement"),
        ({"min_agreement": math.nan}, "min_agreement"),
        ({"min_agreement": 0.99, "max_prob_diff": math.inf}, "max_prob_diff"),
        ({"min_agreement": 0.99, "max_accuracy_drop_pp": "0.5"}, "max_accuracy_drop_pp"),
    ],
)
def test_a_bad_limit_is_named(data, name):
    with pytest.raises(ValueError, match=f"^{name} is "):
        Gate.from_dict(data)
