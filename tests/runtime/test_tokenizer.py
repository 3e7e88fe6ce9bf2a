"""Our BPE tokenizer vs the `tokenizers` library built from the same GGUF vocab/merges."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.runtime.tokenizer import Tokenizer, pre_tokenize

CASES = [
    "",
    "Hello, world!",
    "What is the capital of France?",
    "I'm sure they've said it's 'fine' — you'll see, we'd know. DON'T SHOUT'S",
    "  leading spaces", "trailing spaces   ", "a  b   c    d", " \t\n \n\n\tx",
    "line one\nline two\r\nline three\n\n\n",
    "numbers 1234567890 3.14159 -42 1e-5 ٣٤٥ ² ½ ①②",
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "中文测试，日本語のテキスト、한국어 텍스트",
    "Ελληνικά, русский, العربية, עברית, हिन्दी",
    "tabs\tand\u00a0nbsp\u2003em space\u3000ideographic",
    "code: def f(x):\n    return x**2  # comment\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "not special: <|im_start  <im_end|> <|endoftext|",
    "\x00\x01\x1c\x1f control chars \x7f",
    "https://example.com/path?q=1&r=2#frag user@example.org",
    "café naïve résumé coöperate ﬁ ligature",
    "''' '' 's 'S 're 'RE",
    "?!?!... ---- ____ ****",
    "   ",
    "\n",
    " 2024-01-01T12:34:56Z",
]


@pytest.fixture(scope="module")
def tok(gguf_model):
    return Tokenizer.from_metadata(gguf_model.metadata)


@pytest.fixture(scope="module")
def ref(gguf_model):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    meta = gguf_model.metadata
    vocab = {t: i for i, t in enumerate(meta["tokenizer.ggml.tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    t = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges))
    t.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    t.decoder = decoders.ByteLevel()
    types = meta["tokenizer.ggml.token_type"]
    specials = [s for s, ty in zip(meta["tokenizer.ggml.tokens"], types, strict=True) if ty == 3]
    t.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return t


@pytest.mark.parametrize("text", CASES)
def test_matches_tokenizers(tok, ref, text):
    ids = tok.encode(text)
    assert ids == ref.encode(text).ids
    assert tok.decode(ids) == text


def test_repo_documents_match(tok, ref):
    root = Path(__file__).resolve().parents[2]
    docs = sorted(root.glob("docs/**/*.md"))[:20] + [Path(__file__)]
    for p in docs:
        text = p.read_text(encoding="utf-8")
        assert tok.encode(text) == ref.encode(text).ids, p


_alphabet = st.sampled_from(
    list("aZé ß\t\n\r  '0123456789٣²½.,!?-_<>|😀中日한\u00a0\u3000\u2028\x1c")
    + ["'s", "'ll", "<|im_end|>", "  ", "\n\n"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=40).map("".join))
def test_fuzz_matches_tokenizers(tok, ref, text):
    assert tok.encode(text) == ref.encode(text).ids
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_and_ids(tok):
    assert tok.encode("<|im_start|>") == [1]
    assert tok.encode("<|im_end|>") == [2]
    assert tok.eos_id == 2 and tok.bos_id == 1
    assert tok.encode("<|im_start|>", allow_special=False) != [1]
    assert tok.decode([1, 2], skip_special=True) == ""


def test_pre_tokenizer_pieces():
    assert pre_tokenize("Hello  world 123!") == ["Hello", " ", " world", " ", "1", "2", "3", "!"]
    assert pre_tokenize("a\n\nb") == ["a", "\n", "\n", "b"]


def test_chat_template_render(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    sys_text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        add_generation_prompt=False,
    )
    assert sys_text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
    ids = tok.encode_chat("Hi")
    assert ids[0] == 1 and tok.decode(ids) == text and ids.count(1) == 3 and ids.count(2) == 2


def test_unsupported_tokenizer_rejected(gguf_model):
    meta = dict(gguf_model.metadata)
    meta["tokenizer.ggml.pre"] = "llama3"
    with pytest.raises(ValueError, match="pre-tokenizer 'llama3'"):
        Tokenizer.from_metadata(meta)
