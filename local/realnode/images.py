"""The node's images, built here without a registry or a Docker engine, and imported into containerd.

- The Debian base: `debootstrap` (minbase + python3 + venv) into a root file system, committed
  as an image by buildah.
- The kernelkeeper image: the repository's own `Dockerfile`, built by `buildah bud` on that base,
  the same file users build with `docker build`.
- pause and CoreDNS: one static binary each, written as a one-layer OCI image by hand.

Everything lands in the cache (`<cache>/images/`), keyed by its inputs, and is rebuilt only when
they change. buildah keeps its storage there too, so nothing is written to /var/lib/containers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from kernelkeeper import __version__
from kernelkeeper.local import build, versions
from kernelkeeper.local.realnode import layout as L

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_PACKAGES = ("python3", "python3-venv")
# What the Dockerfile copies: a change to any of these makes a new image.
IMAGE_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "kernelkeeper",
                "crds", "kube", "operator", "gateway", "kernel", "local", "client", "lab")


class ImageError(RuntimeError):
    """An image build step failed; the message names the step and its log."""


def _log(msg: str) -> None:
    print(f"[kernelkeeper images] {msg}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    return build.cache_root() / "images"


def _buildah_flags() -> list[str]:
    storage = images_dir() / "buildah"
    return ["--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "overlay"]


def _run(title: str, args: Sequence[str], log: Path, *, cwd: Path | None = None) -> str:
    _log(f"{title} ...")
    start = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=out, text=True,
                              cwd=cwd, check=False)
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise ImageError(f"{title} failed (exit {proc.returncode}):\n{tail}\nFull log: {log}")
    _log(f"{title}: done in {time.monotonic() - start:.1f}s")
    return proc.stdout


def need_tools() -> None:
    missing = [t for t in ("debootstrap", "buildah") if not shutil.which(t)]
    if missing:
        raise ImageError(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")


# ---------------------------------------------------------------------- the Debian base image

def base_image_name() -> str:
    return f"{L.IMAGE_DOMAIN}/debian-python:{versions.DEBIAN_SUITE}"


def _base_key() -> str:
    return hashlib.sha256(json.dumps([versions.DEBIAN_SUITE, BASE_PACKAGES]).encode()).hexdigest()


def ensure_base_image() -> str:
    """Bootstrap the Debian base once; returns its image name in buildah's storage."""
    marker = images_dir() / f"base-{versions.DEBIAN_SUITE}.key"
    name = base_image_name()
    if marker.is_file() and marker.read_text() == _base_key() and _buildah_has(name):
        return name
    need_tools()
    images_dir().mkdir(parents=True, exist_ok=True)
    log = images_dir() / "base-build.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(prefix="kk-rootfs-", dir=images_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(f"base: debootstrap {versions.DEBIAN_SUITE} (minbase + {', '.join(BASE_PACKAGES)}; "
             "about a minute)",
             ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              versions.DEBIAN_SUITE, str(rootfs)], log)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale", "var/log"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file() or p.is_symlink():
                    p.unlink()
                elif p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
        container = _run("base: new working container", ["buildah", *_buildah_flags(), "from",
                                                          "scratch"], log).strip()
        try:
            mount = _run("base: mount it", ["buildah", *_buildah_flags(), "mount", container],
                         log).strip()
            _run("base: copy the root file system", ["cp", "-a", f"{rootfs}/.", mount + "/"], log)
            _run("base: set PATH", ["buildah", *_buildah_flags(), "config", "--env",
                                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                    "--cmd", "python3", container], log)
            _run(f"base: commit {name}", ["buildah", *_buildah_flags(), "commit", "-q",
                                          container, name], log)
        finally:
            subprocess.run(["buildah", *_buildah_flags(), "rm", container], capture_output=True,
                           check=False)
    marker.write_text(_base_key())
    return name


def _buildah_has(name: str) -> bool:
    out = subprocess.run(["buildah", *_buildah_flags(), "inspect", "--type", "image", name],
                         capture_output=True, check=False)
    return out.returncode == 0


# ---------------------------------------------------------------------- the kernelkeeper image

def _files(root: Path, names: Iterable[str]) -> list[Path]:
    out = []
    for name in names:
        p = root / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                    and not f.name.endswith((".pyc", ".egg-info"))]
    return sorted(out)


def source_key(root: Path = REPO_ROOT) -> str:
    """A digest of everything the Dockerfile copies, plus the base."""
    h = hashlib.sha256(_base_key().encode())
    for f in _files(root, IMAGE_INPUTS):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def kernelkeeper_image_name(root: Path = REPO_ROOT) -> str:
    return f"{L.IMAGE_DOMAIN}/kernelkeeper:{__version__}-{source_key(root)[:12]}"


def ensure_kernelkeeper_image(root: Path = REPO_ROOT) -> tuple[str, Path]:
    """The image of this source tree as an OCI archive, built only when the sources changed."""
    name = kernelkeeper_image_name(root)
    archive = images_dir() / f"kernelkeeper-{name.rsplit(':', 1)[1]}.tar"
    if archive.is_file():
        return name, archive
    base = ensure_base_image()
    start = time.monotonic()
    build_dockerfile(root, name, archive, build_args={"BASE_IMAGE": base},
                     log=images_dir() / "kernelkeeper-build.log")
    for old in images_dir().glob("kernelkeeper-*.tar"):
        if old != archive:
            old.unlink(missing_ok=True)
    _log(f"kernelkeeper image {name} ready in {time.monotonic() - start:.1f}s")
    return name, archive


def build_dockerfile(context: Path, name: str, archive: Path, *,
                     build_args: dict[str, str] | None = None, log: Path | None = None) -> Path:
    """`buildah bud` a Dockerfile in `context` and write the image as an OCI archive."""
    need_tools()
    images_dir().mkdir(parents=True, exist_ok=True)
    log = log or images_dir() / f"build-{archive.stem}.log"
    log.write_text("")
    mounts = []
    # RUN steps reach the same package index as this machine's pip, with its settings and CAs.
    for path in ("/etc/pip.conf", "/etc/ssl/certs"):
        if os.path.exists(path):
            mounts += ["-v", f"{path}:{path}:ro"]
    args = [a for k, v in (build_args or {}).items() for a in ("--build-arg", f"{k}={v}")]
    _run(f"{name}: buildah bud {context.name}/Dockerfile",
         ["buildah", *_buildah_flags(), "bud", "--isolation", "chroot", "--network", "host",
          "--layers", *mounts, *args, "-t", name, "."], log, cwd=context)
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _run(f"{name}: write the OCI archive",
         ["buildah", *_buildah_flags(), "push", "-q", name, f"oci-archive:{partial}:{name}"], log)
    partial.rename(archive)
    return archive


# ---------------------------------------------------------------------- one-binary images

def _tar_layer(files: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, src in files.items():
            info = tar.gettarinfo(str(src), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755
            with src.open("rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


def write_oci_archive(path: Path, name: str, files: dict[str, Path], entrypoint: list[str],
                      *, user: str = "") -> None:
    """A one-layer image: what `ctr images import` reads, named by its ref annotations."""
    layer = _tar_layer(files)
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config_b = json.dumps(config, sort_keys=True).encode()
    blobs = {"config": config_b, "layer": layer_gz}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config_b).hexdigest(),
                   "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer_gz).hexdigest(),
                    "size": len(layer_gz)}],
    }
    manifest_b = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(manifest_b).hexdigest(),
            "size": len(manifest_b),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name},
        }],
    }
    partial = path.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        def add(arcname: str, data: bytes) -> None:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for data in (*blobs.values(), manifest_b):
            add("blobs/sha256/" + hashlib.sha256(data).hexdigest(), data)
    partial.rename(path)


def pause_image() -> tuple[str, Path]:
    name = f"{L.IMAGE_DOMAIN}/pause:{versions.KUBERNETES}"
    archive = images_dir() / f"pause-{versions.KUBERNETES}.tar"
    if not archive.is_file():
        images_dir().mkdir(parents=True, exist_ok=True)
        write_oci_archive(archive, name, {"pause": build.node_binaries()["pause"]}, ["/pause"],
                          user="65535:65535")
    return name, archive


def coredns_image() -> tuple[str, Path]:
    name = f"{L.IMAGE_DOMAIN}/coredns:{versions.COREDNS}"
    archive = images_dir() / f"coredns-{versions.COREDNS}.tar"
    if not archive.is_file():
        images_dir().mkdir(parents=True, exist_ok=True)
        write_oci_archive(archive, name, {"coredns": build.node_binaries()["coredns"]},
                          ["/coredns"])
    return name, archive


def import_archive(ctr: Path, socket: Path, archive: Path, log: Path) -> None:
    _run(f"import {archive.name} into containerd",
         [str(ctr), "--address", str(socket), "--namespace", "k8s.io", "images", "import",
          "--local", "--snapshotter", "overlayfs", str(archive)], log)
