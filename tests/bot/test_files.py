"""bot.files.replacing: a file is written whole or not at all, and a failure names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.files import WriteError, replacing


def leftovers(folder: Path) -> list[str]:
    """Temporary files left in `folder` (they start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_file_appears_whole_only_when_the_block_ends(tmp_path: Path) -> None:
    """While the block runs the target is absent; after it, it holds everything written."""
    target = tmp_path / "report.md"
    with replacing(target, "w") as stream:
        stream.write("# part one\n")
        assert not target.exists()
        stream.write("part two\n")
    assert target.read_text() == "# part one\npart two\n"
    with replacing(target, "wb") as binary:
        binary.write(b"%PDF-1.4 bytes")
    assert target.read_bytes() == b"%PDF-1.4 bytes"
    assert leftovers(tmp_path) == []


def test_an_error_midway_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """Whatever interrupts the writing (here a bug), the file already there is untouched."""
    target = tmp_path / "audit.jsonl"
    target.write_text("yesterday's export\n")

    def interrupted() -> None:
        with replacing(target, "w") as stream:
            stream.write("half of today's")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        interrupted()
    assert target.read_text() == "yesterday's export\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["missing/dir/out.zip", "afile/out.zip", "a_directory"])
def test_an_unwritable_target_is_one_error_naming_it(tmp_path: Path, where: str) -> None:
    """A missing folder, a file where a folder should be, a directory as the target: one
    WriteError naming the path and why, and nothing written anywhere."""
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "a_directory").mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    target = tmp_path / where
    with pytest.raises(WriteError) as caught, replacing(target) as binary:
        binary.write(b"x")
    assert str(caught.value).startswith(f"cannot write {str(target)!r}: ")
    assert caught.value.target == target
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_hostile_file_name_stays_one_line(tmp_path: Path) -> None:
    """A name with a newline and quotes is shown escaped: the error is one line."""
    target = tmp_path / "missing" / "a\nb'\"c.md"
    with pytest.raises(WriteError) as caught, replacing(target, "w") as stream:
        stream.write("x")
    assert "\n" not in str(caught.value)
