"""The arithmetic workload: seeded synthetic addition/subtraction with a tiny Llama pretrained here.

options.py (no torch) -> problems.py -> templates.py -> tokenizer.py / examples.py -> pretrain.py -> cache.py,
tied together by workload.py (`ArithmeticWorkload`).
"""
