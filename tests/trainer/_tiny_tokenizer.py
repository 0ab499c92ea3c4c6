"""A tiny byte-level BPE tokenizer trained on the spot (no hub download); imported by the trainer drivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_tokenizer(directory: str, corpus: list[str]) -> Any:
    """A byte-level BPE trained here on the cases' SVG text (no hub download), saved for verl to load."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not Path(directory, "tokenizer.json").exists():
        bpe = Tokenizer(models.BPE(unk_token="<unk>"))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        bpe.train_from_iterator(
            corpus,
            trainers.BpeTrainer(
                vocab_size=600,
                special_tokens=["<unk>", "<pad>", "<eos>"],
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            ),
        )
        fast = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
        fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)
