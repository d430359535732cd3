"""Fetch Oxford-IIIT Pet (Parkhi et al. 2012) onto a cluster node, in the layout ``trainables/data/pets.py`` reads.

``python fetch_pets.py DEST`` leaves ``DEST/images/*.jpg`` and ``DEST/annotations/{list,trainval,test}.txt,
xmls/, trimaps/``. Idempotent (a complete DEST is left alone), checksummed, and atomic per archive: an
interrupted run leaves no half-extracted tree. Standard library only: it runs before arx is installed
(cluster launcher setup commands) and in the KubeRay init container.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/data"
ARCHIVES = {  # archive -> (md5, the top-level directory it holds); the checksums torchvision uses
    "images.tar.gz": ("5c4f3ee8e5d25df40f4fd59a7f44e54c", "images"),
    "annotations.tar.gz": ("95a8c909bbe2e81eed6a22bccdf3f68f", "annotations"),
}
DONE = {"images": "images", "annotations": "annotations/list.txt"}


def complete(dest: Path) -> bool:
    return all((dest / marker).exists() for marker in DONE.values())


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_archive(url: str, md5: str, top: str, dest: Path) -> None:
    """Download ``url``, check its md5, extract its ``top`` directory to ``dest/top`` (replacing it)."""
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        got = md5sum(archive)
        if got != md5:
            raise SystemExit(f"fetch_pets: {url}: md5 {got}, expected {md5}")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if not (Path(tmp) / top).is_dir():
            raise SystemExit(f"fetch_pets: {url} holds no {top}/ directory")
        shutil.rmtree(dest / top, ignore_errors=True)
        (Path(tmp) / top).rename(dest / top)


def fetch(dest: Path, base_url: str = BASE_URL, archives: dict = ARCHIVES) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    if complete(dest):
        return dest
    for name, (md5, top) in archives.items():
        if not (dest / DONE[top]).exists():
            print(f"fetch_pets: {base_url}/{name} -> {dest / top}", file=sys.stderr)
            fetch_archive(f"{base_url}/{name}", md5, top, dest)
    return dest


ENRICHED = "visual-layer/oxford-iiit-pet-vl-enriched"


def fetch_enriched(dest: Path, repo: str = ENRICHED) -> Path:
    """The enriched release (whole-pet boxes, ``params.boxes: whole``): its parquet files into ``dest/data/``.

    Needs hub access and ``huggingface_hub`` (installed with arx's dependencies via timm)."""
    if sorted(dest.glob("data/test-*.parquet")) and sorted(dest.glob("data/train-*.parquet")):
        return dest
    from huggingface_hub import snapshot_download

    print(f"fetch_pets: hf://datasets/{repo} -> {dest}", file=sys.stderr)
    snapshot_download(repo, repo_type="dataset", local_dir=dest, allow_patterns=["data/*.parquet"])
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest", type=Path, help="dataset.root of the sweep, e.g. /data/oxford-iiit-pet")
    p.add_argument("--base-url", default=BASE_URL)
    p.add_argument("--enriched", action="store_true",
                   help=f"fetch the enriched release {ENRICHED} (parquet; pets params.boxes: whole) instead")
    args = p.parse_args(argv)
    fetch_enriched(args.dest) if args.enriched else fetch(args.dest, args.base_url)


if __name__ == "__main__":
    main()
