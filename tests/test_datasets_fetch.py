"""The fetch scripts: offline failure message, checksums, safe extraction (no network used)."""
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
sys.path.insert(0, str(DATASETS))
import _fetch  # noqa: E402


@pytest.mark.parametrize("script, archive", [
    ("fetch_voc2007.py", "VOCtrainval_06-Nov-2007.tar"),
    ("fetch_coco2017.py", "annotations_trainval2017.zip"),
])
def test_unreachable_url_gives_one_clear_line(tmp_path, script, archive):
    # Port 9 (discard) on localhost refuses the connection at once: no network needed.
    result = subprocess.run(
        [sys.executable, str(DATASETS / script), "--dest", str(tmp_path), "--url-base",
         "http://127.0.0.1:9/"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not reach http://127.0.0.1:9/")
    assert archive in lines[0] and "by hand" in lines[0]
    assert str(tmp_path / "downloads" / archive) in lines[0]


def test_download_checks_the_md5_and_extracts(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("VOCdevkit/VOC2007/hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    source = tmp_path / "src.tar"
    source.write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    url = source.as_uri()
    with pytest.raises(_fetch.FetchError, match="checksum mismatch"):
        _fetch.download([url], tmp_path / "dl" / "a.tar", md5="0" * 32)
    archive = _fetch.download([url], tmp_path / "dl" / "a.tar", md5=md5)
    _fetch.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "VOCdevkit" / "VOC2007" / "hello.txt").read_text() == "hello"
    source.unlink()                                   # present with the right md5: no fetch
    assert _fetch.download([url], tmp_path / "dl" / "a.tar", md5=md5) == archive


def test_extraction_refuses_members_that_leave_the_folder(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(_fetch.FetchError, match="leaves the target folder"):
        _fetch.extract(evil, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
