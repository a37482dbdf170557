"""The kernel cache's folder (cnnlang/cache.py): in the user's cache, named after the kernels' sources, so that
a change to any kernel module, not only to a kernel's own file, compiles afresh."""

from __future__ import annotations

from pathlib import Path

from cnnlang.cache import kernel_cache_dir, sources_digest


def test_digest_follows_every_source_file(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a source")
    first = sources_digest(tmp_path)
    assert len(first) == 16 and first == sources_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("changed, still not a source")
    assert sources_digest(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")  # a module another one imports: what Numba does not check
    second = sources_digest(tmp_path)
    assert second != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "b2.py")  # same bytes, another module
    assert sources_digest(tmp_path) not in (first, second)


def test_kernel_folder_is_per_sources_in_the_user_cache(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("CNNLANG_CACHE", str(tmp_path / "cache"))
    sources = tmp_path / "kernels"
    sources.mkdir()
    (sources / "k.py").write_text("k = 1\n")
    folder = kernel_cache_dir(sources)
    assert folder == tmp_path / "cache" / "kernels" / sources_digest(sources)
    (sources / "k.py").write_text("k = 2\n")
    assert kernel_cache_dir(sources) != folder
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))  # an explicit setting wins
    assert kernel_cache_dir(sources) == tmp_path / "mine"
