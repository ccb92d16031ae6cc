import pytest

from gpuplan.errors import InputError
from gpuplan.units import GiB, format_bytes, parse_count


@pytest.mark.parametrize("text,value", [("7e9", 7_000_000_000), ("7B", 7_000_000_000), ("2T", 2 * 10**12),
                                        ("128k", 128_000), ("4096", 4096), ("1.5M", 1_500_000), (" 8b ", 8 * 10**9)])
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["", "abc", "7X", "-3", "1e", "1e999"])
def test_parse_count_rejects(text):
    with pytest.raises(InputError, match="--tokens"):
        parse_count(text, "--tokens")


def test_format_bytes_labels_unit():
    assert format_bytes(80 * GiB) == "80.00 GiB"
    assert format_bytes(80 * GiB, "GB") == "85.90 GB"
