import hashlib
import io

import pytest

from mapscope.data import cache, datasets
from mapscope.errors import DataError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MAPSCOPE_DATA", str(tmp_path / "env"))
    assert cache.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache.data_dir() == tmp_path / "env"
    monkeypatch.delenv("MAPSCOPE_DATA")
    monkeypatch.setenv("MAPSCOPE_CACHE", str(tmp_path / "cache"))
    assert cache.data_dir() == tmp_path / "cache"


def test_verify_caches_and_detects_changes(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    calls = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p, n=False: calls.append(p) or real(p, n))
    cache.verify_file(path, _sha(b"hello"))
    cache.verify_file(path, _sha(b"hello"))
    assert len(calls) == 1  # second check served from verified.json
    path.write_bytes(b"hellO")
    with pytest.raises(DataError, match=r"f\.bin: SHA-256 .* does not match"):
        cache.verify_file(path, _sha(b"hello"))


def test_a_same_size_edit_with_the_mtime_set_back_is_caught(tmp_path):
    import os
    import time

    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    cache.verify_file(path, _sha(b"hello"))
    before = path.stat()
    time.sleep(0.01)
    with open(path, "r+b") as handle:  # in place: same inode, same size
        handle.write(b"J")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # what `touch -d` can do
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == 5
    with pytest.raises(DataError, match="does not match"):
        cache.verify_file(path, _sha(b"hello"))


def test_newline_normalised_hash(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"1 2\r\n3 4\r\n")
    assert cache.verify_file(path, _sha(b"1 2\n3 4\n"), normalize_newlines=True)


class _FakeNet:
    def __init__(self, content: dict[str, bytes]):
        self.content, self.asked = content, []

    def __call__(self, url):
        self.asked.append(url)
        if url not in self.content:
            raise OSError("connection refused")
        return io.BytesIO(self.content[url])


def test_download_tries_mirrors_and_verifies(tmp_path):
    net = _FakeNet({"https://b/f": b"payload"})
    target = tmp_path / "sub" / "f"
    cache.download_file(["https://a/f", "https://b/f"], target, _sha(b"payload"), opener=net)
    assert target.read_bytes() == b"payload"
    assert net.asked == ["https://a/f", "https://b/f"]


def test_download_with_wrong_hash_leaves_nothing(tmp_path):
    net = _FakeNet({"https://a/f": b"tampered"})
    target = tmp_path / "f"
    with pytest.raises(DataError, match="every mirror failed") as info:
        cache.download_file(["https://a/f"], target, _sha(b"payload"), opener=net)
    assert "Copy the file by hand" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no half file, no temp file


def test_missing_dataset_message_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as info:
        datasets.verify("mnist", tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert str(tmp_path) in message
    assert "mapscope data fetch mnist" in message


def test_every_file_has_a_pin_and_a_mirror():
    for spec in datasets.DATASETS.values():
        for entry in spec.files:
            assert len(entry.sha256) == 64
            assert entry.mirrors and all(m.startswith("http") for m in entry.mirrors)
