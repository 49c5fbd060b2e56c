"""GSM8K from a local JSONL file: lines {"question": ..., "answer": "... #### 42"} (the dataset's own shape)."""
from workloads.gsm8k.workload import GSM8KWorkload

__all__ = ["GSM8KWorkload"]
