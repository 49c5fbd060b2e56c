"""How a model reads a conversation start: its own chat template, or plain text (`model.chat_template`).

Every text that opens a conversation -- a solver prompt, the first segment of a TF query, a QE query -- goes
through one `PromptFormat`, in the inference engine and in the trainer alike, so the model is sampled, scored,
asked to judge and trained on exactly the same token ids. With a template the text is the user message and the
template's generation prompt follows (the assistant's turn starts); the rendered text already holds any BOS the
template wants, so it is tokenized without adding special tokens again (as transformers' own apply_chat_template
does). Without one the text is tokenized as is, with the tokenizer's special tokens (BOS where it adds one).

`model.chat_template`: auto = the model folder's template when it has one; none = plain text always.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from orchestrator.errors import SvgapError

ChatMode = Literal["auto", "none"]
MODES = ("auto", "none")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def folder_has_template(model_dir: str | Path) -> bool:
    """Whether a save_pretrained folder carries a chat template (read from its files, without transformers)."""
    path = Path(model_dir).expanduser()
    if any((path / f).is_file() for f in TEMPLATE_FILES):
        return True
    try:
        cfg = json.loads((path / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(cfg.get("chat_template"))


def uses_chat(model_dir: str | Path, mode: str) -> bool:
    """Will prompts for this model be wrapped in its chat template?"""
    if mode not in MODES:
        raise SvgapError(f"model.chat_template: {mode!r} is not one of {', '.join(MODES)}")
    return mode == "auto" and folder_has_template(model_dir)



def workload_for(cfg):
    """The experiment's workload, told whether its texts will go through the model's chat template (an optional
    `use_chat_template(bool)` method: the math workloads word their prompts for each case)."""
    import workloads

    wl = workloads.get(cfg.workload.name, cfg.workload.options)
    tell = getattr(wl, "use_chat_template", None)
    if callable(tell):
        tell(bool(cfg.model.path) and uses_chat(cfg.model.path, cfg.model.chat_template))
    return wl

def stop_token_ids(tokenizer, model_dir: str | Path) -> list[int]:
    """The model's end-of-sequence ids: the tokenizer's EOS plus every id generation_config.json lists (chat models
    often end a turn with a token other than the tokenizer's EOS, e.g. Llama 3's <|eot_id|>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    gen = _generation_config(model_dir)
    extra = gen.get("eos_token_id")
    for i in (extra if isinstance(extra, list) else [extra] if extra is not None else []):
        if int(i) not in ids:
            ids.append(int(i))
    return ids


def stop_strings(model_dir: str | Path) -> list[str]:
    """Stop strings the model folder declares (generation_config.json `stop_strings`, transformers' own key)."""
    s = _generation_config(model_dir).get("stop_strings")
    return [s] if isinstance(s, str) else [str(x) for x in s or []]


def _generation_config(model_dir: str | Path) -> dict:
    try:
        data = json.loads((Path(model_dir).expanduser() / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class PromptFormat:
    """Turns conversation-opening texts into token ids for one tokenizer, with or without its chat template."""

    def __init__(self, tokenizer, chat: bool, system_prompt: str | None = None) -> None:
        if chat and not getattr(tokenizer, "chat_template", None):
            raise SvgapError("model.chat_template: auto found a template file but the tokenizer did not load it")
        self.tokenizer, self.chat, self.system_prompt = tokenizer, chat, system_prompt

    @classmethod
    def for_model(cls, tokenizer, model_dir: str | Path, mode: str = "auto",
                  system_prompt: str | None = None) -> "PromptFormat":
        return cls(tokenizer, uses_chat(model_dir, mode), system_prompt)

    def render(self, text: str) -> str:
        """The text the model reads (the template applied, generation prompt included). `system_prompt` None keeps
        whatever the template does without a system turn (SmolLM2's adds its own default); a string is the
        system turn."""
        if not self.chat:
            return text
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return self.tokenizer.apply_chat_template(turns + [{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each conversation start (one tokenizer call for all)."""
        if not texts:
            return []
        distinct = list(dict.fromkeys(texts))  # a round's openings repeat: 8 candidates share a prompt
        if self.chat:
            rendered = [self.render(t) for t in distinct]
            ids = self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(distinct, add_special_tokens=True)["input_ids"]
        by_text = dict(zip(distinct, ids))
        return [list(by_text[t]) for t in texts]

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]


def word_tokens(tokenizer, words: list[str], what: str) -> tuple[list[int], list[list[int]]]:
    """(shared prefix ids, each word's ids after the prefix) for words the verifier reads after its prompt.

    The shared leading tokens (e.g. a lone space piece) cancel in p(a) / (p(a) + p(b)), so they are appended to the
    query once; each word's remaining tokens are then read one by one and multiplied (engines/judge.py), which
    needs the words to differ in their first token after the prefix (else they are not told apart by the next
    token and one is a prefix of another, or the grades collide: a named error)."""
    enc = [list(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]
    if any(not e for e in enc):
        raise SvgapError(f"{what} {words!r}: one of them is no token at all for this tokenizer")
    k = 0
    while all(len(e) > k for e in enc) and len({e[k] for e in enc}) == 1:
        k += 1
    if any(len(e) <= k for e in enc):
        raise SvgapError(f"{what} {words!r}: one is a prefix of another for this tokenizer ({enc}); "
                         f"they cannot be told apart by a next token")
    firsts = [e[k] for e in enc]
    if len(set(firsts)) != len(firsts):
        raise SvgapError(f"{what} {words!r}: after the shared prefix two of them start with the same token "
                         f"({enc}); choose words that differ in their first token")
    return enc[0][:k], [e[k:] for e in enc]
