"""Build the control-plane binaries from source through the Go module proxy, once per version.

Kubernetes cannot be `go install`ed (its go.mod has replace directives), so we build it from a
throw-away wrapper module that requires k8s.io/kubernetes and replaces every staging module with
its published v0.X.Y twin. The staging list is read from the published go.mod, never hard-coded.
etcd and helm get wrapper modules of their own so that minimal version selection cannot move
the apiserver's dependencies.

Outputs live in ``$KERNELKEEPER_CACHE`` (default ``~/.cache/kernelkeeper``), keyed by version:
``k8s-v1.36.3/``, ``etcd-v3.6.16/``, ``helm-v3.22.0/``. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from kernelkeeper.local import versions


class BuildError(RuntimeError):
    """A build step failed; the message says what to do next."""


def cache_root() -> Path:
    env = os.environ.get("KERNELKEEPER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kernelkeeper"


def k8s_dir() -> Path:
    return cache_root() / f"k8s-v{versions.KUBERNETES}"


def etcd_dir() -> Path:
    return cache_root() / f"etcd-v{versions.ETCD}"


def helm_dir() -> Path:
    return cache_root() / f"helm-v{versions.HELM}"


def binary(name: str) -> Path:
    """Path of a built binary (which may not exist yet)."""
    if name == "etcd":
        return etcd_dir() / "etcd"
    if name == "helm":
        return helm_dir() / "helm"
    return k8s_dir() / name


def _log(msg: str) -> None:
    print(f"[kernelkeeper build] {msg}", file=sys.stderr, flush=True)


def check_go() -> str:
    """Return the `go` executable, or raise one clear error naming what to install."""
    go = shutil.which("go")
    need = "{}.{}".format(*versions.GO_MIN)
    if not go:
        raise BuildError(
            f"`go` was not found on PATH. Install Go >= {need} (https://go.dev/dl/) with access to "
            "the Go module proxy; it is needed once, to build the control plane."
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if not match or (int(match[1]), int(match[2])) < versions.GO_MIN:
        raise BuildError(
            f"`go` reports {out.stdout.strip() or out.stderr.strip()!r}; Go >= {need} is "
            "required to build the control plane. Install a newer Go."
        )
    return go


class _Step:
    """Runs commands for one build, logging each to a file and timing it."""

    def __init__(self, go: str, workdir: Path, log_file: Path) -> None:
        self.go = go
        self.workdir = workdir
        self.log_file = log_file
        self.env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")

    def run(self, title: str, args: Sequence[str]) -> str:
        _log(f"{title} ...")
        start = time.monotonic()
        with self.log_file.open("a") as log:
            log.write(f"\n$ {' '.join(args)}\n")
            log.flush()
            proc = subprocess.run(
                args, cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                stderr=log, text=True, check=False,
            )
            log.write(proc.stdout)
        if proc.returncode != 0:
            tail = "".join(self.log_file.read_text().splitlines(keepends=True)[-30:])
            raise BuildError(
                f"{title} failed (exit {proc.returncode}). Last lines of the build log:\n{tail}\n"
                f"Full log: {self.log_file}"
            )
        _log(f"{title}: done in {time.monotonic() - start:.1f}s")
        return proc.stdout


def _version_ldflags(version: str, minor: str) -> str:
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X '{pkg}.gitVersion={version}'",
            f"-X '{pkg}.gitMajor=1'",
            f"-X '{pkg}.gitMinor={minor}'",
            f"-X '{pkg}.gitTreeState=clean'",
        ]
    return " ".join(flags)


def staging_modules(gomod_text: str) -> list[str]:
    """Modules that k8s.io/kubernetes replaces with ./staging paths."""
    return re.findall(r"^\s*(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/", gomod_text, re.M)


def _build_kubernetes(go: str) -> None:
    out = k8s_dir()
    version = f"v{versions.KUBERNETES}"
    with tempfile.TemporaryDirectory(prefix="kk-k8s-build-") as tmp:
        work = Path(tmp)
        log_file = cache_root() / f"build-k8s-{version}.log"
        log_file.write_text("")
        step = _Step(go, work, log_file)
        step.run("k8s: init wrapper module", [go, "mod", "init", "example.invalid/k8sbuild"])
        info = json.loads(
            step.run(
                f"k8s: download k8s.io/kubernetes@{version}",
                [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
            )
        )
        gomod = Path(info["GoMod"]).read_text()
        godebug = re.search(r"^godebug default=(\S+)$", gomod, re.M)
        if godebug:
            step.run("k8s: mirror godebug default", [go, "mod", "edit", f"-godebug=default={godebug[1]}"])
        mods = staging_modules(gomod)
        if not mods:
            raise BuildError(f"no staging replace lines found in the go.mod of {version}")
        replaces = [f"-replace={m}={m}@{versions.KUBERNETES_STAGING}" for m in mods]
        # Replaces must exist before k8s.io/kubernetes is resolved, or v0.0.0 is unresolvable.
        step.run(f"k8s: replace {len(mods)} staging modules", [go, "mod", "edit", *replaces])
        step.run("k8s: require k8s.io/kubernetes", [go, "mod", "edit", f"-require=k8s.io/kubernetes@{version}"])
        imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{b}"' for b in versions.K8S_BINARIES)
        (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
        step.run("k8s: resolve modules (go mod tidy)", [go, "mod", "tidy"])
        staging_out = out.with_name(out.name + ".partial")
        shutil.rmtree(staging_out, ignore_errors=True)
        staging_out.mkdir(parents=True)
        minor = versions.KUBERNETES.split(".")[1]
        step.run(
            "k8s: compile " + ", ".join(versions.K8S_BINARIES) + " (the long step: about 5 min on 2 cores)",
            [
                go, "build", "-trimpath", "-tags=selinux,notest",
                "-ldflags", _version_ldflags(version, minor),
                "-o", str(staging_out) + "/",
                *[f"k8s.io/kubernetes/cmd/{b}" for b in versions.K8S_BINARIES],
            ],
        )
        shutil.rmtree(out, ignore_errors=True)
        staging_out.rename(out)


def _build_simple(go: str, name: str, module: str, version: str, package: str, out: Path,
                  ldflags: str = "-s -w") -> None:
    _build_module(go, name, module, version, {name: package}, out, ldflags=ldflags)


def _build_module(go: str, name: str, module: str, version: str, packages: dict[str, str],
                  out: Path, *, ldflags: str = "-s -w", tags: str = "") -> None:
    """Build `packages` (output name -> Go package) of one module from a throw-away wrapper."""
    with tempfile.TemporaryDirectory(prefix=f"kk-{name}-build-") as tmp:
        work = Path(tmp)
        log_file = cache_root() / f"build-{name}-v{version}.log"
        log_file.write_text("")
        step = _Step(go, work, log_file)
        step.run(f"{name}: init wrapper module", [go, "mod", "init", f"example.invalid/{name}build"])
        step.run(f"{name}: fetch {module}@v{version}", [go, "get", f"{module}@v{version}"])
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for binary_name, package in packages.items():
            step.run(
                f"{name}: compile {binary_name}",
                [go, "build", "-trimpath", *([f"-tags={tags}"] if tags else []),
                 "-ldflags", ldflags, "-o", str(partial / binary_name), package],
            )
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)


def containerd_dir() -> Path:
    return cache_root() / f"containerd-v{versions.CONTAINERD}"


def cni_dir() -> Path:
    return cache_root() / f"cni-plugins-v{versions.CNI_PLUGINS}"


def coredns_dir() -> Path:
    return cache_root() / f"coredns-v{versions.COREDNS}"


def pause_dir() -> Path:
    return cache_root() / f"pause-k8s-v{versions.KUBERNETES}"


CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
CNI_BINARIES = ("bridge", "host-local", "loopback", "portmap")


def node_binaries() -> dict[str, Path]:
    """Where the real node's binaries live once built (they may not exist yet)."""
    out = {b: containerd_dir() / b for b in CONTAINERD_BINARIES}
    out.update({f"cni/{b}": cni_dir() / b for b in CNI_BINARIES})
    out["coredns"] = coredns_dir() / "coredns"
    out["pause"] = pause_dir() / "pause"
    return out


def _build_containerd(go: str) -> None:
    mod = "github.com/containerd/containerd/v2"
    version = f"v{versions.CONTAINERD}"
    ld = f"-s -w -X {mod}/version.Version={version} -X {mod}/version.Package={mod}"
    _build_module(go, "containerd", mod, versions.CONTAINERD,
                  {b: f"{mod}/cmd/{b}" for b in CONTAINERD_BINARIES}, containerd_dir(),
                  ldflags=ld, tags="no_btrfs,no_devmapper,no_zfs")


def _build_cni(go: str) -> None:
    mod = "github.com/containernetworking/plugins"
    where = {"bridge": "main", "loopback": "main", "host-local": "ipam", "portmap": "meta"}
    _build_module(go, "cni-plugins", mod, versions.CNI_PLUGINS,
                  {b: f"{mod}/plugins/{where[b]}/{b}" for b in CNI_BINARIES}, cni_dir())


def _build_coredns(go: str) -> None:
    mod = "github.com/coredns/coredns"
    _build_module(go, "coredns", mod, versions.COREDNS, {"coredns": mod}, coredns_dir(),
                  ldflags=f"-s -w -X {mod}/coremain.GitCommit=v{versions.COREDNS}")


def _build_pause(go: str) -> None:
    """The sandbox image's one binary: a small C program in the Kubernetes module's source."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BuildError("a C compiler (gcc) is needed to build the pause binary: "
                         "apt-get install -y gcc libc6-dev")
    env = dict(os.environ, GOFLAGS="-mod=mod")
    info = subprocess.run([go, "mod", "download", "-json", f"k8s.io/kubernetes@v{versions.KUBERNETES}"],
                          capture_output=True, text=True, env=env, check=False, cwd=tempfile.gettempdir())
    if info.returncode != 0:
        raise BuildError(f"downloading k8s.io/kubernetes for pause.c failed: {info.stderr[-500:]}")
    source = Path(json.loads(info.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    partial = pause_dir().with_name(pause_dir().name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _log("pause: compile pause.c (gcc -static) ...")
    out = subprocess.run([cc, "-Os", "-Wall", "-Werror", "-static",
                          f"-DVERSION=v{versions.KUBERNETES}", "-o", str(partial / "pause"),
                          str(source)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BuildError(f"compiling pause.c failed: {out.stderr[-1000:]}")
    subprocess.run(["strip", str(partial / "pause")], check=False)
    shutil.rmtree(pause_dir(), ignore_errors=True)
    partial.rename(pause_dir())


def ensure_node_binaries() -> dict[str, Path]:
    """Build the real node's runtime pieces that are missing; cached builds cost nothing."""
    paths = node_binaries()
    missing = sorted({str(p.parent) for p in paths.values() if not p.is_file()})
    if not missing:
        return paths
    cache_root().mkdir(parents=True, exist_ok=True)
    go = check_go()
    total = time.monotonic()
    _log("building the real node's runtime (containerd, CNI plugins, CoreDNS, pause) "
         "into the cache (first time only)")
    for directory, build_it in ((containerd_dir(), _build_containerd), (cni_dir(), _build_cni),
                                (coredns_dir(), _build_coredns), (pause_dir(), _build_pause)):
        if str(directory) in missing:
            build_it(go)
    _log(f"node runtime built in {time.monotonic() - total:.1f}s")
    return paths


def ensure_binaries(*, helm: bool = False, node: bool = False) -> dict[str, Path]:
    """Build what is missing; return the path of every binary. Cached builds cost nothing."""
    wanted = ["etcd", *versions.K8S_BINARIES] + (["helm"] if helm else [])
    missing = [b for b in wanted if not binary(b).is_file()]
    if missing:
        cache_root().mkdir(parents=True, exist_ok=True)
        go = check_go()
        total = time.monotonic()
        _log(f"building {', '.join(missing)} into {cache_root()} (first time only)")
        if "etcd" in missing:
            _build_simple(go, "etcd", "go.etcd.io/etcd/server/v3", versions.ETCD,
                          "go.etcd.io/etcd/server/v3", etcd_dir())
        if any(b in missing for b in versions.K8S_BINARIES):
            _build_kubernetes(go)
        if "helm" in missing:
            _build_simple(go, "helm", "helm.sh/helm/v3", versions.HELM,
                          "helm.sh/helm/v3/cmd/helm", helm_dir(),
                          ldflags=f"-s -w -X helm.sh/helm/v3/internal/version.version=v{versions.HELM}")
        _log(f"all binaries built in {time.monotonic() - total:.1f}s")
    else:
        _log(f"using cached binaries in {cache_root()}")
    result = {b: binary(b) for b in wanted}
    if node:
        result.update(ensure_node_binaries())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kernelkeeper local build", description=__doc__)
    parser.add_argument("--helm", action="store_true", help="also build helm")
    parser.add_argument("--node", action="store_true",
                        help="also build the real node (containerd, CNI plugins, CoreDNS, pause)")
    args = parser.parse_args(argv)
    try:
        paths = ensure_binaries(helm=args.helm, node=args.node)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
