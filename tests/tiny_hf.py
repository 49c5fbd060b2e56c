"""Tiny real Hugging Face models for tests, built here from configs with random weights (nothing downloaded):
Llama, Qwen2 and Gemma2 (final logit soft-capping) over one byte-level BPE tokenizer trained with `tokenizers`,
with a ChatML chat template; GSM8K / MATH fixture files of a handful of problems; the README's plug-in example as
a package outside the repository."""
from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "workloads" / "README.md"

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

GSM8K = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "3+4=<<3+4=7>>7\n#### 7"),
    ("A box holds 6 pens. How many pens are in 2 boxes?", "6*2=<<6*2=12>>12\n#### 12"),
    ("Sara had 10 cookies and ate 3. How many are left?", "10-3=<<10-3=7>>7\n#### 7"),
    ("Each bag has 5 marbles. How many marbles are in 4 bags?", "5*4=<<5*4=20>>20\n#### 20"),
    ("A train travels 60 miles in 1 hour. How far in 3 hours?", "60*3=<<60*3=180>>180\n#### 180"),
    ("Ben has 1,200 stamps and gives away 200. How many remain?", "1200-200=<<1200-200=1000>>1000\n#### 1,000"),
    ("There are 9 birds and 4 fly away. How many stay?", "9-4=<<9-4=5>>5\n#### 5"),
    ("A shirt costs 8 dollars. How much do 3 shirts cost?", "8*3=<<8*3=24>>24\n#### 24"),
    ("Lia reads 12 pages a day. How many pages in 5 days?", "12*5=<<12*5=60>>60\n#### 60"),
    ("Half of 18 students walk to school. How many walk?", "18/2=<<18/2=9>>9\n#### 9"),
    ("A farm has 7 cows and 8 pigs. How many animals?", "7+8=<<7+8=15>>15\n#### 15"),
    ("Max saves 4 dollars a week for 6 weeks. How much?", "4*6=<<4*6=24>>24\n#### 24"),
]
MATH = [
    ("What is $\\frac{1}{2} + \\frac{1}{4}$?", "We add: $\\frac{2}{4}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$."),
    ("Solve $2x = 10$.", "Dividing by 2, $x = \\boxed{5}$."),
    ("Compute $3^2$.", "$3^2 = \\boxed{9}$."),
    ("What is $\\sqrt{16}$?", "$\\sqrt{16} = \\boxed{4}$."),
    ("Simplify $\\frac{6}{8}$.", "$\\frac{6}{8} = \\boxed{\\frac{3}{4}}$."),
    ("What is $10 - 7$?", "$10 - 7 = \\boxed{3}$."),
]


def write_gsm8k(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in GSM8K))
    return path


def write_math(path: Path) -> Path:
    path.write_text("".join(json.dumps({"problem": p, "solution": s, "level": "Level 1", "type": "Algebra"}) + "\n"
                            for p, s in MATH))
    return path


@functools.lru_cache(maxsize=None)
def tokenizer(vocab_size: int = 400):
    """A byte-level BPE trained on the fixtures' text and the verifier prompts, wrapped as a HF fast tokenizer with
    ChatML special tokens and chat template (EOS = <|im_end|>, pad = <|endoftext|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from workloads import math_prompts

    corpus = [q + " " + a for q, a in GSM8K] + [p + " " + s for p, s in MATH]
    corpus += [math_prompts.TF_TEXT, math_prompts.QE_TEXT, "True False Judgment: Grade: 1 2 3 4 5 ####"] * 3
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML
    return hf


def model_config(arch: str, vocab: int, hidden: int = 48, layers: int = 2):
    """Config of a tiny `arch` (llama | qwen2 | gemma2); Gemma2's final soft-cap is made small (3.0) so that logits
    taken before it would differ visibly from the model's."""
    from transformers import Gemma2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
                  initializer_range=0.3, bos_token_id=None, eos_token_id=2, pad_token_id=0)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "gemma2":
        return Gemma2Config(**common, head_dim=hidden // 4, final_logit_softcapping=3.0, attn_logit_softcapping=50.0,
                            query_pre_attn_scalar=hidden // 4, sliding_window=16)
    raise ValueError(arch)


def build(out: Path, arch: str, chat: bool = True, seed: int = 0, stop_strings: list[str] | None = None) -> Path:
    """save_pretrained folder of a random-weight tiny `arch` with the trained tokenizer (chat template or none).
    generation_config.json lists two end ids (<|im_end|>, <|endoftext|>) like chat models do."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = copy.deepcopy(tokenizer())  # one trained tokenizer per session (BPE training breaks ties at random)
    if not chat:
        tok.chat_template = None
    torch.manual_seed(seed)
    cfg = model_config(arch, len(tok))
    cfg.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    cfg.pad_token_id = tok.pad_token_id
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    gen = GenerationConfig(eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id],
                           pad_token_id=tok.pad_token_id)
    if stop_strings:
        gen.stop_strings = stop_strings
    model.generation_config = gen
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def readme_example() -> str:
    """The complete plug-in example of workloads/README.md, as a user would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1
    return blocks[0]


def make_package(root: Path, name: str = "mypkg", body: str | None = None) -> Path:
    """A package `name` with module `mod` (the README example unless `body`) under root, a folder outside the repo."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(body if body is not None else readme_example())
    return root
