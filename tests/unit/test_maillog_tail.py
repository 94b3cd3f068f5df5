"""The log reader on real files: resume, rotation (rename, gzip, copy-truncate), partial lines."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from mailwatch.core.model import LogCursor
from mailwatch.sources.maillog import read_new_lines


def _lines(n: int, start: int = 0) -> str:
    return "".join(f"line {i}\n" for i in range(start, start + n))


@pytest.fixture(name="log")
def fixture_log(tmp_path: Path) -> Path:
    """A log file with three lines."""
    path = tmp_path / "maillog"
    path.write_text(_lines(3))
    return path


class TestResume:
    """A cursor resumes exactly after the last complete line."""

    def test_first_read_reads_everything(self, log: Path) -> None:
        """Without a cursor the whole file is read."""
        lines, _ = read_new_lines(log, None)
        assert lines == ["line 0", "line 1", "line 2"]

    def test_resume_reads_only_new_lines(self, log: Path) -> None:
        """After appending, only the new lines come back; then nothing."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write(_lines(2, 3))
        lines, cursor = read_new_lines(log, cursor)
        assert lines == ["line 3", "line 4"]
        assert read_new_lines(log, cursor)[0] == []

    def test_partial_line_waits(self, log: Path) -> None:
        """A half-written line is not consumed until its newline arrives."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write("line 3 is ha")
        lines, cursor = read_new_lines(log, cursor)
        assert lines == []
        with log.open("a") as handle:
            handle.write("lf done\n")
        assert read_new_lines(log, cursor)[0] == ["line 3 is half done"]


class TestRotation:
    """No line is lost or read twice across a rotation."""

    def test_rename_and_new_file(self, log: Path) -> None:
        """Lines written to the old file before the rename are read, then the new file."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write(_lines(2, 3))
        log.rename(log.with_name("maillog.1"))
        log.write_text(_lines(2, 5))
        lines, cursor = read_new_lines(log, cursor)
        assert lines == ["line 3", "line 4", "line 5", "line 6"]
        assert read_new_lines(log, cursor)[0] == []

    def test_rotated_and_compressed_before_new_file(self, log: Path) -> None:
        """As `postfix logrotate` does: renamed, gzipped, no new file yet; then a new file."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write(_lines(1, 3))
        rotated = log.with_name("maillog.20261129-121705.gz")
        with log.open("rb") as src, gzip.open(rotated, "wb") as dst:
            shutil.copyfileobj(src, dst)
        log.unlink()
        lines, cursor = read_new_lines(log, cursor)
        assert lines == ["line 3"]
        assert read_new_lines(log, cursor)[0] == []  # still no new file: nothing, no error
        log.write_text(_lines(1, 4))
        assert read_new_lines(log, cursor)[0] == ["line 4"]

    def test_rotated_log_whose_inode_is_reused(self, log: Path) -> None:
        """The new log may get the old one's inode: the fingerprint, not the inode, decides."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write(_lines(1, 3))
        with log.open("rb") as src, gzip.open(log.with_name("maillog.1.gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        log.unlink()
        log.write_text(_lines(1, 4))
        reused = LogCursor(inode=log.stat().st_ino, offset=cursor.offset, head=cursor.head)
        lines, _ = read_new_lines(log, reused)
        assert lines == ["line 3", "line 4"]

    def test_copy_truncate_with_copy_kept(self, log: Path) -> None:
        """With copytruncate the rest is read from the copy, then the truncated file."""
        _, cursor = read_new_lines(log, None)
        with log.open("a") as handle:
            handle.write(_lines(1, 3))
        shutil.copyfile(log, log.with_name("maillog.1"))
        with log.open("r+") as handle:
            handle.truncate(0)
        log.write_text(_lines(1, 4))
        lines, _ = read_new_lines(log, cursor)
        assert lines == ["line 3", "line 4"]

    def test_copy_truncate(self, log: Path) -> None:
        """Same inode, truncated then regrown past the old offset: read from the start."""
        _, cursor = read_new_lines(log, None)
        inode = log.stat().st_ino
        with log.open("r+") as handle:
            handle.truncate(0)
        log.write_text(_lines(5, 10))  # longer than before: size alone would not tell
        assert log.stat().st_ino == inode
        lines, _ = read_new_lines(log, cursor)
        assert lines == [f"line {i}" for i in range(10, 15)]

    def test_missing_log_without_rotation_is_an_error(self, tmp_path: Path) -> None:
        """A log that never existed raises FileNotFoundError (the source reports it)."""
        with pytest.raises(FileNotFoundError):
            read_new_lines(tmp_path / "nope", None)

    def test_undecodable_bytes_do_not_stop_reading(self, log: Path) -> None:
        """Broken UTF-8 becomes replacement characters; the next lines still come."""
        _, cursor = read_new_lines(log, None)
        with log.open("ab") as handle:
            handle.write(b"bad \xff\xfe bytes\nline 9\n")
        lines, _ = read_new_lines(log, cursor)
        assert lines == ["bad \ufffd\ufffd bytes", "line 9"]
        assert os.path.getsize(log) > 0
