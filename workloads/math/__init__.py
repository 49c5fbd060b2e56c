"""MATH from a local JSONL file: lines {"problem": ..., "solution": "... \\boxed{...} ..."} (the dataset's shape;
`level`, `type` and `unique_id` are kept out of the way, `unique_id` names the problem when present)."""
from workloads.math.workload import MATHWorkload

__all__ = ["MATHWorkload"]
