"""A llama.cpp GGUF file -> a standard HF folder (config, safetensors, tokenizer with its chat template).

transformers reads GGUF (`from_pretrained(dir, gguf_file=...)`, needs the `gguf` package) and dequantizes it, but
refuses to `save_pretrained` a model so loaded, and its config keeps a `quantization_config` that no longer
applies. So the model is rebuilt plainly from that config (`from_config`), the dequantized state dict copied in,
and saved. The folder is written next to its final place and renamed into it only when complete, with a
fingerprint (`svgap-model.json`: SHA-256 of the GGUF and of the weights written) so a later call reuses it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.store.files import fsync_path

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "svgap-model.json"
GGUF_MAGIC = b"GGUF"
DTYPES = ("float32", "bfloat16")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def check_gguf(path: Path) -> None:
    """A one-line refusal for what is not a GGUF file at all (before transformers reads it)."""
    if not path.is_file():
        raise SvgapError(f"no GGUF file at {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != GGUF_MAGIC:
        raise SvgapError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    if len(head) < 8:
        raise SvgapError(f"{path} is a truncated GGUF file")


def imported(out: Path) -> dict | None:
    """The fingerprint of a complete import at `out`, or None."""
    try:
        meta = json.loads((out / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and (out / "config.json").is_file() else None


def import_gguf(gguf: str | Path, out: str | Path, dtype: str = "float32") -> tuple[Path, dict, bool]:
    """Import `gguf` into the HF folder `out`; returns (folder, fingerprint, reused). An existing import of the
    same file and dtype is reused; any other non-empty folder at `out` is refused, never overwritten."""
    src, dst = Path(gguf).expanduser().resolve(), Path(out).expanduser()
    if dtype not in DTYPES:
        raise SvgapError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    check_gguf(src)
    digest = sha256(src)
    meta = imported(dst)
    if meta is not None and meta.get("gguf_sha256") == digest and meta.get("dtype") == dtype:
        return dst, meta, True
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise SvgapError(f"--out {dst}: exists and is not an import of {src.name} in {dtype}; choose another folder "
                         f"or remove it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        meta = _write(src, tmp, dtype)
        meta["gguf_sha256"] = digest
        (tmp / FINGERPRINT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _share_read_only(tmp)
        _fsync_tree(tmp)
        if dst.exists():
            dst.rmdir()  # empty (checked above)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst, meta, False


def _load(src: Path, dtype: str):
    """(model, tokenizer) dequantized by transformers; its refusals become one line."""
    try:
        import gguf  # noqa: F401 - transformers needs it; say so plainly
    except ImportError:
        raise SvgapError("reading GGUF needs the gguf package: pip install -e '.[smollm2]' (or pip install gguf)") \
            from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=getattr(torch, dtype))
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError, EOFError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SvgapError(f"{src.name}: transformers cannot import this GGUF file ({first[:200]})") from None
    return model, tok


def _write(src: Path, out: Path, dtype: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    model, tok = _load(src, dtype)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain; a stale one breaks later loads
    config.torch_dtype = dtype
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    plain.load_state_dict(model.state_dict(), assign=True, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    eos = [i for i in {tok.eos_token_id, *_end_of_turn_ids(tok)} if i is not None]
    gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=sorted(eos) if len(eos) > 1 else eos[0],
                           pad_token_id=tok.pad_token_id)
    gen.save_pretrained(out)
    weights = sorted(out.glob("*.safetensors"))
    return {"source": src.name, "architecture": config.model_type, "dtype": dtype,
            "parameters": sum(p.numel() for p in plain.parameters()),
            "chat_template": bool(getattr(tok, "chat_template", None)),
            "weights_sha256": {w.name: sha256(w) for w in weights}}


def _end_of_turn_ids(tok) -> list[int]:
    """Chat models end a turn with a token of their own (<|im_end|>, <|eot_id|>, <end_of_turn>): sampling must stop
    there too, so it joins generation_config's eos ids."""
    vocab = tok.get_vocab()
    return [vocab[t] for t in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>") if t in vocab]


def _share_read_only(folder: Path) -> None:
    """Readable by all, writable by its owner only (like the model cache's other entries); mkdtemp made it 0700."""
    folder.chmod(0o755)
    for p in folder.iterdir():
        p.chmod(0o644)


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            fsync_path(p)
    fsync_path(folder)
