"""Where a backend puts its model and in which precision: one rule for inference engines and trainers."""
from __future__ import annotations

import torch

from orchestrator.errors import SvgapError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """`auto` = CUDA when visible, else CPU; asking for CUDA where there is none is a named error, not a crash."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SvgapError(f"model.device is {device!r} but no CUDA device is visible to this process")
    return torch.device(device)


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise SvgapError(f"model.dtype: {name!r} is not allowed (choose one of {', '.join(DTYPES)})")
    return DTYPES[name]
