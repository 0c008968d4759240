"""The `evaluate` step's gate: below the threshold, a regression against the served version, pass."""

import pytest
from conftest import CANDIDATE, SERVED, confusion, write_version

from mnist_ddp import model_store
from mnist_pipeline import gate


@pytest.mark.parametrize(
    ("accuracy", "served", "passed", "why"),
    [
        (0.9849, None, False, "accuracy 0.9849 is below min_accuracy 0.9850"),
        (0.9849, 0.9800, False, "accuracy 0.9849 is below min_accuracy 0.9850"),
        (0.9870, 0.9900, False, "accuracy 0.9870 is 0.0030 below the served version's 0.9900, more than max_"),
        (0.9880, 0.9900, True, "accuracy 0.9880 >= min_accuracy 0.9850 (served: 0.9900)"),
        (0.9850, None, True, "accuracy 0.9850 >= min_accuracy 0.9850 (no version is served yet)"),
        (0.9950, 0.9900, True, "(served: 0.9900)"),
    ],
)
def test_the_three_outcomes(accuracy, served, passed, why):
    result = gate.decide(accuracy, served)
    assert result[0] is passed
    assert why in result[1]


def test_a_regression_of_exactly_max_regression_passes_despite_float_rounding():
    # 0.990 - 0.988 is 0.0020000000000000018 in binary floating point.
    assert gate.decide(0.988, 0.990, max_regression=0.002)[0] is True
    assert gate.decide(0.9879, 0.990, max_regression=0.002)[0] is False


def test_evaluate_reads_the_candidate_and_the_served_version(model_root):
    result = gate.evaluate(model_root, CANDIDATE)
    assert (result.candidate, result.accuracy, result.loss) == (CANDIDATE, 0.991, 0.05)
    assert (result.served, result.served_accuracy) == (SERVED, 0.990)
    assert result.confusion_matrix == confusion(99, 10) and result.class_names == [str(i) for i in range(10)]
    assert result.passed and result.reason.startswith(f"promote {CANDIDATE}: accuracy 0.9910")


def test_evaluate_refuses_a_regression(model_root):
    write_version(model_root, "v20261201T120000Z-cccccc", 0.986)
    result = gate.evaluate(model_root, "v20261201T120000Z-cccccc")
    assert not result.passed
    expected = "gate refused v20261201T120000Z-cccccc: accuracy 0.9860 is 0.0040 below the served version's 0.9900"
    assert expected in result.reason


def test_with_nothing_served_only_the_threshold_counts(tmp_path):
    write_version(tmp_path, CANDIDATE, 0.986)
    result = gate.evaluate(tmp_path, CANDIDATE)
    assert result.passed and result.served is None


def test_a_candidate_without_a_confusion_matrix_is_a_clear_error(tmp_path):
    write_version(tmp_path, CANDIDATE, 0.99)
    path = tmp_path / CANDIDATE / "metadata.json"
    path.write_text(path.read_text().replace('"confusion_matrix"', '"other"'))
    with pytest.raises(model_store.ModelCorruptError, match=r"has no metrics \['confusion_matrix'\]"):
        gate.evaluate(tmp_path, CANDIDATE)


def test_a_missing_candidate_is_a_clear_error(model_root):
    with pytest.raises(model_store.ModelCorruptError, match="cannot read"):
        gate.evaluate(model_root, "v20261201T130000Z-dddddd")
