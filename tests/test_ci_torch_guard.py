"""tests/conftest.py: with CNNLANG_REQUIRE_TORCH=1 (as in CI) a test that skips for want of torch
fails; without it, it skips."""

from pathlib import Path

pytest_plugins = ["pytester"]


def test_a_torch_skip_fails_only_when_torch_is_required(pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        "import pytest\n"
        "def test_needs_torch():\n"
        "    pytest.importorskip('no_such_module_torch_stand_in', reason='torch is not installed')\n"
        "def test_other_skip():\n"
        "    pytest.skip('no network')\n"
    )
    monkeypatch.setenv("CNNLANG_REQUIRE_TORCH", "1")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1, skipped=1)
    monkeypatch.delenv("CNNLANG_REQUIRE_TORCH")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=2)
