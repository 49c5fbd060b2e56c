"""A problem's identical candidates are verified once (run/round.py): which candidate stands for which, and how
many candidates each pool is credited with."""
from orchestrator.run.round import _firsts, _per_candidate


def test_each_distinct_candidate_is_sent_once_and_every_candidate_maps_to_it():
    # problem 0: candidates a, b, a, a; problem 1: a (same tokens as problem 0's a, but another problem), c, c, a
    keys = [(0, "a"), (0, "b"), (0, "a"), (0, "a"), (1, "a"), (1, "c"), (1, "c"), (1, "a")]
    first: dict = {}
    of = [first.setdefault(k, len(first)) for k in keys]
    assert of == [0, 1, 0, 0, 2, 3, 3, 2]
    assert _firsts(of) == [0, 1, 4, 5]  # the candidates whose items are built and sent
    scores = [0.9, 0.1, 0.7, 0.3]  # one per distinct candidate, in the order sent
    assert [scores[j] for j in of] == [0.9, 0.1, 0.9, 0.9, 0.7, 0.3, 0.3, 0.7]


def test_pools_are_credited_with_the_candidates_their_rows_stand_for():
    of = [0, 1, 0, 0, 2, 3, 3, 2]
    # the verification pool ran distinct 0 and 1, the generation pool 2 and 3 (results come in that order)
    by = _per_candidate({"verification": 2, "generation": 2}, of)
    assert by == {"verification": 4, "generation": 4} and sum(by.values()) == len(of)
    assert _per_candidate({"verification": 0, "generation": 4}, of) == {"verification": 0, "generation": 8}
