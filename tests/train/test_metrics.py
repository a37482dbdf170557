"""Top-k hits (with the documented tie rule), the confusion matrix and its views, RunningMean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlang.train.metrics import ConfusionMatrix, RunningMean, topk_correct


def test_topk_hand_cases():
    logits = np.array([[0.1, 0.5, 0.4],   # label 2 is second
                       [0.3, 0.3, 0.3],   # all tied
                       [1.0, 2.0, 3.0]])  # label 2 is first
    labels = np.array([2, 0, 2])
    assert [topk_correct(logits, labels, k) for k in (1, 2, 3)] == [1, 2, 3]


def test_ties_count_against_the_label():
    logits = np.array([[1.0, 1.0, 0.0]])
    assert topk_correct(logits, np.array([0]), 1) == 0
    assert topk_correct(logits, np.array([1]), 1) == 0
    assert topk_correct(logits, np.array([0]), 2) == 1
    assert topk_correct(np.zeros((4, 10)), np.arange(4), 5) == 0


def test_nan_label_logit_is_never_correct():
    logits = np.array([[np.nan, 1.0], [np.nan, 1.0]])
    assert topk_correct(logits, np.array([0, 1]), 1) == 1  # row 2: the NaN does not outrank label 1
    assert topk_correct(logits, np.array([0, 0]), 2) == 0


def test_topk_agrees_with_sorting_for_distinct_logits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 8))
    labels = rng.integers(0, 8, 50)
    order = np.argsort(-logits, axis=1)
    for k in (1, 3, 8):
        assert topk_correct(logits, labels, k) == sum(labels[i] in order[i, :k] for i in range(50))


@pytest.mark.parametrize("labels, k, message", [
    (np.array([0, 3]), 1, "label 3"),
    (np.array([0, 1]), 0, "positive"),
    (np.array([0]), 1, "1 entries, expected 2"),
])
def test_topk_rejects_bad_input(labels, k, message):
    with pytest.raises(ValueError, match=message):
        topk_correct(np.zeros((2, 3)), labels, k)


def small_matrix() -> ConfusionMatrix:
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    matrix.update(np.array([0, 0]), np.array([0, 1]))
    return matrix


def test_confusion_matrix_counts_rows_true_columns_predicted():
    matrix = small_matrix()
    np.testing.assert_array_equal(matrix.matrix, [[2, 0, 0], [1, 1, 0], [0, 1, 1]])
    assert matrix.matrix.dtype == np.int64
    assert matrix.total == 6
    assert matrix.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(matrix.per_class_recall(), [1.0, 0.5, 0.5])
    assert matrix.most_confused() == [(1, 0, 1), (2, 1, 1)]


def test_update_accepts_logits_and_unseen_classes_have_nan_recall():
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([[0.1, 0.9, 0.0], [2.0, 2.0, 1.0]]), np.array([1, 1]))  # tie -> class 0
    np.testing.assert_array_equal(matrix.matrix, [[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    recall = matrix.per_class_recall()
    assert np.isnan(recall[0]) and recall[1] == 0.5 and np.isnan(recall[2])
    assert ConfusionMatrix(2).accuracy == 0.0


def test_to_json_is_plain_data():
    data = json.loads(json.dumps(ConfusionMatrix(2).to_json()))
    assert data == {"num_classes": 2, "total": 0, "accuracy": 0.0, "per_class_recall": [None, None],
                    "matrix": [[0, 0], [0, 0]]}
    assert small_matrix().to_json()["matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]


def test_to_text_is_an_aligned_table_with_the_diagonal_marked():
    text = small_matrix().to_text(["cat", "dog", "bird"])
    lines = text.splitlines()
    assert lines[0] == "accuracy 66.67% over 6 examples"
    assert len({len(line) for line in lines[1:]}) == 1, text
    assert lines[2].startswith("0 cat") and "[2]" in lines[2] and lines[2].endswith("100.0%")
    assert "[1]" in lines[3] and lines[3].endswith("50.0%")
    # The diagonal cell of each row sits under its column's header.
    for row in range(3):
        digit = lines[1].rindex(str(row), 0, lines[1].index("recall"))
        assert lines[2 + row][digit - 1: digit + 2] == f"[{small_matrix().matrix[row, row]}]"


def test_to_text_with_many_classes_lists_the_most_confused_pairs():
    matrix = ConfusionMatrix(30)
    matrix.update(np.array([5, 5, 5, 7, 3]), np.array([4, 4, 4, 2, 3]))
    text = matrix.to_text([f"class{i}" for i in range(30)])
    assert "30 classes" in text and "most-confused" in text
    assert text.splitlines()[2:] == ["  class4 -> class5: 3", "  class2 -> class7: 1"]


def test_to_text_rejects_a_wrong_number_of_names():
    with pytest.raises(ValueError, match="2 class names given for a 3-class"):
        small_matrix().to_text(["a", "b"])


def test_update_rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match="prediction 3 .*3 classes"):
        ConfusionMatrix(3).update(np.array([3]), np.array([0]))


def test_running_mean_weights_by_count():
    mean = RunningMean()
    assert mean.mean == 0.0
    mean.add(2.0, 3)
    mean.add(6.0, 1)
    assert mean.mean == pytest.approx(3.0) and mean.count == 4
    mean.reset()
    assert mean.count == 0 and mean.mean == 0.0
