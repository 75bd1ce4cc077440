"""Corpora: built-in lookup (data dir, cache, download), every refusal, the vocabulary, the reduced alphabet."""

import hashlib
import io
import urllib.error
import urllib.request

import numpy as np
import pytest

from common import corpus
from common.corpus import BUILTINS, REDUCED_ALPHABET, Vocabulary, load_corpus, load_text, reduce_text
from common.errors import CorpusError

FAKE = "to be, or not to be\nthat is the question\n".encode()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No data dir, an empty cache in tmp_path, and a fake built-in 'fake' whose sha256 is FAKE's."""
    monkeypatch.delenv("ROSETTA_DATA_DIR", raising=False)
    monkeypatch.setenv("ROSETTA_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "source.txt"
    source.write_bytes(FAKE)
    monkeypatch.setitem(BUILTINS, "fake", {"url": source.as_uri(), "sha256": hashlib.sha256(FAKE).hexdigest()})
    return tmp_path


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# File paths and their refusals

def test_file_path_is_read_verbatim(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("héllo\r\nwörld\n".encode())
    assert load_text(p) == "héllo\r\nwörld\n"
    assert load_text(str(p)) == "héllo\r\nwörld\n"


def test_unknown_name_lists_the_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusError, match=r"unknown corpus 'shakespear': it is neither a built-in "
                                          r"\(tinyshakespeare, quijote\) nor an existing file"):
        load_text("shakespear")


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError, match=r"no corpus file at .*nope\.txt; check the path, or pass a built-in name"):
        load_text(tmp_path / "nope.txt")


def test_directory_refused(tmp_path):
    with pytest.raises(CorpusError, match=r"is a folder; pass a UTF-8 text file inside it"):
        load_text(tmp_path)


def test_not_utf8_gives_the_byte_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("abc señor".encode("latin-1"))  # ñ is the single byte 0xf1 at offset 6
    with pytest.raises(CorpusError, match=r"is not UTF-8 text \(byte 0xf1 at byte offset 6 cannot be decoded\); "
                                          r"convert it to UTF-8"):
        load_text(p)


def test_empty_file_refused(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.txt is empty; pass a text file"):
        load_text(p)


# ---------------------------------------------------------------------------------------------
# Built-ins: data dir, cache, download

def test_data_dir_copy_is_found(isolated, monkeypatch):
    data = isolated / "data"
    data.mkdir()
    (data / "fake.txt").write_bytes(FAKE)
    monkeypatch.setenv("ROSETTA_DATA_DIR", str(data))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert load_text("fake") == FAKE.decode()
    assert files_in(isolated / "cache") == []  # a local copy is used in place, not copied


def test_tampered_data_dir_copy_is_refused(isolated, monkeypatch):
    data = isolated / "data"
    data.mkdir()
    (data / "fake.txt").write_bytes(FAKE.replace(b"question", b"answer"))
    monkeypatch.setenv("ROSETTA_DATA_DIR", str(data))
    expected = BUILTINS["fake"]["sha256"]
    with pytest.raises(CorpusError) as e:
        load_text("fake")
    msg = str(e.value)
    assert f"local copy (ROSETTA_DATA_DIR) {data / 'fake.txt'} has sha256 " in msg
    assert f"expected {expected}; delete it or replace it with the file from {BUILTINS['fake']['url']}" in msg


def test_download_goes_to_the_cache_once(isolated, monkeypatch, capsys):
    assert load_text("fake") == FAKE.decode()  # a file:// URL: urllib for real, no network
    cache = isolated / "cache"
    assert files_in(cache) == ["fake.txt"]  # no temporary file left beside it
    assert (cache / "fake.txt").read_bytes() == FAKE
    assert f"downloading fake: {len(FAKE)}/{len(FAKE)} bytes" in capsys.readouterr().err
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert load_text("fake") == FAKE.decode()  # second time from the cache


def test_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ROSETTA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert corpus.cache_dir() == tmp_path / "lstm-rosetta"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus.cache_dir() == tmp_path / "home" / ".cache" / "lstm-rosetta"


def test_download_with_bad_bytes_leaves_nothing(isolated, monkeypatch):
    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(FAKE))}

    bad = FAKE.replace(b"question", b"answer!!")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(bad))
    with pytest.raises(CorpusError) as e:
        load_text("fake")
    assert (f"the download of fake from {BUILTINS['fake']['url']} has sha256 {hashlib.sha256(bad).hexdigest()}, "
            f"expected {BUILTINS['fake']['sha256']}, so nothing was saved") in str(e.value)
    assert files_in(isolated / "cache") == []


def test_download_cut_off_leaves_nothing(isolated, monkeypatch):
    class Response(io.BytesIO):
        headers = {}

        def read(self, n=-1):
            if self.tell() > 10:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(8)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(FAKE))
    with pytest.raises(CorpusError, match=r"cannot download corpus 'fake' .*\(Connection reset by peer\)"):
        load_text("fake")
    assert files_in(isolated / "cache") == []


def test_no_network_and_no_copy_says_how_to_supply_the_file(isolated, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(CorpusError) as e:
        load_text("tinyshakespeare")
    assert str(e.value) == (
        f"cannot download corpus 'tinyshakespeare' from {BUILTINS['tinyshakespeare']['url']} "
        f"([Errno -3] Temporary failure in name resolution) and there is no local copy; "
        f"set ROSETTA_DATA_DIR to a folder holding tinyshakespeare.txt (fetched from that URL), "
        f"or pass a file path instead.")
    assert files_in(isolated / "cache") == []


def test_tampered_cache_copy_is_refused(isolated):
    (isolated / "cache").mkdir()
    (isolated / "cache" / "fake.txt").write_bytes(b"something else")
    with pytest.raises(CorpusError, match=r"the cached copy .*fake\.txt has sha256 [0-9a-f]{64}, expected "):
        load_text("fake")


def test_builtin_checksums_match_the_shared_data():
    sums = dict(reversed(line.split()) for line in
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed  tinyshakespeare.txt\n"
                "0e19b68f0cbaa9aeeac2674f34182212ead3b2cfa067e695cfb57d4955048544  quijote.txt".splitlines())
    assert {f"{name}.txt": b["sha256"] for name, b in BUILTINS.items()} == sums


def test_shared_data_sha256sums_file(shared_data):
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, filename = line.split()
        assert BUILTINS[filename.removesuffix(".txt")]["sha256"] == digest


# ---------------------------------------------------------------------------------------------
# The real built-ins

def test_tinyshakespeare(shared_data, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    c = load_corpus("tinyshakespeare")
    assert c.name == "tinyshakespeare"
    assert len(c.text.encode()) == 1_115_394 == len(c.text)  # all ASCII
    assert len(c.vocab) == 65
    assert c.vocab.chars == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert c.data.dtype == np.int64 and c.data.shape == (1_115_394,)
    assert c.text.startswith("First Citizen:\n")
    assert c.vocab.decode(c.data[:14]) == "First Citizen:"
    assert c.data[0] == c.vocab.chars.index("F")
    assert "1115394" not in repr(c) and len(repr(c)) < 300  # the text is not in the repr


def test_quijote_is_utf8(shared_data):
    c = load_corpus("quijote")
    assert len(c.text.encode()) == 1_065_742
    assert len(c.text) < 1_065_742  # multi-byte characters decoded
    assert "ñ" in c.vocab.chars and "¿" in c.vocab.chars
    assert c.vocab.decode(c.data) == c.text


def test_reduced_tinyshakespeare(shared_data):
    c = load_corpus("tinyshakespeare", reduced=True)
    full = load_text("tinyshakespeare")
    assert set(c.vocab.chars) <= set(REDUCED_ALPHABET)
    assert c.vocab.chars == "\n !',-.3:;?abcdefghijklmnopqrstuvwxyz"
    assert c.text.startswith("first citizen:\nbefore we proceed")
    assert len(c.text) == len(full) - full.count("$") - full.count("&") > 0  # nothing else dropped


# ---------------------------------------------------------------------------------------------
# Vocabulary

def test_vocabulary_is_sorted_and_unique():
    v = Vocabulary("hello world")
    assert v.chars == " dehlorw" and len(v) == 8
    assert Vocabulary(["b", "a", "b"]).chars == "ab"
    assert Vocabulary.from_text("hello world") == v
    assert Vocabulary("ab") != Vocabulary("abc") and Vocabulary("ab") != "ab"


def test_vocabulary_refusals():
    with pytest.raises(CorpusError, match="at least one character"):
        Vocabulary("")
    with pytest.raises(CorpusError, match="single characters"):
        Vocabulary(["ab", "c"])


def test_encode_decode_round_trip():
    text = "Ça va? ¡Sí, señor! 日本\n"
    v = Vocabulary.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert [v.chars[i] for i in ids] == list(text)
    assert v.decode(ids) == text
    assert v.decode(ids.tolist()) == text
    assert v.encode("").shape == (0,)
    # ids follow code-point order
    assert Vocabulary("cab").encode("abc").tolist() == [0, 1, 2]


def test_encode_refuses_unknown_characters():
    v = Vocabulary("abc \n")
    with pytest.raises(CorpusError) as e:
        v.encode("a Zb#cZ", what="the prime")
    assert str(e.value) == ("the prime contains 'Z', '#', which are not in the vocabulary of this model; "
                            "use only characters from: '\\n abc'.")
    with pytest.raises(CorpusError, match=r"^the text contains 'é', which is not in the vocabulary"):
        v.encode("abé")
    with pytest.raises(CorpusError, match=r"contains '\\x00', which"):  # below the smallest code point
        v.encode("\x00")


# ---------------------------------------------------------------------------------------------
# Reduced alphabet

def test_reduce_text():
    assert reduce_text("Hello, World!\n") == "hello, world!\n"
    assert reduce_text("¿Qué año, Señor Ñandú?") == "que ano, senor nandu?"  # accents stripped, ¿ dropped
    assert reduce_text("tab\there\r\nend") == "tab here \nend"  # other whitespace -> space
    assert reduce_text('a "b" [c] 42; d: e\'s - f.') == "a b c 42; d: e's - f."
    assert set(reduce_text("".join(map(chr, range(0x20, 0x250))))) <= set(REDUCED_ALPHABET)


def test_reduced_corpus_from_file(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("ABC abc\n")
    c = load_corpus(p, reduced=True)
    assert c.name == "mine" and c.text == "abc abc\n" and c.vocab.chars == "\n abc"
    p.write_text("日本語")
    with pytest.raises(CorpusError, match="has no characters of the reduced alphabet"):
        load_corpus(p, reduced=True)

