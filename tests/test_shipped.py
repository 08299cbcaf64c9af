"""Shipped policies (tamiyo_models.controllers.shipped): the package's best policies as files with model cards,
named `shipped:NAME` wherever a controller or a policy is. The first night's use of them is tested with the
three nights of tests/test_nightly.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamiyo_models.cli import main
from tamiyo_models.controllers import reference_controller
from tamiyo_models.controllers import shipped as shipped_module
from tamiyo_models.controllers.saved_policy import load_policy
from tamiyo_models.controllers.shipped import ShippedPolicyError, shipped_policies, shipped_policy

from shipped_fixtures import SECTIONS, card_text, shipped_folder

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "card, message",
    [
        (None, "needs its model card tiny.md"),
        ("# tiny\n" + SECTIONS, "opens with a TOML block"),
        (card_text("tiny").replace('spec = "smoke"\n', ""), "card keys spec missing"),
        (card_text("tiny").replace('spec = "smoke"', 'spec = "smoke"\nowner = "x"'), "unknown card key(s) owner"),
        (card_text("other"), "name = 'other', but the card is for tiny"),
        (card_text("tiny", body=SECTIONS.replace("## Where it stops", "## Limits")), "lacks the section(s) '## Where it stops'"),
        (card_text("tiny").replace('summary = "a test policy"', "summary = "), "the card's TOML block"),
    ],
    ids=["no card", "no toml", "missing key", "unknown key", "name mismatch", "missing section", "bad toml"],
)
def test_a_bad_card_is_refused_naming_the_file_and_what_is_wrong(tmp_path, card, message):
    folder = shipped_folder(tmp_path / "shipped")
    if card is None:
        (folder / "tiny.md").unlink()
    else:
        (folder / "tiny.md").write_text(card, encoding="utf-8")
    with pytest.raises(ShippedPolicyError) as error:
        shipped_policies(folder=folder)
    assert message in str(error.value) and str(folder) in str(error.value)


def test_a_shipped_policy_is_a_controller_a_policy_and_a_listed_card(tmp_path, monkeypatch, capsys):
    folder = shipped_folder(tmp_path / "shipped")
    shipped_folder(folder, name="fm", spec="arena", seed=1)
    monkeypatch.setattr(shipped_module, "SHIPPED_DIR", folder)
    assert [p.name for p in shipped_policies()] == ["fm", "tiny"] and [p.name for p in shipped_policies("smoke")] == ["tiny"]

    config = reference_controller("shipped:tiny")
    assert config.kind == "policy" and config.label == "shipped:tiny" and config.policy == f"file:{folder / 'tiny.pt'}"
    controller = load_policy("shipped:tiny")
    assert controller.name == "shipped:tiny" and controller.metadata["policy_file"] == str((folder / "tiny.pt").resolve())
    with pytest.raises(ShippedPolicyError, match=r"no shipped policy 'absent'; shipped: fm, tiny"):
        shipped_policy("shipped:absent")
    with pytest.raises(ValueError, match="no shipped policy 'absent'"):
        reference_controller("shipped:absent")
    with pytest.raises(ShippedPolicyError, match="letters, digits"):
        shipped_policy("shipped:../tiny")  # a name is never a path

    assert main(["shipped"]) == 0
    listed = capsys.readouterr().out
    assert "shipped:tiny" in listed and "spec smoke" in listed and "a test policy" in listed
    assert main(["shipped", "tiny"]) == 0 and capsys.readouterr().out.startswith('+++\nname = "tiny"')
    assert main(["shipped", "absent"]) == 2 and "no shipped policy 'absent'" in capsys.readouterr().err
    assert main(["evaluate", "shipped:absent", "--out", str(tmp_path / "ev")]) == 2
    assert "no shipped policy 'absent'" in capsys.readouterr().err


def test_every_policy_shipped_in_the_package_loads_and_its_card_names_its_study():
    for policy in shipped_policies():
        controller = load_policy(policy.label)
        assert controller.name == policy.label
        assert (REPO / policy.study).exists(), f"{policy.card}: study {policy.study} is not in the repository"
        assert policy.study in policy.card.read_text(encoding="utf-8").split("+++", 2)[2], f"{policy.card}: the card's text must cite its study"
