"""A tiny random Llama-architecture model and a real byte-level BPE tokenizer, built offline in seconds.

Used by the tests and the benchmarks: same code paths as a real model (LlamaForCausalLM, a fast tokenizer
with EOS/pad tokens and a chat-free prompt), without a download.
"""

from __future__ import annotations

from pathlib import Path

from sft.core.contract import DEFAULT_INSTRUCTION, LABELS, PROMPT_TEMPLATE


def _training_text() -> list[str]:
    words = [DEFAULT_INSTRUCTION, PROMPT_TEMPLATE, *[label.value for label in LABELS]]
    words += [
        '{"compliance_flag": "Needs Geo-Compliance", "law": "EU Digital Services Act", "citation": "DSA Art. 28(1)", '
        '"reason": "Minors in the EU need protection."}',
        '{"feature": {"name": "Curfew mode", "description": "Disable notifications at night for teens in FL."}, '
        '"law_context": [{"id": "us_fl_hb3#501.1736", "law": "Florida HB 3", "citation": "Fla. Stat. § 501.1736(2)", '
        '"jurisdiction": "US-FL", "text": "A social media platform shall prohibit a minor who is younger than 14"}]}',
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 {}[]():;,.'\"-_/§&@#%*+=<>?!\n",
    ]
    return words * 4


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 16,
    num_layers: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny LlamaForCausalLM + fast tokenizer to ``out_dir`` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_text(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=4096
    )
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


def count_layer_calls(model) -> list[int]:
    """A counter of the first decoder layer's MLP runs: 2 per step when checkpointing recomputes the layer.

    Patched on the instance's ``forward``, because module hooks stay outside the checkpointed region and do not
    see the recompute."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mlp, calls = base.model.layers[0].mlp, [0]
    inner = mlp.forward

    def forward(*args, **kwargs):
        calls[0] += 1
        return inner(*args, **kwargs)

    mlp.forward = forward
    return calls
