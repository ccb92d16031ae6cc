"""Under --lang zh (or a Chinese locale) errors and --help are Chinese too: an InputError's rule and hint through the
pattern table, argparse's own words, each option's help_zh and the group titles; English stays as it was, also when
one process runs both."""

import pytest

from gpuplan.cli.main import main


def _err(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def test_input_error_in_chinese(capsys):
    code, err = _err(["train", "llama-3.1-8x", "--lang", "zh"], capsys)
    assert code == 2
    assert err.startswith("gpuplan train：错误：model='llama-3.1-8x'：不是预设模型")
    assert "最接近的预设：llama-3.1-8b" in err


def test_argparse_errors_in_chinese_then_english_again(capsys):
    code, err = _err(["train", "llama-3.1-8b", "--batch", "0", "--lang", "zh"], capsys)
    assert code == 2 and "错误" in err and "必须 >= 1" in err
    code, err = _err(["train", "llama-3.1-8b", "--recompute", "x", "--lang=zh"], capsys)
    assert code == 2 and "无效的取值" in err
    code, err = _err(["train", "llama-3.1-8b", "--batch", "0"], capsys)
    assert code == 2 and "error: argument --batch: --batch='0': must be >= 1" in err and "错误" not in err


def test_help_in_chinese_from_the_locale(capsys, monkeypatch):
    monkeypatch.setenv("GPUPLAN_LANG", "zh")
    with pytest.raises(SystemExit):
        from gpuplan.cli.main import build_parser
        from gpuplan.cli import parsers

        parsers.use_help_lang("zh")
        build_parser().parse_args(["plan", "--help"])
    out = capsys.readouterr().out
    parsers.use_help_lang("en")
    assert "用法：" in out and "显示此帮助并退出" in out
    assert "限定搜索范围（逗号分隔）" in out  # a group title
    assert "GPU 目录 id" in out  # an option's help_zh


def test_help_in_english_is_unchanged(capsys, monkeypatch):
    monkeypatch.setenv("GPUPLAN_LANG", "en")
    assert main(["plan", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: gpuplan plan" in out and "restrict the search (comma lists)" in out
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in out)
