"""GPT-2-style byte-level BPE tokenizer and chat template, built from GGUF metadata.

Why our own implementation: the tokenizer is part of what the model hash binds (DESIGN §5), and
the node must tokenize identically on machines without the `tokenizers` library; that library
is used only as the oracle in tests. The pre-tokenizer is the one of SmolLM2 (llama.cpp
pre-type "smollm", HF: Digits(individual) then ByteLevel(use_regex)):

1. every Unicode number character (category N*) is split off on its own;
2. the GPT-2 pattern
   's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
   on each remaining piece, written out as a scanner (no `regex` dependency) with \\s = the
   Unicode White_Space property (what Oniguruma, used by `tokenizers`, means by \\s).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Unicode White_Space (PropList.txt), the \s of the reference regex engine.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def _is_space(c: str) -> bool:
    return c in _WHITE_SPACE


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] == "L"


def _is_number(c: str) -> bool:
    return unicodedata.category(c)[0] == "N"


def _is_other(c: str) -> bool:
    return not (_is_space(c) or _is_letter(c) or _is_number(c))


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def _split_numbers(text: str) -> list[str]:
    """Step 1: isolate each number character (HF Digits(individual_digits=True))."""
    out: list[str] = []
    start = 0
    for i, c in enumerate(text):
        if _is_number(c):
            if start < i:
                out.append(text[start:i])
            out.append(c)
            start = i + 1
    if start < len(text):
        out.append(text[start:])
    return out


def _run(text: str, i: int, pred) -> int:  # noqa: ANN001
    while i < len(text) and pred(text[i]):
        i += 1
    return i


def _gpt2_split(text: str) -> list[str]:
    """Step 2: the GPT-2 pattern, alternatives tried in order at each position."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        end = 0
        if c == "'":
            for con in _CONTRACTIONS:
                if text.startswith(con, i):
                    end = i + len(con)
                    break
        if not end:
            j = i + 1 if c == " " and nxt else i  # optional leading space
            if j < n and _is_letter(text[j]):
                end = _run(text, j, _is_letter)
            elif j < n and _is_number(text[j]):
                end = _run(text, j, _is_number)
            elif j < n and _is_other(text[j]):
                end = _run(text, j, _is_other)
            elif _is_space(c):
                run_end = _run(text, i, _is_space)
                if run_end == n or run_end - i == 1:
                    end = run_end  # \s+(?!\S) at end of text, else the \s+ fallback
                else:
                    end = run_end - 1  # leave the last space to prefix the next word
            else:  # pragma: no cover - every character is space, letter, number or other
                end = i + 1
        out.append(text[i:end])
        i = end
    return out


def pre_tokenize(text: str) -> list[str]:
    """The SmolLM2 pre-tokenizer (module docstring), returning raw text pieces."""
    pieces: list[str] = []
    for part in _split_numbers(text):
        pieces.extend(_gpt2_split(part))
    return pieces


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


class Tokenizer:
    """Byte-level BPE from `tokenizer.ggml.*` metadata, with special tokens and chat template."""

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Sequence[str],
        token_types: Sequence[int] | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.merges = list(merges)
        self.ranks: dict[tuple[str, str], int] = {}
        for r, m in enumerate(self.merges):
            a, b = m.split(" ", 1)
            self.ranks[(a, b)] = r
        types = list(token_types) if token_types is not None else [1] * len(self.tokens)
        # GGUF token type 3 = CONTROL: matched verbatim in text, never split (HF "special")
        self.special = {self.tokens[i]: i for i, t in enumerate(types) if t == 3}
        self.bos_id, self.eos_id = bos_id, eos_id
        self.chat_template = chat_template
        self._b2u = bytes_to_unicode()
        self._u2b = {u: b for b, u in self._b2u.items()}
        self._cache: dict[str, tuple[int, ...]] = {}
        self._specials_by_length = sorted(self.special, key=len, reverse=True)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Tokenizer:
        """From the dict of `gguf_loader.read_metadata` (a GGUFModel's `metadata`)."""
        model = meta.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"tokenizer model {model!r} is not supported (only 'gpt2' BPE)")
        pre = meta.get("tokenizer.ggml.pre")
        if pre != "smollm":
            raise ValueError(f"pre-tokenizer {pre!r} is not supported (only 'smollm')")
        return cls(
            meta["tokenizer.ggml.tokens"],
            meta["tokenizer.ggml.merges"],
            meta.get("tokenizer.ggml.token_type"),
            meta.get("tokenizer.ggml.bos_token_id"),
            meta.get("tokenizer.ggml.eos_token_id"),
            meta.get("tokenizer.chat_template"),
        )

    # ---- encoding ---------------------------------------------------------------------------

    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Merge the lowest-ranked adjacent pair until none is in the merge list."""
        hit = self._cache.get(piece)
        if hit is not None:
            return hit
        word = [self._b2u[b] for b in piece.encode("utf-8")]
        ranks = self.ranks
        while len(word) > 1:
            best, best_rank = -1, None
            for k in range(len(word) - 1):
                r = ranks.get((word[k], word[k + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = k, r
            if best < 0:
                break
            a, b = word[best], word[best + 1]
            merged: list[str] = []
            k = 0
            while k < len(word):  # merge every occurrence left to right
                if k < len(word) - 1 and word[k] == a and word[k + 1] == b:
                    merged.append(a + b)
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        ids = tuple(self.vocab[s] for s in word)
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def _split_special(self, text: str) -> Iterable[tuple[str, bool]]:
        """Cut `text` at special-token strings (longest match first), left to right."""
        i, start = 0, 0
        while i < len(text):
            if text[i] == "<":
                for s in self._specials_by_length:
                    if text.startswith(s, i):
                        if start < i:
                            yield text[start:i], False
                        yield s, True
                        i += len(s)
                        start = i
                        break
                else:
                    i += 1
            else:
                i += 1
        if start < len(text):
            yield text[start:], False

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids of `text`; with allow_special, control-token strings map to their ids."""
        ids: list[int] = []
        parts = self._split_special(text) if allow_special and self.special else [(text, False)]
        for part, is_special in parts:
            if is_special:
                ids.append(self.special[part])
                continue
            for piece in pre_tokenize(part):
                ids.extend(self._bpe(piece))
        return ids

    # ---- decoding ---------------------------------------------------------------------------

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (special tokens: their UTF-8 text)."""
        s = self.tokens[token_id]
        if s in self.special:
            return s.encode("utf-8")
        return bytes(self._u2b[c] for c in s)

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        keep = (i for i in ids if not (skip_special and self.tokens[i] in self.special))
        data = b"".join(self.token_bytes(i) for i in keep)
        return data.decode("utf-8", errors="replace")

    # ---- chat template ----------------------------------------------------------------------

    def apply_chat_template(
        self, messages: Sequence[ChatMessage | dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """Render the GGUF's Jinja chat template the way HF transformers does."""
        if not self.chat_template:
            raise ValueError("this model has no chat template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        msgs = [m if isinstance(m, dict) else {"role": m.role, "content": m.content}
                for m in messages]
        return env.from_string(self.chat_template).render(
            messages=msgs, add_generation_prompt=add_generation_prompt
        )

    def encode_chat(self, prompt: str, system: str | None = None) -> list[int]:
        """Token ids of a single-turn chat prompt ready for generation."""
        msgs: list[dict[str, str]] = []
        if system is not None:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": prompt})
        return self.encode(self.apply_chat_template(msgs, add_generation_prompt=True))
