"""The OTLP path's bridge: finding a vmagent that ingests OTLP, .ci/install-vmagent, and the
committed relabelling (deploy/vmagent/relabel.yml) as vmagent itself reads it."""

from __future__ import annotations

import os
import subprocess

import pytest

from . import servers
from .servers import ROOT, run


def _fake_vmagent(path, help_text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{help_text}'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_default(monkeypatch, tmp_path):
    """Nothing at the known install path."""
    monkeypatch.setattr(servers, "VMAGENT_PATH", str(tmp_path / "absent" / "vmagent"))
    monkeypatch.delenv(servers.VMAGENT_ENV, raising=False)


def test_the_variable_wins_and_must_name_an_executable(no_default, monkeypatch, tmp_path):
    fake = _fake_vmagent(tmp_path / "bin" / "vmagent", servers.VMAGENT_OTLP_FLAG)
    assert servers.find_vmagent({servers.VMAGENT_ENV: str(fake)}) == str(fake)
    fake.chmod(0o644)
    assert servers.find_vmagent({servers.VMAGENT_ENV: str(fake)}) is None
    monkeypatch.setattr(servers, "VMAGENT_PATH", str(fake))
    assert servers.find_vmagent({}) is None
    fake.chmod(0o755)
    assert servers.find_vmagent({}) == str(fake)  # the known path when the variable is unset


def test_missing_vmagent_skips_locally_and_fails_in_ci(no_default, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-vmagent"):
        servers.require_vmagent()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no vmagent"):
        servers.require_vmagent()


def test_a_vmagent_without_otlp_ingestion_is_refused(no_default, monkeypatch, tmp_path):
    old = _fake_vmagent(tmp_path / "vmagent", "-promscrape.config string")  # bookworm's 1.79
    monkeypatch.setenv(servers.VMAGENT_ENV, str(old))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no OTLP ingestion"):
        servers.require_vmagent()
    new = _fake_vmagent(tmp_path / "new" / "vmagent", f"  {servers.VMAGENT_OTLP_FLAG}")
    monkeypatch.setenv(servers.VMAGENT_ENV, str(new))
    assert servers.require_vmagent() == str(new)


def test_install_keeps_a_vmagent_that_ingests_otlp(tmp_path):
    """Idempotent: nothing is downloaded when the cache dir has a vmagent with OTLP."""
    tools = tmp_path / "tools"
    _fake_vmagent(tools / "victoria-metrics/usr/bin/vmagent", servers.VMAGENT_OTLP_FLAG)
    result = subprocess.run(
        [str(ROOT / ".ci/install-vmagent")],
        env={**os.environ, "OTEL_RESILIENCE_TOOLS": str(tools)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "vmagent with OTLP ingestion" in result.stdout
    assert not (tools / "apt-trixie").exists()  # no apt state: no download


def test_vmagent_accepts_the_committed_relabelling(tmp_path):
    vmagent = servers.require_vmagent()
    result = run(
        vmagent,
        "-dryRun",
        f"-remoteWrite.relabelConfig={servers.VMAGENT_RELABEL}",
        "-remoteWrite.url=http://127.0.0.1:1/api/v1/write",
        f"-remoteWrite.tmpDataPath={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
