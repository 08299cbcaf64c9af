"""One source of defaults (issue 36): `tamiyo train`, the Dagster policy assets' configs and the library's config
dataclasses must agree on every default they share. The library is the source of truth; the assets may depart
from it only where assets.policies.NIGHTLY_DEFAULTS names the departure (and says why).

Real objects only: the parser from `tamiyo_models.cli.build_parser()` (`tamiyo train PHASE`, each phase its own flags), the Dagster Config classes instantiated,
the library dataclasses instantiated. A flag or asset field whose default is empty (None) means "the library's
own value"; for those the test reads what the entry point actually builds (its flags -> config function), so an
empty default that resolved to anything else would fail here too.
"""

from __future__ import annotations

import pytest

from assets.policies import (
    NIGHTLY_DEFAULTS,
    Phase2Config,
    Phase3Config,
    Phase4Config,
    PolicyTrainingConfig,
    _offline_run_config,
    _online_run_config,
    _run_config,
)
from tamiyo_models.cli import build_parser
from tamiyo_models.offline_rl.workflow import OfflineRunConfig
from tamiyo_models.online_rl.distil import DistilConfig
from tamiyo_models.online_rl.workflow import OnlineRunConfig
from tamiyo_models.policies.cli import offline_run_config, online_run_config, policy_run_config
from tamiyo_models.policies.imitation import ImitationConfig
from tamiyo_models.policies.reward_weighted import RewardWeightingConfig
from tamiyo_models.policies.workflow import IMITATION_FEATURE_SET, PolicyRunConfig

# The asset defaults that differ from the library on purpose (each explained in assets/policies.py). A new one must
# be added both there and here.
EXPECTED_NIGHTLY = {
    "phase1": {"labels", "controllers"},
    "phase2": {"controllers", "epochs"},
    "phase3": {"updates", "alpha"},
}


def _train_args(phase, *flags):
    """The `train PHASE` subcommand's defaults, as the real parser gives them (the required flags given)."""
    required = {"phase1": ["--warehouse", "w.duckdb"], "phase2": ["--warehouse", "w.duckdb", "--parent", "p.pt"],
                "phase3": ["--warehouse", "w.duckdb"], "phase4": []}[phase]  # fmt: skip
    return build_parser().parse_args(["train", phase, *required, *flags])


CLI = {phase: _train_args(phase) for phase in ("phase1", "phase2", "phase3", "phase4")}
CLI_BUILT = {
    "phase1": policy_run_config(CLI["phase1"]),
    "phase2": policy_run_config(CLI["phase2"]),
    "phase3": offline_run_config(CLI["phase3"]),
    "phase4": online_run_config(CLI["phase4"]),
    "phase4-vine": online_run_config(_train_args("phase4", "--algorithm", "vine")),
}
ASSET = {"phase1": PolicyTrainingConfig(), "phase2": Phase2Config(), "phase3": Phase3Config(), "phase4": Phase4Config()}
ASSET_BUILT = {
    "phase4": _online_run_config(Phase4Config(), "unused.duckdb"),
    "phase4-vine": _online_run_config(Phase4Config(algorithm="vine"), "unused.duckdb"),
    "phase3": _offline_run_config(Phase3Config(), "cql", None),
    "phase1": _run_config(PolicyTrainingConfig(), "phase1"),
}
IMITATION, POLICY_RUN, WEIGHTING = ImitationConfig(), PolicyRunConfig(), RewardWeightingConfig()
OFFLINE, ONLINE, DISTIL = OfflineRunConfig(), OnlineRunConfig(), DistilConfig()

# (phase, field) -> (CLI default, asset default, library default): every field all three expose.
FIELDS = {
    # Phases 1 and 2 share the parser's flags; the asset's Phase2Config extends PolicyTrainingConfig.
    **{(phase, name): row for phase in ("phase1", "phase2") for name, row in {
        # ImitationConfig's own feature_set is "base"; both entry points name IMITATION_FEATURE_SET (policies/workflow.py)
        "feature_set": (CLI_BUILT[phase].imitation.feature_set, ASSET[phase].feature_set, IMITATION_FEATURE_SET),
        "labels": (CLI[phase].labels, ASSET[phase].labels, POLICY_RUN.labels),
        "controllers": (CLI_BUILT[phase].controllers, tuple(ASSET[phase].controllers), POLICY_RUN.controllers),
        "epochs": (CLI[phase].epochs, ASSET[phase].epochs, IMITATION.epochs),
        "batch_size": (CLI[phase].batch_size, ASSET[phase].batch_size, IMITATION.batch_size),
        "learning_rate": (CLI[phase].lr, ASSET[phase].learning_rate, IMITATION.learning_rate),
        "beta": (CLI[phase].beta, ASSET[phase].beta, IMITATION.beta),
        "val_fraction": (CLI[phase].val_fraction, ASSET[phase].val_fraction, POLICY_RUN.val_fraction),
        "group_by": (CLI[phase].group_by, ASSET[phase].group_by, POLICY_RUN.group_by),
        "seed": (CLI[phase].seed, ASSET[phase].seed, IMITATION.seed),
        "split_seed": (CLI[phase].seed, ASSET[phase].seed, POLICY_RUN.split_seed),
    }.items()},
    ("phase2", "threshold"): (CLI["phase2"].threshold, ASSET["phase2"].threshold, WEIGHTING.threshold),
    # Phase 3
    ("phase3", "feature_set"): (CLI_BUILT["phase3"].feature_set, ASSET["phase3"].feature_set, OFFLINE.feature_set),
    ("phase3", "regimes"): (CLI_BUILT["phase3"].regimes, tuple(ASSET["phase3"].regimes), OFFLINE.regimes),
    **{("phase3", f"updates ({learner})"): (CLI["phase3"].updates, ASSET["phase3"].updates, getattr(OFFLINE, learner).updates)
       for learner in ("cql", "iql", "bcq")},
    ("phase3", "alpha"): (CLI["phase3"].alpha, ASSET["phase3"].alpha, OFFLINE.cql.alpha),
    ("phase3", "tau"): (CLI["phase3"].tau, ASSET["phase3"].tau, OFFLINE.iql.tau),
    ("phase3", "awr_beta"): (CLI["phase3"].awr_beta, ASSET["phase3"].awr_beta, OFFLINE.iql.beta),
    ("phase3", "bcq_threshold"): (CLI["phase3"].bcq_threshold, ASSET["phase3"].bcq_threshold, OFFLINE.bcq.threshold),
    ("phase3", "held_out"): (CLI["phase3"].held_out, ASSET["phase3"].held_out, OFFLINE.held_out),
    ("phase3", "seed"): (CLI["phase3"].seed, ASSET["phase3"].seed, OFFLINE.split_seed),
    ("phase3", "reward_scale"): (CLI["phase3"].reward_scale, ASSET_BUILT["phase3"].cql.reward_scale, OFFLINE.cql.reward_scale),
    # Phase 4 (default algorithm PPO; vine's own rows below)
    ("phase4", "algorithm"): (CLI_BUILT["phase4"].algorithm, ASSET["phase4"].algorithm, ONLINE.algorithm),
    ("phase4", "spec"): (CLI["phase4"].spec, ASSET["phase4"].spec, ONLINE.spec),
    ("phase4", "regime"): (CLI["phase4"].regime, ASSET_BUILT["phase4"].regime, ONLINE.regime),  # the asset's "" is None
    ("phase4", "workers"): (CLI["phase4"].workers, ASSET["phase4"].workers, ONLINE.workers),
    ("phase4", "ray_address"): (CLI["phase4"].ray_address, ASSET_BUILT["phase4"].ray_address, ONLINE.ray_address),
    ("phase4", "cpus_per_episode"): (CLI["phase4"].cpus_per_episode, ASSET["phase4"].cpus_per_episode, ONLINE.cpus_per_episode),
    ("phase4", "record_dir"): (CLI["phase4"].record_dir, ASSET["phase4"].record_dir, ONLINE.record_dir),
    ("phase4", "feature_set"): (CLI_BUILT["phase4"].feature_set, ASSET_BUILT["phase4"].feature_set, ONLINE.feature_set),
    ("phase4", "episodes"): (CLI_BUILT["phase4"].ppo.episodes, ASSET_BUILT["phase4"].ppo.episodes, ONLINE.ppo.episodes),
    ("phase4", "episodes_per_iteration"): (CLI_BUILT["phase4"].ppo.episodes_per_iteration,
                                           ASSET_BUILT["phase4"].ppo.episodes_per_iteration, ONLINE.ppo.episodes_per_iteration),
    ("phase4", "entropy_floor"): (CLI["phase4"].entropy_floor, ASSET["phase4"].entropy_floor, ONLINE.ppo.entropy_floor),
    ("phase4", "kl_coef"): (CLI_BUILT["phase4"].ppo.kl_coef, ASSET_BUILT["phase4"].ppo.kl_coef, ONLINE.ppo.kl_coef),
    ("phase4", "seed"): (CLI["phase4"].seed, ASSET["phase4"].seed, ONLINE.ppo.seed),
    ("phase4", "distil_updates"): (CLI["phase4"].distil_updates, ASSET["phase4"].distil_updates, DISTIL.updates),
    ("phase4", "distil_seed"): (CLI["phase4"].seed, ASSET["phase4"].seed, DISTIL.seed),
    ("phase4", "vine iterations"): (CLI_BUILT["phase4-vine"].vine.iterations, ASSET_BUILT["phase4-vine"].vine.iterations,
                                    ONLINE.vine.iterations),
    ("phase4", "vine episodes_per_iteration"): (CLI_BUILT["phase4-vine"].vine.episodes_per_iteration,
                                                ASSET_BUILT["phase4-vine"].vine.episodes_per_iteration,
                                                ONLINE.vine.episodes_per_iteration),
    ("phase4", "vine seed"): (CLI_BUILT["phase4-vine"].vine.seed, ASSET_BUILT["phase4-vine"].vine.seed, ONLINE.vine.seed),
    ("phase4", "val_subsample"): (CLI["phase4"].val_subsample, ASSET["phase4"].val_subsample, ONLINE.vine.val_subsample),
    ("phase4", "fork_min_step"): (CLI["phase4"].fork_min_step, ASSET["phase4"].fork_min_step, ONLINE.vine.min_step),
    ("phase4", "fork_max_step"): (CLI["phase4"].fork_max_step, ASSET["phase4"].fork_max_step, ONLINE.vine.max_step),
    ("phase4", "confirm_orders"): (CLI["phase4"].confirm_orders, ASSET["phase4"].confirm_orders, ONLINE.vine.confirm_orders),
    ("phase4", "forks"): (CLI["phase4"].forks, ASSET["phase4"].forks, ONLINE.vine.forks_per_episode),
    ("phase4", "margin"): (CLI["phase4"].margin, ASSET["phase4"].margin, ONLINE.vine.margin),
    ("phase4", "label_rule"): (CLI["phase4"].label_rule, ASSET["phase4"].label_rule, ONLINE.vine.label_rule),
    ("phase4", "evidence_from"): (tuple(CLI["phase4"].evidence_from), tuple(ASSET["phase4"].evidence_from), ONLINE.vine.evidence_from),
}
# Fields only the asset and the library share (the command line has no flag for them): the same rule applies.
ASSET_ONLY = {
    ("phase3", "selection_fqe_updates"): (ASSET["phase3"].selection_fqe_updates, OFFLINE.selection_fqe.updates),
    ("phase3", "report_fqe_updates"): (ASSET["phase3"].report_fqe_updates, OFFLINE.report_fqe.updates),
}


def _nightly(phase: str, field: str):
    """(True, value) where the asset departs from the library on purpose for this field."""
    overrides = NIGHTLY_DEFAULTS.get(phase, {})
    name = field.split(" (")[0]
    if name not in overrides:
        return False, None
    value = overrides[name]
    return True, tuple(value) if isinstance(value, list) else value  # list fields are compared as tuples


def test_the_compared_fields_are_listed():
    # The list the test compares, so a reader (and a failing run) sees what is covered.
    print("compared (CLI, asset, library):", ", ".join(f"{p}.{f}" for p, f in FIELDS))
    print("compared (asset, library):", ", ".join(f"{p}.{f}" for p, f in ASSET_ONLY))
    assert len(FIELDS) >= 50 and all(len(row) == 3 for row in FIELDS.values())


def test_the_nightly_departures_are_the_documented_ones():
    assert {phase: set(fields) for phase, fields in NIGHTLY_DEFAULTS.items()} == EXPECTED_NIGHTLY
    for phase, fields in NIGHTLY_DEFAULTS.items():
        for name in fields:
            assert any(p == phase and f.split(" (")[0] == name for p, f in FIELDS), f"{phase}.{name}: a nightly departure no row compares"


@pytest.mark.parametrize("phase,field", list(FIELDS), ids=[f"{p}.{f}" for p, f in FIELDS])
def test_cli_asset_and_library_defaults_agree(phase, field):
    cli, asset, library = FIELDS[phase, field]
    values = f"{phase}.{field}: CLI {cli!r}, asset {asset!r}, library {library!r}"
    assert cli == library, f"the CLI's default differs from the library's: {values}"
    deliberate, nightly = _nightly(phase, field)
    if deliberate:
        assert nightly != library, f"NIGHTLY_DEFAULTS repeats the library's value: {values} (drop it from NIGHTLY_DEFAULTS)"
        assert asset == nightly, f"the asset's default is not its named nightly default {nightly!r}: {values}"
    else:
        assert asset == library, f"the asset's default differs from the library's: {values}"


@pytest.mark.parametrize("phase,field", list(ASSET_ONLY), ids=[f"{p}.{f}" for p, f in ASSET_ONLY])
def test_asset_and_library_defaults_agree_where_the_cli_has_no_flag(phase, field):
    asset, library = ASSET_ONLY[phase, field]
    assert asset == library, f"{phase}.{field}: asset {asset!r}, library {library!r}"


def test_the_kl_penalty_default_is_each_algorithms_own():
    """--kl-coef / kl_coef left empty: each learner keeps the library's own (PPO 0.1, the others 0)."""
    for algorithm in ("reinforce", "a2c", "ppo"):
        cli = online_run_config(_train_args("phase4", "--algorithm", algorithm))
        asset = _online_run_config(Phase4Config(algorithm=algorithm), "unused.duckdb")
        library = getattr(ONLINE, algorithm).kl_coef
        values = f"{algorithm}.kl_coef: CLI {cli.learner.kl_coef!r}, asset {asset.learner.kl_coef!r}, library {library!r}"
        assert cli.learner.kl_coef == asset.learner.kl_coef == library, values


def _options(phase: str) -> set[str]:
    parser = build_parser()
    train = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))._name_parser_map["train"]
    sub = next(a for a in train._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices[phase]
    return {o for a in sub._actions for o in a.option_strings}


def test_each_phase_offers_only_its_own_flags():
    # The flag sets that must not leak between phases: what one learner reads, another would silently ignore.
    imitation, offline = {"--epochs", "--labels", "--lr"}, {"--alpha", "--tau", "--updates", "--bcq-threshold"}
    online = {"--episodes", "--workers", "--spec", "--kl-coef", "--forks", "--label-rule"}
    assert imitation <= _options("phase1") and not (offline | online | {"--variant"}) & _options("phase1")
    assert imitation | {"--variant", "--threshold"} <= _options("phase2") and not (offline | online) & _options("phase2")
    assert offline <= _options("phase3") and not (imitation | online | {"--variant"}) & _options("phase3")
    assert online <= _options("phase4") and not (imitation | offline | {"--variant"}) & _options("phase4")


def test_the_old_phase_flag_gets_a_clear_error(capsys):
    from tamiyo_models.cli import main

    assert main(["train", "--phase", "phase3", "--warehouse", "w.duckdb"]) == 2
    err = capsys.readouterr().err
    assert "tamiyo train phase3 [options]" in err and "subcommand" in err
    assert main(["train", "--warehouse", "w.duckdb"]) == 2 and "tamiyo train {phase1,phase2,phase3,phase4}" in capsys.readouterr().err


def test_a_run_config_file_gives_the_library_config_and_an_empty_one_the_flags_defaults(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    # No settings at all: the same run config as no flags at all (phases 3 and 4: one source of defaults).
    assert offline_run_config(_train_args("phase3", "--config", str(empty))) == CLI_BUILT["phase3"]
    assert online_run_config(_train_args("phase4", "--config", str(empty))) == CLI_BUILT["phase4"]
    run = tmp_path / "run.toml"
    run.write_text('algorithm = "iql"\nregimes = ["fm-short"]\n[iql]\ntau = 0.9\nupdates = 300\n')
    config = offline_run_config(_train_args("phase3", "--config", str(run)))
    assert (config.algorithm, config.regimes, config.iql.tau, config.iql.updates) == ("iql", ("fm-short",), 0.9, 300)
    assert config.iql.beta == OFFLINE.iql.beta and config.cql == OFFLINE.cql  # what the file leaves out: the library's


def test_a_run_config_file_is_checked_naming_the_file_and_key(tmp_path):
    from tamiyo_models.cli import main

    run = tmp_path / "run.toml"
    run.write_text("[iql]\ntua = 0.9\n")
    with pytest.raises(ValueError, match=r"run.toml.iql: unknown key\(s\) tua of IQLConfig"):
        offline_run_config(_train_args("phase3", "--config", str(run)))
    run.write_text("[iql]\ntau = 0.9\n")
    with pytest.raises(ValueError, match="leave out --tau, --updates"):
        offline_run_config(_train_args("phase3", "--config", str(run), "--tau", "0.5", "--updates", "10"))
    assert main(["train", "phase2", "--warehouse", str(tmp_path / "w.duckdb"), "--no-mlflow"]) == 2  # phase 2 needs a parent


def test_phase3_reads_the_action_space_flags_into_its_run_config():
    assert (CLI_BUILT["phase3"].seed_slots, CLI_BUILT["phase3"].mix_action_spaces) == (OFFLINE.seed_slots, OFFLINE.mix_action_spaces)
    config = offline_run_config(_train_args("phase3", "--seed-slots", "2", "--mix-action-spaces"))
    assert (config.seed_slots, config.mix_action_spaces) == (2, True)


def test_phase4_reads_the_seed_slots_flag_into_its_run_config():
    assert CLI_BUILT["phase4"].seed_slots == ONLINE.seed_slots
    assert online_run_config(_train_args("phase4", "--seed-slots", "2")).seed_slots == 2


def test_a_nested_table_changes_only_its_keys_and_keeps_the_parents_default(tmp_path):
    # OnlineRunConfig's PPO carries a KL penalty that a bare PPOConfig does not: naming [ppo] episodes must keep it.
    run = tmp_path / "run.toml"
    run.write_text("[ppo]\nepisodes = 320\n")
    config = online_run_config(_train_args("phase4", "--config", str(run)))
    assert config.ppo.episodes == 320 and config.ppo.kl_coef == ONLINE.ppo.kl_coef
    run.write_text("[selection_fqe]\ngamma = 0.9\n")
    assert offline_run_config(_train_args("phase3", "--config", str(run))).selection_fqe.updates == OFFLINE.selection_fqe.updates
