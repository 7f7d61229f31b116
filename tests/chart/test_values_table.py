"""The README's values table is what charts/values_table.py generates from the schema and
values.yaml, and the two agree: every value has a type and a description, and every default
in values.yaml is a value the schema knows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def _values_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("values_table", REPO / "charts" / "values_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of values.yaml, down to the first value that is not a non-empty mapping."""
    keys: set[str] = set()
    for name, value in values.items():
        if isinstance(value, dict) and value:
            keys |= {f"{prefix}{name}"} | _keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_readme_table_is_generated_from_the_schema() -> None:
    vt = _values_table()
    assert vt.readme_table((REPO / "README.md").read_text()) == vt.table(), (
        "README.md's values table is stale: run `python charts/values_table.py --write`")


def test_schema_and_values_yaml_agree() -> None:
    vt = _values_table()
    schema = json.loads((vt.CHART / "values.schema.json").read_text())
    values = yaml.safe_load((vt.CHART / "values.yaml").read_text())
    documented = dict(vt.leaves(schema))
    for key, node in documented.items():
        assert node.get("description"), f"{key} has no description in values.schema.json"
        vt.default(values, key)  # KeyError: the schema names a value values.yaml lacks
    # A leaf of values.yaml is either documented or inside a documented free-form value.
    for key in _keys(values):
        assert any(key == d or key.startswith(f"{d}.") or d.startswith(f"{key}.")
                   for d in documented), f"values.yaml's {key} is not in the schema"
