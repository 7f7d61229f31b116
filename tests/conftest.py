"""Shared fixtures: one real control plane for the whole run, plus kernelkeeper's processes.

Component fixtures live in tests/fixtures/ (one module per component) and are registered here.
"""

pytest_plugins = [
    "tests.fixtures.cluster",
    "tests.fixtures.node",
    "tests.fixtures.operator",
    "tests.fixtures.gateway",
    "tests.fixtures.jupyter",
    "tests.fixtures.chart",
    "tests.fixtures.fuzz",
]
