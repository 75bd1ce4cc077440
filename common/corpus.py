"""Corpora, the vocabulary and the optional reduced alphabet.

    from common.corpus import load_corpus
    corpus = load_corpus("tinyshakespeare")      # or a path to any UTF-8 text file
    corpus.vocab.chars, corpus.data               # sorted characters; np.int64 ids (N,)

A built-in corpus is looked for in $ROSETTA_DATA_DIR/<name>.txt, then in the cache
(~/.cache/lstm-rosetta, $XDG_CACHE_HOME/lstm-rosetta, or $ROSETTA_CACHE_DIR), and downloaded once
into the cache otherwise; every copy is checked against the sha256 in BUILTINS. Anything else is
a file path. Text is decoded as UTF-8, verbatim (line endings included).

The vocabulary is the sorted set of characters. It is saved with every checkpoint and read back
in that order, never rebuilt from an unordered set, so id k means the same character everywhere.
"""

import hashlib
import http.client
import os
import secrets
import sys
import unicodedata
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import CorpusError

BUILTINS = {
    "tinyshakespeare": {
        "url": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    },
    "quijote": {
        "url": "https://raw.githubusercontent.com/josehoras/LSTM-Frameworks/master/quijote.txt",
        "sha256": "0e19b68f0cbaa9aeeac2674f34182212ead3b2cfa067e695cfb57d4955048544",
    },
}

# The reduced alphabet (after Wang's tutorial): lower-case a-z, digits, space, newline and a few
# punctuation marks. reduce_text lower-cases, strips accents (a with acute -> a, n with tilde -> n),
# turns any other whitespace (tab, carriage return) into a space and drops every other character.
REDUCED_ALPHABET = "\n !',-.:;?0123456789abcdefghijklmnopqrstuvwxyz"


# ---------------------------------------------------------------------------------------------
# Finding the text

def cache_dir():
    """Where downloaded corpora live: $ROSETTA_CACHE_DIR, $XDG_CACHE_HOME/lstm-rosetta or ~/.cache/lstm-rosetta."""
    if os.environ.get("ROSETTA_CACHE_DIR"):
        return Path(os.environ["ROSETTA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lstm-rosetta"


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_copy(name, path, what):
    """Refuse a local copy of a built-in whose checksum is not the one in BUILTINS."""
    expected, got = BUILTINS[name]["sha256"], sha256_of(path)
    if got != expected:
        raise CorpusError(
            f"the {what} {path} has sha256 {got}, expected {expected}; delete it or replace it "
            f"with the file from {BUILTINS[name]['url']}.")
    return path


def download(name, dest):
    """Fetch built-in `name` into `dest` through a temporary file: checked, then renamed; no partial file."""
    url, expected = BUILTINS[name]["url"], BUILTINS[name]["sha256"]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(
            f"cannot create the cache folder {dest.parent} ({e.strerror}); set ROSETTA_CACHE_DIR to a "
            f"writable folder, or set ROSETTA_DATA_DIR to a folder holding {name}.txt.") from None
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    h = hashlib.sha256()
    try:
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    size = f"{done:,}/{total:,}" if total else f"{done:,}"
                    print(f"\rdownloading {name}: {size} bytes", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
        except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts, a full disk
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
            raise CorpusError(
                f"cannot download corpus {name!r} from {url} ({reason}) and there is no local copy; "
                f"set ROSETTA_DATA_DIR to a folder holding {name}.txt (fetched from that URL), "
                f"or pass a file path instead.") from None
        if h.hexdigest() != expected:
            raise CorpusError(
                f"the download of {name} from {url} has sha256 {h.hexdigest()}, expected {expected}, "
                f"so nothing was saved; try again later, or put a checked copy in ROSETTA_DATA_DIR "
                f"as {name}.txt.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def builtin_path(name):
    """The checked local file of built-in `name`: data dir, then cache, then a download into the cache."""
    data_dir = os.environ.get("ROSETTA_DATA_DIR")
    if data_dir and Path(data_dir, f"{name}.txt").is_file():
        return _check_copy(name, Path(data_dir, f"{name}.txt"), "local copy (ROSETTA_DATA_DIR)")
    cached = cache_dir() / f"{name}.txt"
    if cached.is_file():
        return _check_copy(name, cached, "cached copy")
    return download(name, cached)


def load_text(name_or_path):
    """The text of a built-in corpus (by name) or of a UTF-8 file (by path)."""
    name_or_path = str(name_or_path)
    if name_or_path in BUILTINS:
        path = builtin_path(name_or_path)
    else:
        path = Path(name_or_path)
        builtins = ", ".join(BUILTINS)
        if not path.exists():
            if os.sep not in name_or_path and "/" not in name_or_path and not path.suffix:
                raise CorpusError(
                    f"unknown corpus {name_or_path!r}: it is neither a built-in ({builtins}) nor an "
                    f"existing file; pass one of those names or the path of a UTF-8 text file.")
            raise CorpusError(
                f"no corpus file at {name_or_path}; check the path, or pass a built-in name ({builtins}).")
        if path.is_dir():
            raise CorpusError(
                f"the corpus path {name_or_path} is a folder; pass a UTF-8 text file inside it, "
                f"or a built-in name ({builtins}).")
    raw = path.read_bytes()
    if not raw:
        raise CorpusError(f"the corpus file {path} is empty; pass a text file with some characters in it.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"the corpus file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at byte offset "
            f"{e.start} cannot be decoded); convert it to UTF-8, e.g. with `iconv -t UTF-8`.") from None


# ---------------------------------------------------------------------------------------------
# Vocabulary

def quote_chars(chars, limit=20):
    """'a', 'b', 'c' and 5 more: characters for a message."""
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


class Vocabulary:
    """The characters of a model, sorted by code point; id k is chars[k]."""

    def __init__(self, chars):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise CorpusError("a vocabulary is made of single characters; pass a string or a list of characters.")
        if not chars:
            raise CorpusError("a vocabulary needs at least one character; build it from a non-empty text.")
        self.chars = "".join(sorted(set(chars)))
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # sorted: searchsorted

    @classmethod
    def from_text(cls, text):
        return cls(set(text))

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __hash__(self):
        return hash(self.chars)

    def __repr__(self):
        return f"Vocabulary({self.chars!r})"

    def encode(self, text, what="the text"):
        """np.int64 ids (len(text),); characters outside the vocabulary are refused, naming them."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point each
        ids = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        unknown = self._codes[ids] != codes
        if unknown.any():
            bad = list(dict.fromkeys(chr(c) for c in codes[unknown]))  # in order of appearance
            raise CorpusError(
                f"{what} contains {quote_chars(bad)}, which {'is' if len(bad) == 1 else 'are'} not in the "
                f"vocabulary of this model; use only characters from: {self.chars!r}.")
        return ids.astype(np.int64)

    def decode(self, ids):
        """The string of ids (any integer sequence)."""
        return "".join(self.chars[i] for i in np.asarray(ids, dtype=np.int64).ravel())


# ---------------------------------------------------------------------------------------------
# The reduced alphabet

class _Reducer(dict):
    """str.translate table over REDUCED_ALPHABET, filled one character at a time as they appear."""

    def __missing__(self, code):
        c = chr(code)
        if c in REDUCED_ALPHABET:
            out = c
        elif c.isspace():
            out = " "
        else:
            out = None  # dropped
        self[code] = out
        return out


_REDUCER = _Reducer()


def reduce_text(text):
    """text in REDUCED_ALPHABET: lower case, accents stripped, other whitespace -> space, the rest dropped."""
    text = unicodedata.normalize("NFKD", text.lower())  # "á" -> "a" + combining accent (dropped)
    return text.translate(_REDUCER)


# ---------------------------------------------------------------------------------------------
# A corpus: text, vocabulary and ids together

@dataclass(eq=False)
class Corpus:
    name: str                               # built-in name, or the file's name without suffix
    text: str = field(repr=False)           # the (possibly reduced) text
    vocab: Vocabulary                       # its sorted characters
    data: np.ndarray = field(repr=False)    # (N,) int64 ids, vocab.encode(text)


def load_corpus(name_or_path, reduced=False):
    """A Corpus from a built-in name or a file path; reduced=True maps it to REDUCED_ALPHABET first."""
    text = load_text(name_or_path)
    name = str(name_or_path) if str(name_or_path) in BUILTINS else Path(name_or_path).stem
    if reduced:
        text = reduce_text(text)
        if not text:
            raise CorpusError(
                f"corpus {name_or_path} has no characters of the reduced alphabet; "
                f"drop the reduced option or use a text with Latin letters.")
    vocab = Vocabulary.from_text(text)
    return Corpus(name, text, vocab, vocab.encode(text))
