import gzip

import numpy as np
import pytest

from mapscope.data.idx import read_idx, write_idx
from mapscope.data.wifi import read_wifi
from mapscope.errors import DataError


def test_idx_round_trip_gzip_and_raw(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", images, compress=compress)
        back = read_idx(path, (5, 28, 28))
        assert back.dtype == np.uint8
        np.testing.assert_array_equal(back, images)


def test_idx_wrong_magic_names_file(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match=r"bad\.gz: not an IDX file"):
        read_idx(path)


def test_idx_truncated_body(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((3, 4, 4)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((50, 28, 28)))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="gzip stream is truncated"):
        read_idx(path)


def test_idx_unexpected_shape(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match=r"expected \(60000, 28, 28\)"):
        read_idx(path, (60000, 28, 28))


@pytest.mark.parametrize("sep,newline", [("\t", "\n"), (" ", "\r\n"), ("  ", "\n")])
def test_wifi_separators_and_line_ends(tmp_path, sep, newline):
    rows = ["-64 -56 -61 -66 -71 -82 -81 1", "-40 -58 -45 -41 -60 -87 -80 4"]
    path = tmp_path / "w.txt"
    path.write_bytes(newline.join(r.replace(" ", sep) for r in rows).encode() + newline.encode())
    signals, rooms = read_wifi(path)
    assert signals.shape == (2, 7)
    assert signals[1, 0] == -40
    np.testing.assert_array_equal(rooms, [1, 4])


def test_wifi_non_numeric_row(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("-64\t-56\t-61\t-66\t-71\t-82\t-81\t1\n-64\tabc\t-61\t-66\t-71\t-82\t-81\t1\n")
    with pytest.raises(DataError, match="line 2: WLAN-1 is 'abc'; expected a whole number"):
        read_wifi(path)


def test_wifi_wrong_field_count_and_room(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("-64 -56 -61 1\n")
    with pytest.raises(DataError, match="4 fields, expected 8"):
        read_wifi(path)
    path.write_text("-64 -56 -61 -66 -71 -82 -81 7\n")
    with pytest.raises(DataError, match="line 1: room is 7; expected 1..4"):
        read_wifi(path)


@pytest.mark.parametrize(
    "field, says",
    [
        ("100000", "WLAN-0 is 100000; expected -32768..32767"),  # once wrapped to -31072
        ("inf", "WLAN-0 is 'inf'; expected a whole number"),
        ("nan", "WLAN-0 is 'nan'; expected a whole number"),
        ("-64.5", "WLAN-0 is '-64.5'; expected a whole number"),
    ],
)
def test_wifi_out_of_range_or_fractional_values_are_named(tmp_path, field, says):
    path = tmp_path / "w.txt"
    path.write_text(f"{field} -56 -61 -66 -71 -82 -81 1\n")
    with pytest.raises(DataError, match=says):
        read_wifi(path)
    path.write_text("-64 -56 -61 -66 -71 -82 -81 2.7\n")  # once truncated to room 2
    with pytest.raises(DataError, match="room is '2.7'; expected a whole number"):
        read_wifi(path)
