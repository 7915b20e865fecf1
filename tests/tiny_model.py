"""Tiny stand-ins for users' models, made in the test: a random 2-layer Llama with a word-level
tokenizer saved as a transformers directory, and a small GGUF file."""
from __future__ import annotations

WORDS = ("question answer the a is of to in what where which who how many do you go borrow "
         "books library bank store mall new york tom has apples buys more cat called felix "
         "likes fish sky blue yes no true false one two three four five six seven eight nine "
         "ten").split()
CHAT = ("{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}"
        "{% if add_generation_prompt %} answer{% endif %}")


def make_tiny_model(path, seed: int = 0, chat: bool = True):
    """A random 2-layer Llama with a word-level tokenizer, saved as a transformers directory."""
    import torch
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *"?.,:!'\"-+*/=()",
                                         *map(str, range(10)), *WORDS])}
    core = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="</s>")
    if chat:
        tok.chat_template = CHAT
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def write_gguf(path, name="Tiny GGUF", chat: bool = True):
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    if chat:
        w.add_chat_template(CHAT)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
