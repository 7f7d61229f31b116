"""The committed CRD YAML and the Python model must never drift apart."""

import yaml

from kernelkeeper.crds import CRD_FILE, crd_manifest
from kernelkeeper.crds import model as m
from kernelkeeper.crds.__main__ import render


def test_committed_yaml_matches_model():
    assert yaml.safe_load(CRD_FILE.read_text()) == crd_manifest()
    assert CRD_FILE.read_text() == render(), "run `python -m kernelkeeper.crds` and commit"


def test_names_used_by_the_schema_come_from_the_model():
    crd = crd_manifest()
    assert crd["metadata"]["name"] == f"{m.PLURAL}.{m.GROUP}"
    version = crd["spec"]["versions"][0]
    assert version["name"] == m.VERSION
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["connection"]["properties"]) >= {f"{c}Port" for c in m.CHANNELS}
    assert "status" in version["subresources"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"User", "Kernel-Spec", "Ready", "Reason", "Restarts", "Last-Activity", "Age"} <= columns


def test_kernel_id_is_a_lower_case_uuid():
    assert m.is_kernel_id(m.new_kernel_id())
    assert not m.is_kernel_id("not-a-uuid")
    assert not m.is_kernel_id(m.new_kernel_id().upper())


def test_set_condition_moves_transition_time_only_on_flips():
    conds = m.set_condition(None, status=False, reason="Starting", message="m", generation=1, now="t1")
    assert conds[0]["lastTransitionTime"] == "t1"
    same = m.set_condition(conds, status=False, reason="Other", message="m2", generation=2, now="t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert same[0]["reason"] == "Other" and same[0]["observedGeneration"] == 2
    flipped = m.set_condition(same, status=True, reason="KernelRunning", message="", generation=2, now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "True"
    assert m.is_ready({"status": {"conditions": flipped}})


def test_connection_round_trip():
    status = {"connection": m.connection_status("127.1.2.3", m.DEFAULT_PORTS)}
    info = m.connection_info(status, b"k3y")
    assert info["ip"] == "127.1.2.3" and info["key"] == "k3y"
    assert info["shell_port"] == m.DEFAULT_PORTS["shell"]
    assert info["signature_scheme"] == "hmac-sha256"


def test_label_value_is_valid():
    assert m.label_value("alice@example.com") == "alice_example.com"
    assert len(m.label_value("x" * 100)) == 63


def test_format_time_writes_rfc3339_utc_in_both_kubernetes_precisions():
    import datetime as dt

    paris = dt.timezone(dt.timedelta(hours=1))
    t = dt.datetime(2026, 1, 2, 4, 5, 6, 7, tzinfo=paris)
    assert m.format_time(t) == "2026-01-02T03:05:06Z"
    assert m.format_time(t, micro=True) == "2026-01-02T03:05:06.000007Z"
    # As jupyter_server parses last_activity: one miss fails its whole kernel list.
    dt.datetime.strptime(m.format_time(micro=True), "%Y-%m-%dT%H:%M:%S.%fZ")
    assert m.parse_time(m.format_time(t, micro=True)) == t


def test_parse_time_is_none_for_what_is_not_a_time_and_utc_when_naive():
    import datetime as dt

    assert m.parse_time("2026-01-02T03:05:06Z") == dt.datetime(2026, 1, 2, 3, 5, 6, tzinfo=dt.UTC)
    assert m.parse_time("2026-01-02T03:05:06") == dt.datetime(2026, 1, 2, 3, 5, 6, tzinfo=dt.UTC)
    for junk in (None, "", "yesterday", 1767323106):
        assert m.parse_time(junk) is None
