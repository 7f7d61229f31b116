"""The build step fails with one clear error when Go is missing or too old."""

import os
import stat

import pytest

from kernelkeeper.local import build


def test_missing_go_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(build.BuildError, match=r"`go` was not found.*Install Go >= 1\.24"):
        build.check_go()


def test_old_go_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go1.19.3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(build.BuildError, match=r"go1\.19\.3.*Go >= 1\.24 is required"):
        build.check_go()


def test_staging_modules_are_read_from_go_mod():
    gomod = """
replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/other/thing => github.com/fork/thing v1.0.0
)
"""
    assert build.staging_modules(gomod) == ["k8s.io/api", "k8s.io/client-go"]


def test_cache_is_keyed_by_version_outside_the_repo(monkeypatch, tmp_path):
    monkeypatch.setenv("KERNELKEEPER_CACHE", str(tmp_path))
    assert build.binary("kube-apiserver").parent.name.startswith("k8s-v1.36")
    assert build.binary("etcd").parent.name.startswith("etcd-v3.6")


def test_helm_is_built_with_its_version():
    import subprocess

    from kernelkeeper.local import versions

    helm = build.binary("helm")
    if not helm.is_file():
        pytest.skip("helm is built by `make test` (kernelkeeper local build --helm)")
    out = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().startswith(f"v{versions.HELM}")
