"""A tiny Qwen2 and its tokenizer, built here (no hub): the miniature's policy before SFT."""

from __future__ import annotations

from pathlib import Path


def build(directory: Path, corpus: list[str], seed: int) -> Path:
    """A byte-level BPE trained on ``corpus`` and a randomly initialised 2-layer Qwen2, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<unk>", "<pad>", "<eos>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=1000, special_tokens=special, initial_alphabet=alphabet)
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=96,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def generate(model_dir: Path, prompts: list[str], max_new_tokens: int = 64, temperature: float = 0.0) -> list[str]:
    """Completions of ``prompts``: greedy at temperature 0, else sampled (seeded, so repeatable)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out: list[str] = []
    torch.manual_seed(0)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with torch.no_grad():
        for start in range(0, len(prompts), 32):
            batch = tokenizer(prompts[start : start + 32], return_tensors="pt", padding=True, add_special_tokens=False)
            ids = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                **sampling,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            completions = ids[:, batch["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(completions, skip_special_tokens=True))
    return out
