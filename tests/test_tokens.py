"""routelib.models.tokens, the tokenization every Hugging Face backend shares, on a word-level
tokenizer made here that adds a BOS token and has a chat template."""
from __future__ import annotations

import pytest

from routelib.models import tokens

WORDS = ["<unk>", "<s>", "</s>", "what", "is", "the", "sky", "blue", "answer", "a", "?"]


@pytest.fixture(scope="module")
def tok():
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    t = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                eos_token="</s>")
    t.chat_template = ("{% for m in messages %}<s> {{ m['content'] }}{% endfor %}"
                       "{% if add_generation_prompt %} answer{% endif %}")
    return t


def ids(*words):
    return [WORDS.index(w) for w in words]


def test_encode_adds_bos_once(tok):
    assert tokens.encode(tok, "what is the sky") == ids("<s>", "what", "is", "the", "sky")
    prompt = tokens.chat_prompt(tok, "what is the sky")
    assert prompt == "<s> what is the sky answer"
    assert tokens.encode(tok, prompt) == ids("<s>", "what", "is", "the", "sky", "answer")


def test_split_tokens_takes_the_tail_of_the_whole_text(tok):
    ctx, cont = tokens.split_tokens(tok, "what is the sky", " blue")
    assert ctx == ids("<s>", "what", "is", "the", "sky") and cont == ids("blue")


def test_split_tokens_encodes_a_merged_continuation_on_its_own(tok):
    # "sk" + "y blue": the boundary falls inside a word, so the whole text's ids do not start
    # with the context's; the continuation is encoded alone, with no BOS
    ctx, cont = tokens.split_tokens(tok, "what is the sk", "y blue")
    assert ctx == ids("<s>", "what", "is", "the", "<unk>")
    assert cont == ids("<unk>", "blue")
    with pytest.raises(ValueError, match="empty continuation"):
        tokens.split_tokens(tok, "what is the sky", " ")


def test_cut_ids_at_stop_keeps_the_ids_whose_text_fits(tok):
    ids_ = ids("the", "sky", "is", "blue", "?", "what")
    assert tokens.cut_ids_at_stop(tok, ids_, ("?",)) == ("the sky is blue ", 4)
    assert tokens.cut_ids_at_stop(tok, ids_, ("nowhere",)) == ("the sky is blue ? what", None)
    # the earliest stop string wins; one at the start keeps nothing
    assert tokens.cut_ids_at_stop(tok, ids_, ("blue", "sky")) == ("the ", 1)
    assert tokens.cut_ids_at_stop(tok, ids_, ("the",)) == ("", 0)
