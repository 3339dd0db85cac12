"""Download helpers shared by ``fetch_voc2007.py`` and ``fetch_coco2017.py`` (stdlib only).

Each archive is downloaded into ``<dest>/downloads/`` with a progress line, checked
against its MD5, and extracted into ``<dest>/`` (members that would leave ``<dest>`` are
refused).  An archive already present with the right checksum is not downloaded again.
If no URL can be reached the script stops with one line saying which URL failed and where
to put the file by hand.
"""
import hashlib
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path


class FetchError(Exception):
    """A one-line, user-facing reason to stop."""


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls, target, md5=None, timeout=30):
    """Fetch the first reachable of ``urls`` into ``target`` (a ``.part`` file until done)."""
    target = Path(target)
    if target.exists() and (md5 is None or md5sum(target) == md5):
        print(f"{target.name}: already downloaded", file=sys.stderr)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _copy(url, target, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", None) or e
            failures.append(f"{url} ({reason})")
            continue
        if md5 is not None and md5sum(target) != md5:
            target.unlink()
            failures.append(f"{url} (checksum mismatch, expected md5 {md5})")
            continue
        return target
    raise FetchError(
        f"could not reach {'; '.join(failures)}. Download {target.name} by hand"
        f"{f' (md5 {md5})' if md5 else ''} to {target} and rerun this script")


def _copy(url, target, timeout):
    part = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, last = 0, 0.0
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            out.write(block)
            done += len(block)
            if time.monotonic() - last > 0.5:
                last = time.monotonic()
                share = f"{100 * done / total:5.1f}% of {total / 1e6:.0f} MB" if total else ""
                print(f"\r{target.name}: {done / 1e6:8.1f} MB {share}", end="", file=sys.stderr)
    print(f"\r{target.name}: {done / 1e6:8.1f} MB done", file=sys.stderr)
    os.replace(part, target)


def extract(archive, dest):
    """Unpack a ``.tar`` or ``.zip`` into ``dest``, refusing members that leave it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    print(f"{archive.name}: extracting into {dest}", file=sys.stderr)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _check_member(name, root, archive)
            zf.extractall(dest)
        return
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            _check_member(m.name, root, archive)
            if m.issym() or m.islnk() or m.isdev():
                raise FetchError(f"{archive}: refusing link or device member {m.name!r}")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the stdlib's own safety net
            tf.extractall(dest, members=members, filter="data")
        else:
            tf.extractall(dest, members=members)


def _check_member(name, root, archive):
    target = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, target]) != root:
        raise FetchError(f"{archive}: refusing member {name!r} that leaves the target folder")


def run(main):
    """Call ``main()``; turn FetchError and Ctrl-C into a one-line message and exit 1."""
    try:
        main()
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(1)
