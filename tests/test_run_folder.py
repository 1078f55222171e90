"""The results record: declared keys only, error figures named in one place."""
import pytest

from lrnets.training.evaluation import Selection

from lrnets.run_folder import (UndeclaredKeyWarning, error_figures, most_probable_error,
                               read_results, samples_error, write_results)


def _scores(name: str, val: float, test: float) -> dict:
    return {"name": name, "val_acc": val, "test_acc": test,
            "val_acc_recalibrated": val + 0.01, "test_acc_recalibrated": test + 0.01}


def test_error_figures_are_written_and_read_back(tmp_path):
    """Accuracies of the mode and two samples become errors: the chosen one's, the mode's and
    the samples' mean and std, for both batch-norm variants."""
    candidates = [_scores("most_probable", 0.90, 0.80), _scores("sample_0", 0.70, 0.60),
                  _scores("sample_1", 0.50, 0.40)]
    chosen = {"name": "most_probable", "recalibrated_bn": True, "val_acc": 0.91, "test_acc": 0.81}
    figures = error_figures(Selection(candidates=candidates, chosen=chosen).summary())
    write_results(tmp_path, {"status": "completed", **figures})
    results = read_results(tmp_path)
    assert results["test_error"] == pytest.approx(0.19) and results["chosen"] == "most_probable"
    assert most_probable_error(results, "test", recalibrated=False) == pytest.approx(0.20)
    assert most_probable_error(results, "val", recalibrated=True) == pytest.approx(0.09)
    mean, std = samples_error(results, "test", recalibrated=False)
    assert mean == pytest.approx(0.50) and std == pytest.approx(0.10)
    assert samples_error(results, "val", recalibrated=True)[0] == pytest.approx(0.39)


def test_figures_not_scored_read_as_none(tmp_path):
    candidates = [{"name": "most_probable", "val_acc": 0.9, "test_acc": 0.8}]
    chosen = {"name": "most_probable", "recalibrated_bn": False, "val_acc": 0.9, "test_acc": 0.8}
    results = error_figures(Selection(candidates=candidates, chosen=chosen).summary())
    assert most_probable_error(results, "test", recalibrated=True) is None
    assert samples_error(results, "test", recalibrated=False) is None


def test_a_key_the_record_does_not_declare_is_warned_about_and_written(tmp_path):
    """The suite fails on the warning (pyproject.toml); a run keeps its record."""
    with pytest.warns(UndeclaredKeyWarning, match="test_eror"):
        write_results(tmp_path, {"status": "completed", "test_eror": 0.1})
    assert read_results(tmp_path) == {"status": "completed", "test_eror": 0.1}


def test_figures_are_written_rounded_to_what_they_mean(tmp_path):
    write_results(tmp_path, {"test_error": 1 - 9935 / 10000, "eval_examples": {"test": 10000},
                             "selection": {"candidates": [{"val_acc": 4957 / 5000 + 1e-15}]}})
    results = read_results(tmp_path)
    assert results["test_error"] == 0.0065 and results["eval_examples"]["test"] == 10000
    assert results["selection"]["candidates"][0]["val_acc"] == 0.9914


def test_a_record_of_an_earlier_version_reads_in_this_versions_names(tmp_path):
    """Earlier versions called the most probable network "mode" (mode_test_error, chosen)."""
    (tmp_path / "results.json").write_text(
        '{"chosen": "mode", "mode_test_error": 0.0125, "samples_test_error_mean": 0.0131}')
    results = read_results(tmp_path)
    assert results == {"chosen": "most_probable", "most_probable_test_error": 0.0125,
                       "samples_test_error_mean": 0.0131}
    assert most_probable_error(results, "test", recalibrated=False) == 0.0125
