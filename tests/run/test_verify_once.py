"""A problem's identical candidates are verified once (run/round.py): how many candidates each pool is credited
with when its rows stand for several (the whole path: tests/run/test_determinism.py, tests/roles/test_colocate.py)."""
from orchestrator.engines.base import Sample
from orchestrator.run.round import _per_candidate, distinct_items
from workloads.base import Problem


def _sample(ids: list[int]) -> Sample:
    return Sample(token_ids=ids, text=" ".join(map(str, ids)), logprobs=[-0.5] * len(ids), finished=True)


def test_each_candidate_maps_to_an_item_equal_to_its_own_and_repeats_are_sent_once():
    problems = [Problem(id="p0", prompt="1+1=", answer="2"), Problem(id="p1", prompt="2+2=", answer="4")]
    # problem 0: a, b, a, a; problem 1: a (same tokens as problem 0's a, another problem), c, c, a
    a, b, c = [5, 2], [7], [9, 9]
    samples = [[_sample(x) for x in (a, b, a, a)], [_sample(x) for x in (a, c, c, a)]]
    make = lambda p, text: f"{p.prompt} {text} correct?"  # noqa: E731 - stands for workload.tf_query
    items, of = distinct_items(problems, samples, make)
    assert len(items) == 4 and of == [0, 1, 0, 0, 2, 3, 3, 2]
    flat = [(p, s) for p, row in zip(problems, samples) for s in row]
    assert [items[j] for j in of] == [(make(p, s.text), p.prompt, s.token_ids) for p, s in flat]


def test_pools_are_credited_with_the_candidates_their_rows_stand_for():
    of = [0, 1, 0, 0, 2, 3, 3, 2]
    # the verification pool ran distinct 0 and 1, the generation pool 2 and 3 (results come in that order)
    by = _per_candidate({"verification": 2, "generation": 2}, of)
    assert by == {"verification": 4, "generation": 4} and sum(by.values()) == len(of)
    assert _per_candidate({"verification": 0, "generation": 4}, of) == {"verification": 0, "generation": 8}
