"""Character-level tokenizer saved as a real `tokenizer.json` (transformers and vLLM both load it).

One token per character of VOCAB, plus <pad>, <bos>, <eos>. Encoding adds <bos> in front (post-processor);
decoding fuses characters back without spaces.
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
# digits, operators, '=' (solve), '?' (verify), '.' (end of candidate), T/F judgments, '#' (QE grade follows)
CHARS = "0123456789+-=?#.TF"
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + tuple(CHARS))}


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, VOCAB[BOS])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, padding_side="left", clean_up_tokenization_spaces=False)
    return fast
