"""The project's Dagster instance (dagster.yaml at the repository root) as Dagster itself reads it: the UI's
first-run "Join the Dagster community" dialog is off, and so is telemetry.

The instance is built from a copy of the file in a temporary folder (its storage paths are relative to the
working directory, so nothing is written under the repository)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _instance(folder: Path, text: str, monkeypatch):
    from dagster import DagsterInstance

    folder.mkdir()
    (folder / "dagster.yaml").write_text(text)
    monkeypatch.chdir(folder)
    return DagsterInstance.from_config(str(folder))


def test_project_instance_skips_the_first_run_dialog(tmp_path, monkeypatch):
    text = (ROOT / "dagster.yaml").read_text()
    with _instance(tmp_path / "project", text, monkeypatch) as instance:
        assert not instance.is_ephemeral
        assert instance.nux_enabled is False  # the webserver's shouldShowNux is `nux_enabled and not seen`
        assert instance.get_settings("telemetry") == {"enabled": False}

    # Without its `nux` section the same instance would show the dialog: the setting is what turns it off.
    config = yaml.safe_load(text)
    del config["nux"]
    with _instance(tmp_path / "without-nux", yaml.safe_dump(config), monkeypatch) as instance:
        assert instance.nux_enabled is True
