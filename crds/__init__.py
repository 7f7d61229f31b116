"""The KernelSession API: CRD YAML plus the Python model both operator and gateway use."""

from pathlib import Path

from kernelkeeper.crds.model import *  # noqa: F403
from kernelkeeper.crds.model import crd_manifest

CRD_FILE = Path(__file__).with_name("kernelsession.yaml")

__all__ = ["CRD_FILE", "crd_manifest"]
