"""tests/lab runs jupyter_server (tests/fixtures/jupyter.py) in front of the HA fleet: gateway
replicas behind nginx (tests/ha/conftest.py), kernels in Pods of the real node. The fleet's
fixtures are conftest-local to tests/ha, so they are imported here by name."""

from tests.gateway.conftest import kk_namespace  # noqa: F401 - the fleet's namespace
from tests.ha.conftest import fleet  # noqa: F401
