from tests.gateway.conftest import kk_namespace  # noqa: F401 - same kernels as the gateway tests
