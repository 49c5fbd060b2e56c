"""The BoN rule of THEORY §1 step 4 on hand-made candidates."""
import pytest

from orchestrator.run.selection import best_of_n


def test_picks_lowest_length_normalised_uncertainty_among_passing():
    # candidate 0: lowest total NLL but fails σ; 1 and 2 pass; 2 has the lower NLL per token (6/6 < 4/2).
    pick = best_of_n(scores=[0.2, 0.9, 0.6], nll=[1.0, 4.0, 6.0], lengths=[2, 2, 6], threshold=0.5)
    assert (pick.index, pick.fallback) == (2, False)


def test_normalisation_matters():
    # Totals would pick 0 (3 < 4); per token picks 1 (4/8 < 3/3).
    assert best_of_n([1, 1], [3.0, 4.0], [3, 8], 0.5).index == 1


def test_threshold_is_inclusive():
    assert best_of_n([0.5, 0.49], [5.0, 1.0], [1, 1], 0.5) == best_of_n([0.5], [5.0], [1], 0.5)
    assert best_of_n([0.5, 0.49], [5.0, 1.0], [1, 1], 0.5).index == 0


def test_fallback_to_highest_score_when_none_passes():
    pick = best_of_n([0.1, 0.4, 0.3], [1.0, 9.0, 2.0], [1, 1, 1], 0.5)
    assert (pick.index, pick.fallback) == (1, True)


def test_ties_break_to_first():
    assert best_of_n([0.9, 0.9], [2.0, 2.0], [1, 1], 0.5).index == 0
    assert best_of_n([0.2, 0.2], [2.0, 1.0], [1, 1], 0.5) .index == 0


def test_bad_input():
    # the exact type and message: a ValueError raised by something else (e.g. max() of nothing) must not pass
    with pytest.raises(ValueError) as e:
        best_of_n([], [], [], 0.5)
    assert type(e.value) is ValueError
    assert str(e.value) == "best_of_n needs equally long, non-empty inputs (got 0, 0, 0)"
    with pytest.raises(ValueError) as e:
        best_of_n([0.1], [1.0, 2.0], [1], 0.5)
    assert str(e.value) == "best_of_n needs equally long, non-empty inputs (got 1, 2, 1)"
    with pytest.raises(ValueError) as e:
        best_of_n([0.1, 0.2], [1.0, 2.0], [1], 0.5)
    assert str(e.value) == "best_of_n needs equally long, non-empty inputs (got 2, 2, 1)"
