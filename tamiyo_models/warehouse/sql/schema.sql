-- The episode warehouse (DuckDB). Applied by tamiyo_models.warehouse.store.open_warehouse on every write
-- connection; every statement is idempotent. Column dtypes mirror tamiyo_models/warehouse/tables.py (a test
-- checks the two agree). Accuracies are in percentage points (pp, 0..100); a step t is the decision taken
-- after epoch t-1 and before epoch t trains (docs/raw-run-format.md).

CREATE TABLE IF NOT EXISTS runs (
    run_id                 VARCHAR PRIMARY KEY,
    source_format          VARCHAR NOT NULL,
    source_file            VARCHAR NOT NULL,
    source_sha256          VARCHAR NOT NULL,
    source_position        VARCHAR,
    content_sha256         VARCHAR NOT NULL,
    feature_schema_version VARCHAR NOT NULL,
    format_version         BIGINT,
    code_package           VARCHAR,
    code_source_sha256     VARCHAR,
    git_commit             VARCHAR,
    git_dirty              BOOLEAN,
    controller_kind        VARCHAR,
    controller_name        VARCHAR,
    dataset                VARCHAR,
    max_epochs             BIGINT,
    seed                   BIGINT,
    learning_rate          DOUBLE,
    reward_scale           DOUBLE,
    reward_shaped          BOOLEAN,
    host_parameters        BIGINT,
    torch_version          VARCHAR,
    started_at             VARCHAR,
    ended_at               VARCHAR,
    config_json            JSON,
    controller_json        JSON,
    task_json              JSON,
    ingested_at            TIMESTAMP DEFAULT current_timestamp,
    regime                 VARCHAR,
    data_order_seed        BIGINT,
    controller_label       VARCHAR,
    rent                   DOUBLE DEFAULT 0
);
-- Columns added after the first release: a warehouse file created before them gains them here (null for the
-- runs already stored), so opening an older file never fails.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS regime VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS data_order_seed BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS controller_label VARCHAR;
-- Every run stored before rent existed paid none: the default fills them with 0.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS rent DOUBLE DEFAULT 0;
COMMENT ON TABLE runs IS 'one row per episode run: where it came from, its configuration and code version';
COMMENT ON COLUMN runs.run_id IS 'run id: run-<16 hex> for raw runs (hash of the configuration), legacy-<16 hex> for legacy episodes (hash of their content)';
COMMENT ON COLUMN runs.source_format IS 'tamiyo-raw-run/1, legacy-episode-v1 or legacy-episode-v2 (recognised from the content)';
COMMENT ON COLUMN runs.source_file IS 'path of the file the run was loaded from, as given to ingestion';
COMMENT ON COLUMN runs.source_sha256 IS 'SHA-256 of the whole source file (a pack holds many runs)';
COMMENT ON COLUMN runs.source_position IS 'where in the source file: null for a raw run, episodes[i] inside a legacy pack';
COMMENT ON COLUMN runs.content_sha256 IS 'SHA-256 of the run itself (the file for raw runs, the episode JSON for legacy ones)';
COMMENT ON COLUMN runs.feature_schema_version IS 'feature schema of the observations: tamiyo-features/N, or legacy-v1 / legacy-v2';
COMMENT ON COLUMN runs.format_version IS 'raw run format version (null for legacy episodes)';
COMMENT ON COLUMN runs.code_package IS 'tamiyo package version that generated the run';
COMMENT ON COLUMN runs.code_source_sha256 IS 'hash of the generator source code';
COMMENT ON COLUMN runs.git_commit IS 'git commit of the generator, when known';
COMMENT ON COLUMN runs.git_dirty IS 'true when the generator ran from a modified working tree';
COMMENT ON COLUMN runs.controller_kind IS 'controller kind from the configuration (random, heuristic, epsilon-heuristic, policy; heuristic for legacy episodes: the reference heuristic, named in controller_name)';
COMMENT ON COLUMN runs.controller_name IS 'the controller''s own name (header.controller.name; reference-heuristic for legacy episodes)';
COMMENT ON COLUMN runs.dataset IS 'dataset of the host task (synthetic, digits, cifar10, ...)';
COMMENT ON COLUMN runs.max_epochs IS 'episode length in epochs (= decisions)';
COMMENT ON COLUMN runs.seed IS 'episode seed from the configuration (null for legacy)';
COMMENT ON COLUMN runs.learning_rate IS 'initial host learning rate';
COMMENT ON COLUMN runs.reward_scale IS 'reward = scale x accuracy_change (legacy: 10)';
COMMENT ON COLUMN runs.reward_shaped IS 'true when the potential-based shaping term was added to the reward';
COMMENT ON COLUMN runs.host_parameters IS 'parameters of the host at the start';
COMMENT ON COLUMN runs.torch_version IS 'torch version of the generator';
COMMENT ON COLUMN runs.started_at IS 'ISO-8601 start time (legacy episodes only; raw runs are timeless by design)';
COMMENT ON COLUMN runs.ended_at IS 'ISO-8601 end time (legacy episodes only)';
COMMENT ON COLUMN runs.config_json IS 'the full episode configuration (raw header.config; legacy: the top-level settings)';
COMMENT ON COLUMN runs.controller_json IS 'the controller''s own description (header.controller)';
COMMENT ON COLUMN runs.task_json IS 'the host task (header.task)';
COMMENT ON COLUMN runs.ingested_at IS 'when this version of the run was loaded';
COMMENT ON COLUMN runs.regime IS 'the arena regime the configuration was drawn from (a spec''s [[regimes]] name; null outside regimes)';
COMMENT ON COLUMN runs.data_order_seed IS 'set when only the data order was redrawn (null controls, fresh-order replications); null: the order follows seed';
COMMENT ON COLUMN runs.rent IS 'compute rent of the episode (config.rent): pp of score per doubling of parameters, score = final_test_accuracy - rent x log2(final_parameters / host_parameters); 0 for runs written before rent existed (docs/arena.md, Compute rent)';
COMMENT ON COLUMN runs.controller_label IS 'the controller''s reference name (e.g. fixed:conv_heavy@6, eager), when it has one';

CREATE TABLE IF NOT EXISTS branches (
    run_id        VARCHAR PRIMARY KEY,
    parent_run_id VARCHAR NOT NULL,
    fork_step     BIGINT NOT NULL,
    forced_action VARCHAR NOT NULL,
    horizon       BIGINT
);
COMMENT ON TABLE branches IS 'branch runs: replays of a parent episode from a snapshot at its fork step, one per alternative action (tamiyo_models/episodes/branching.py)';
COMMENT ON COLUMN branches.run_id IS 'the branch run (runs.run_id); its steps start at fork_step';
COMMENT ON COLUMN branches.parent_run_id IS 'the run it was forked from (may arrive in a later ingest than the branch)';
COMMENT ON COLUMN branches.fork_step IS 'the step whose state was snapshotted: the branch took forced_action there';
COMMENT ON COLUMN branches.forced_action IS 'fine action forced at the fork step (the parent took its own action there)';
COMMENT ON COLUMN branches.horizon IS 'steps the branch ran, fork step included (null: to the end of the episode)';

CREATE TABLE IF NOT EXISTS episodes (
    run_id             VARCHAR PRIMARY KEY,
    status             VARCHAR NOT NULL,
    error              VARCHAR,
    steps              BIGINT NOT NULL,
    final_val_accuracy DOUBLE,
    best_val_accuracy  DOUBLE,
    seeds_created      BIGINT,
    seeds_fossilized   BIGINT,
    seeds_culled       BIGINT,
    "return"           DOUBLE,
    final_parameters   BIGINT,
    wall_seconds       DOUBLE,
    final_test_accuracy DOUBLE,
    final_test_loss     DOUBLE,
    test_accuracy_last  DOUBLE,
    final_legal_actions VARCHAR[],
    score               DOUBLE
);
ALTER TABLE episodes ADD COLUMN IF NOT EXISTS final_test_accuracy DOUBLE;
ALTER TABLE episodes ADD COLUMN IF NOT EXISTS final_test_loss DOUBLE;
ALTER TABLE episodes ADD COLUMN IF NOT EXISTS test_accuracy_last DOUBLE;
ALTER TABLE episodes ADD COLUMN IF NOT EXISTS final_legal_actions VARCHAR[];
-- A warehouse created before it gets the column filled by store.apply_schema (rent 0: the test accuracy).
ALTER TABLE episodes ADD COLUMN IF NOT EXISTS score DOUBLE;
COMMENT ON TABLE episodes IS 'one row per run: the outcome of the episode (raw footer, legacy totals)';
COMMENT ON COLUMN episodes.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN episodes.status IS 'complete (every epoch trained), truncated (stopped on purpose before the end: a branch at its horizon, a step budget), or failed (the generator recorded an error)';
COMMENT ON COLUMN episodes.error IS 'ExceptionType: message of a failed episode, else null';
COMMENT ON COLUMN episodes.steps IS 'number of decisions stored in steps';
COMMENT ON COLUMN episodes.final_val_accuracy IS 'val accuracy after the last epoch (pp)';
COMMENT ON COLUMN episodes.best_val_accuracy IS 'best val accuracy over the episode (pp)';
COMMENT ON COLUMN episodes.seeds_created IS 'seeds germinated during the episode';
COMMENT ON COLUMN episodes.seeds_fossilized IS 'seeds fossilized (grafted for good)';
COMMENT ON COLUMN episodes.seeds_culled IS 'seeds culled';
COMMENT ON COLUMN episodes."return" IS 'sum of the step rewards (legacy: recomputed with the corrected timing)';
COMMENT ON COLUMN episodes.final_parameters IS 'host parameters at the end, fossilized seeds included';
COMMENT ON COLUMN episodes.wall_seconds IS 'wall-clock duration of the episode (not part of determinism)';
COMMENT ON COLUMN episodes.final_test_accuracy IS 'accuracy on the test split after the last epoch (pp), the raw accuracy; the controller never saw this split (null: run before test splits, or stopped early)';
COMMENT ON COLUMN episodes.score IS 'the score controllers are compared on: final_test_accuracy - rent x log2(final_parameters / host_parameters) (runs.rent; the footer''s score); equals final_test_accuracy at rent 0 (null: no test accuracy)';
COMMENT ON COLUMN episodes.final_test_loss IS 'cross-entropy on the test split after the last epoch';
COMMENT ON COLUMN episodes.final_legal_actions IS 'fine actions legal in the state after the last epoch (the next state of the last transition); null for runs written before it was logged';
COMMENT ON COLUMN episodes.test_accuracy_last IS 'mean test accuracy over the last score_epochs epochs (pp; equals final_test_accuracy when score_epochs = 1)';

CREATE TABLE IF NOT EXISTS steps (
    run_id                   VARCHAR NOT NULL,
    step                     BIGINT NOT NULL,
    epoch                    BIGINT NOT NULL,
    action_fine              VARCHAR NOT NULL,
    action_coarse            VARCHAR NOT NULL,
    blueprint                VARCHAR,
    action_index             BIGINT NOT NULL,
    propensity               DOUBLE,
    prob_wait                       DOUBLE,
    prob_germinate_conv_light       DOUBLE,
    prob_germinate_conv_heavy       DOUBLE,
    prob_germinate_attention        DOUBLE,
    prob_germinate_norm             DOUBLE,
    prob_germinate_depthwise        DOUBLE,
    prob_advance                    DOUBLE,
    prob_cull                       DOUBLE,
    prob_germinate_conv_light_slot1 DOUBLE,
    prob_germinate_conv_heavy_slot1 DOUBLE,
    prob_germinate_attention_slot1  DOUBLE,
    prob_germinate_norm_slot1       DOUBLE,
    prob_germinate_depthwise_slot1  DOUBLE,
    prob_advance_slot1              DOUBLE,
    prob_cull_slot1                 DOUBLE,
    prob_germinate_conv_light_slot2 DOUBLE,
    prob_germinate_conv_heavy_slot2 DOUBLE,
    prob_germinate_attention_slot2  DOUBLE,
    prob_germinate_norm_slot2       DOUBLE,
    prob_germinate_depthwise_slot2  DOUBLE,
    prob_advance_slot2              DOUBLE,
    prob_cull_slot2                 DOUBLE,
    legal_actions            VARCHAR[],
    controller               VARCHAR,
    reason                   VARCHAR,
    greedy_fine              VARCHAR,
    explored                 BOOLEAN,
    applied                  BOOLEAN,
    gate_passed              BOOLEAN,
    gate_reason              VARCHAR,
    gate_from_stage          VARCHAR,
    seed_stage               VARCHAR,
    val_accuracy_before      DOUBLE,
    val_accuracy_after       DOUBLE,
    best_val_accuracy_before DOUBLE,
    best_val_accuracy_after  DOUBLE,
    val_loss_after           DOUBLE,
    train_loss_after         DOUBLE,
    accuracy_change          DOUBLE,
    shaping                  DOUBLE,
    reward                   DOUBLE,
    reward_as_logged         DOUBLE,
    is_last                  BOOLEAN NOT NULL,
    step_seconds             DOUBLE,
    telemetry_seconds        DOUBLE,
    source_line              BIGINT,
    forced                   BOOLEAN,
    stochastic               BOOLEAN,
    PRIMARY KEY (run_id, step)
);
ALTER TABLE steps ADD COLUMN IF NOT EXISTS forced BOOLEAN;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS stochastic BOOLEAN;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_conv_light_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_conv_heavy_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_attention_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_norm_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_depthwise_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_advance_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_cull_slot1 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_conv_light_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_conv_heavy_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_attention_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_norm_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_germinate_depthwise_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_advance_slot2 DOUBLE;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS prob_cull_slot2 DOUBLE;
COMMENT ON TABLE steps IS 'one row per decision: the action, its behaviour propensity, and its consequence';
COMMENT ON COLUMN steps.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN steps.step IS 'decision number t, 1-based';
COMMENT ON COLUMN steps.epoch IS 'epochs completed when deciding (= step - 1)';
COMMENT ON COLUMN steps.action_fine IS 'action taken: WAIT, GERMINATE_<blueprint>, ADVANCE or CULL, with _SLOT<k> for seed slot k > 0 (docs/rl-contract.md)';
COMMENT ON COLUMN steps.action_coarse IS 'coarse label: WAIT, GERMINATE, ADVANCE or CULL';
COMMENT ON COLUMN steps.blueprint IS 'blueprint germinated (GERMINATE only, else null)';
COMMENT ON COLUMN steps.action_index IS 'flat index of action_fine in the factored action space (0..7 for one slot; 1 + slot x 7 + offset)';
COMMENT ON COLUMN steps.propensity IS 'mu(a|s): probability the behaviour controller gave the action taken (null: legacy, never logged; or the forced first step of a branch run, an intervention)';
COMMENT ON COLUMN steps.prob_wait IS 'behaviour probability of WAIT (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_conv_light IS 'behaviour probability of GERMINATE_conv_light (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_conv_heavy IS 'behaviour probability of GERMINATE_conv_heavy (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_attention IS 'behaviour probability of GERMINATE_attention (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_norm IS 'behaviour probability of GERMINATE_norm (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_depthwise IS 'behaviour probability of GERMINATE_depthwise (0 when illegal)';
COMMENT ON COLUMN steps.prob_advance IS 'behaviour probability of ADVANCE (0 when illegal)';
COMMENT ON COLUMN steps.prob_cull IS 'behaviour probability of CULL (0 when illegal)';
COMMENT ON COLUMN steps.prob_germinate_conv_light_slot1 IS 'behaviour probability of GERMINATE_conv_light_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_conv_heavy_slot1 IS 'behaviour probability of GERMINATE_conv_heavy_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_attention_slot1 IS 'behaviour probability of GERMINATE_attention_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_norm_slot1 IS 'behaviour probability of GERMINATE_norm_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_depthwise_slot1 IS 'behaviour probability of GERMINATE_depthwise_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_advance_slot1 IS 'behaviour probability of ADVANCE_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_cull_slot1 IS 'behaviour probability of CULL_SLOT1 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_conv_light_slot2 IS 'behaviour probability of GERMINATE_conv_light_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_conv_heavy_slot2 IS 'behaviour probability of GERMINATE_conv_heavy_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_attention_slot2 IS 'behaviour probability of GERMINATE_attention_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_norm_slot2 IS 'behaviour probability of GERMINATE_norm_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_germinate_depthwise_slot2 IS 'behaviour probability of GERMINATE_depthwise_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_advance_slot2 IS 'behaviour probability of ADVANCE_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.prob_cull_slot2 IS 'behaviour probability of CULL_SLOT2 (a host with more seed slots; 0 when illegal or absent; null in runs stored before the factored action)';
COMMENT ON COLUMN steps.legal_actions IS 'fine actions that were legal at this step';
COMMENT ON COLUMN steps.controller IS 'name of the controller that decided';
COMMENT ON COLUMN steps.reason IS 'the controller''s human-readable reason';
COMMENT ON COLUMN steps.greedy_fine IS 'what the wrapped controller wanted (differs from action_fine when exploration explored)';
COMMENT ON COLUMN steps.explored IS 'true when an exploration wrapper overrode the greedy action';
COMMENT ON COLUMN steps.applied IS 'false when an ADVANCE was refused by a quality gate';
COMMENT ON COLUMN steps.gate_passed IS 'quality gate result for ADVANCE (null for other actions)';
COMMENT ON COLUMN steps.gate_reason IS 'why the gate passed or refused';
COMMENT ON COLUMN steps.gate_from_stage IS 'stage the seed was advancing from';
COMMENT ON COLUMN steps.seed_stage IS 'lifecycle stage of the focus slot when deciding (active seed, else last changed slot)';
COMMENT ON COLUMN steps.val_accuracy_before IS 'val accuracy after epoch t-1 (pp)';
COMMENT ON COLUMN steps.val_accuracy_after IS 'val accuracy after epoch t (pp)';
COMMENT ON COLUMN steps.best_val_accuracy_before IS 'best val accuracy so far, before epoch t (pp)';
COMMENT ON COLUMN steps.best_val_accuracy_after IS 'best val accuracy so far, after epoch t (pp)';
COMMENT ON COLUMN steps.val_loss_after IS 'val loss after epoch t';
COMMENT ON COLUMN steps.train_loss_after IS 'train loss of epoch t';
COMMENT ON COLUMN steps.accuracy_change IS 'val_accuracy_after - val_accuracy_before: the consequence of this action (legacy: realigned, see docs/warehouse.md)';
COMMENT ON COLUMN steps.shaping IS 'potential-based shaping term gamma * best_after - best_before (always stored)';
COMMENT ON COLUMN steps.reward IS 'reward of this action (scale x accuracy_change, + shaping when the run was shaped)';
COMMENT ON COLUMN steps.reward_as_logged IS 'legacy only: the reward the reference stored on this decision (mis-timed by one step)';
COMMENT ON COLUMN steps.is_last IS 'true on the last decision of the episode';
COMMENT ON COLUMN steps.step_seconds IS 'wall-clock seconds of the step (not part of determinism)';
COMMENT ON COLUMN steps.telemetry_seconds IS 'wall-clock seconds spent on telemetry in the step';
COMMENT ON COLUMN steps.source_line IS 'line number in the raw file (legacy: index of the decision)';
COMMENT ON COLUMN steps.forced IS 'true on a branch run''s forced first step: an intervention, not a draw from the behaviour policy (propensity null)';
COMMENT ON COLUMN steps.stochastic IS 'true when the action was drawn at random from prob_* (importance weights identified); false for a deterministic controller (one-hot prob_*); null for runs written before it was logged';

CREATE TABLE IF NOT EXISTS observations (
    run_id                       VARCHAR NOT NULL,
    step                         BIGINT NOT NULL,
    is_final                     BOOLEAN NOT NULL,
    feature_schema_version       VARCHAR NOT NULL,
    epoch                        DOUBLE,
    global_step                  DOUBLE,
    train_loss                   DOUBLE,
    val_loss                     DOUBLE,
    loss_delta                   DOUBLE,
    train_accuracy               DOUBLE,
    val_accuracy                 DOUBLE,
    accuracy_delta               DOUBLE,
    plateau_epochs               DOUBLE,
    best_val_accuracy            DOUBLE,
    best_val_loss                DOUBLE,
    loss_history_0               DOUBLE,
    loss_history_1               DOUBLE,
    loss_history_2               DOUBLE,
    loss_history_3               DOUBLE,
    loss_history_4               DOUBLE,
    accuracy_history_0           DOUBLE,
    accuracy_history_1           DOUBLE,
    accuracy_history_2           DOUBLE,
    accuracy_history_3           DOUBLE,
    accuracy_history_4           DOUBLE,
    has_active_seed              DOUBLE,
    seed_stage                   DOUBLE,
    seed_epochs_in_stage         DOUBLE,
    seed_alpha                   DOUBLE,
    seed_improvement             DOUBLE,
    available_slots              DOUBLE,
    grad_mean_layer_norm         DOUBLE,
    grad_layer_norm_variance     DOUBLE,
    grad_vanishing_layers        DOUBLE,
    grad_exploding_layers        DOUBLE,
    grad_health                  DOUBLE,
    class_accuracy_0             DOUBLE,
    class_accuracy_1             DOUBLE,
    class_accuracy_2             DOUBLE,
    class_accuracy_3             DOUBLE,
    class_accuracy_4             DOUBLE,
    class_accuracy_5             DOUBLE,
    class_accuracy_6             DOUBLE,
    class_accuracy_7             DOUBLE,
    class_accuracy_8             DOUBLE,
    class_accuracy_9             DOUBLE,
    class_accuracy_variance      DOUBLE,
    sharpness                    DOUBLE,
    layer_grad_norm_0            DOUBLE,
    layer_grad_norm_1            DOUBLE,
    layer_grad_norm_2            DOUBLE,
    layer_grad_norm_3            DOUBLE,
    layer_grad_norm_4            DOUBLE,
    layer_grad_norm_5            DOUBLE,
    layer_grad_norm_head         DOUBLE,
    flag_sustained_plateau       DOUBLE,
    flag_gradient_problem        DOUBLE,
    flag_overfitting             DOUBLE,
    seed_total_improvement       DOUBLE,
    seed_contribution            DOUBLE,
    seed_blueprint_conv_light    DOUBLE,
    seed_blueprint_conv_heavy    DOUBLE,
    seed_blueprint_attention     DOUBLE,
    seed_blueprint_norm          DOUBLE,
    seed_blueprint_depthwise     DOUBLE,
    epochs_remaining             DOUBLE,
    cooldown_epochs_remaining    DOUBLE,
    seeds_fossilized             DOUBLE,
    seeds_culled                 DOUBLE,
    learning_rate                DOUBLE,
    task_log10_host_parameters   DOUBLE,
    task_host_depth              DOUBLE,
    task_host_width_first        DOUBLE,
    task_host_width_last         DOUBLE,
    task_slot_channels           DOUBLE,
    task_seed_slots              DOUBLE,
    task_log10_train_size        DOUBLE,
    task_num_classes             DOUBLE,
    task_input_channels          DOUBLE,
    task_input_size              DOUBLE,
    slot0_present                DOUBLE,
    slot0_channels               DOUBLE,
    slot0_stage                  DOUBLE,
    slot0_active                 DOUBLE,
    slot0_epochs_in_stage        DOUBLE,
    slot0_alpha                  DOUBLE,
    slot0_total_improvement      DOUBLE,
    slot0_contribution           DOUBLE,
    slot0_log10_seed_parameters  DOUBLE,
    slot0_cooldown               DOUBLE,
    slot0_zero_gradient_share    DOUBLE,
    slot1_present                DOUBLE,
    slot1_channels               DOUBLE,
    slot1_stage                  DOUBLE,
    slot1_active                 DOUBLE,
    slot1_epochs_in_stage        DOUBLE,
    slot1_alpha                  DOUBLE,
    slot1_total_improvement      DOUBLE,
    slot1_contribution           DOUBLE,
    slot1_log10_seed_parameters  DOUBLE,
    slot1_cooldown               DOUBLE,
    slot1_zero_gradient_share    DOUBLE,
    slot2_present                DOUBLE,
    slot2_channels               DOUBLE,
    slot2_stage                  DOUBLE,
    slot2_active                 DOUBLE,
    slot2_epochs_in_stage        DOUBLE,
    slot2_alpha                  DOUBLE,
    slot2_total_improvement      DOUBLE,
    slot2_contribution           DOUBLE,
    slot2_log10_seed_parameters  DOUBLE,
    slot2_cooldown               DOUBLE,
    slot2_zero_gradient_share    DOUBLE,
    PRIMARY KEY (run_id, step)
);
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_log10_host_parameters DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_host_depth DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_host_width_first DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_host_width_last DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_slot_channels DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_seed_slots DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_log10_train_size DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_num_classes DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_input_channels DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS task_input_size DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_present DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_channels DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_active DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_epochs_in_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_alpha DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_total_improvement DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_contribution DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_log10_seed_parameters DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_cooldown DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot0_zero_gradient_share DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_present DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_channels DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_active DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_epochs_in_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_alpha DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_total_improvement DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_contribution DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_log10_seed_parameters DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_cooldown DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot1_zero_gradient_share DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_present DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_channels DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_active DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_epochs_in_stage DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_alpha DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_total_improvement DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_contribution DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_log10_seed_parameters DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_cooldown DOUBLE;
ALTER TABLE observations ADD COLUMN IF NOT EXISTS slot2_zero_gradient_share DOUBLE;
COMMENT ON TABLE observations IS 'the observation features of each decision (tamiyo_models.world.features.observation_features), one named column each';
COMMENT ON COLUMN observations.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN observations.step IS 'the decision these features were observed for; steps + 1 = the final observation (next state of the last transition)';
COMMENT ON COLUMN observations.is_final IS 'true for the observation after the last epoch (no decision was taken on it)';
COMMENT ON COLUMN observations.feature_schema_version IS 'tamiyo-features/N, or legacy-v1 / legacy-v2 (reference vectors; features they lack are null)';
COMMENT ON COLUMN observations.epoch IS 'feature (base): epochs completed when deciding';
COMMENT ON COLUMN observations.global_step IS 'feature (base): optimiser steps so far';
COMMENT ON COLUMN observations.train_loss IS 'feature (base): train loss of the last epoch';
COMMENT ON COLUMN observations.val_loss IS 'feature (base): validation loss after the last epoch';
COMMENT ON COLUMN observations.loss_delta IS 'feature (base): previous minus current val loss (positive = better; 0 at the first step)';
COMMENT ON COLUMN observations.train_accuracy IS 'feature (base): train accuracy of the last epoch (pp)';
COMMENT ON COLUMN observations.val_accuracy IS 'feature (base): validation accuracy (pp)';
COMMENT ON COLUMN observations.accuracy_delta IS 'feature (base): val accuracy change versus the previous epoch (pp; 0 at the first step)';
COMMENT ON COLUMN observations.plateau_epochs IS 'feature (base): consecutive epochs whose val accuracy rose < 0.5 pp';
COMMENT ON COLUMN observations.best_val_accuracy IS 'feature (base): best val accuracy so far (pp)';
COMMENT ON COLUMN observations.best_val_loss IS 'feature (base): best (lowest) val loss so far';
COMMENT ON COLUMN observations.loss_history_0 IS 'feature (base): val loss history, position 0 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.loss_history_1 IS 'feature (base): val loss history, position 1 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.loss_history_2 IS 'feature (base): val loss history, position 2 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.loss_history_3 IS 'feature (base): val loss history, position 3 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.loss_history_4 IS 'feature (base): val loss history, position 4 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.accuracy_history_0 IS 'feature (base): val accuracy history, position 0 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.accuracy_history_1 IS 'feature (base): val accuracy history, position 1 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.accuracy_history_2 IS 'feature (base): val accuracy history, position 2 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.accuracy_history_3 IS 'feature (base): val accuracy history, position 3 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.accuracy_history_4 IS 'feature (base): val accuracy history, position 4 of 5 (oldest first, left-padded with 0)';
COMMENT ON COLUMN observations.has_active_seed IS 'feature (base): 1 when a seed is between GERMINATED and PROBATIONARY';
COMMENT ON COLUMN observations.seed_stage IS 'feature (base): lifecycle stage number of the focus slot (DORMANT=0 .. RESETTING=9)';
COMMENT ON COLUMN observations.seed_epochs_in_stage IS 'feature (base): epochs the focus seed has spent in its stage';
COMMENT ON COLUMN observations.seed_alpha IS 'feature (base): blending weight of the focus seed';
COMMENT ON COLUMN observations.seed_improvement IS 'feature (base): val accuracy gain since the seed''s stage started (pp)';
COMMENT ON COLUMN observations.available_slots IS 'feature (base): number of DORMANT seed slots';
COMMENT ON COLUMN observations.grad_mean_layer_norm IS 'feature (telemetry): mean of the per-layer gradient norms';
COMMENT ON COLUMN observations.grad_layer_norm_variance IS 'feature (telemetry): variance of the per-layer gradient norms';
COMMENT ON COLUMN observations.grad_vanishing_layers IS 'feature (telemetry): layers with more than half their gradients below 1e-7';
COMMENT ON COLUMN observations.grad_exploding_layers IS 'feature (telemetry): layers with a gradient above 1e3';
COMMENT ON COLUMN observations.grad_health IS 'feature (telemetry): gradient health score in [0, 1]';
COMMENT ON COLUMN observations.class_accuracy_0 IS 'feature (telemetry): val accuracy of class 0 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_1 IS 'feature (telemetry): val accuracy of class 1 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_2 IS 'feature (telemetry): val accuracy of class 2 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_3 IS 'feature (telemetry): val accuracy of class 3 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_4 IS 'feature (telemetry): val accuracy of class 4 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_5 IS 'feature (telemetry): val accuracy of class 5 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_6 IS 'feature (telemetry): val accuracy of class 6 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_7 IS 'feature (telemetry): val accuracy of class 7 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_8 IS 'feature (telemetry): val accuracy of class 8 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_9 IS 'feature (telemetry): val accuracy of class 9 (pp, 0 when absent)';
COMMENT ON COLUMN observations.class_accuracy_variance IS 'feature (telemetry): variance of the per-class val accuracies';
COMMENT ON COLUMN observations.sharpness IS 'feature (telemetry): mean |L(theta+eps) - L(theta)| / sigma';
COMMENT ON COLUMN observations.layer_grad_norm_0 IS 'feature (telemetry): gradient norm of the conv weight of host stage 0 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_1 IS 'feature (telemetry): gradient norm of the conv weight of host stage 1 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_2 IS 'feature (telemetry): gradient norm of the conv weight of host stage 2 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_3 IS 'feature (telemetry): gradient norm of the conv weight of host stage 3 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_4 IS 'feature (telemetry): gradient norm of the conv weight of host stage 4 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_5 IS 'feature (telemetry): gradient norm of the conv weight of host stage 5 (0 when absent)';
COMMENT ON COLUMN observations.layer_grad_norm_head IS 'feature (telemetry): gradient norm of the classifier weight';
COMMENT ON COLUMN observations.flag_sustained_plateau IS 'feature (telemetry): red flag: plateau >= 3 epochs';
COMMENT ON COLUMN observations.flag_gradient_problem IS 'feature (telemetry): red flag: vanishing/exploding/poor gradient health';
COMMENT ON COLUMN observations.flag_overfitting IS 'feature (telemetry): red flag: val loss - train loss > 0.5';
COMMENT ON COLUMN observations.seed_total_improvement IS 'feature (lifecycle): accuracy with the seed minus accuracy at germination (pp)';
COMMENT ON COLUMN observations.seed_contribution IS 'feature (lifecycle): measured contribution of the seed (alpha 1 minus alpha 0, pp)';
COMMENT ON COLUMN observations.seed_blueprint_conv_light IS 'feature (lifecycle): 1 when the active seed is a conv_light blueprint';
COMMENT ON COLUMN observations.seed_blueprint_conv_heavy IS 'feature (lifecycle): 1 when the active seed is a conv_heavy blueprint';
COMMENT ON COLUMN observations.seed_blueprint_attention IS 'feature (lifecycle): 1 when the active seed is a attention blueprint';
COMMENT ON COLUMN observations.seed_blueprint_norm IS 'feature (lifecycle): 1 when the active seed is a norm blueprint';
COMMENT ON COLUMN observations.seed_blueprint_depthwise IS 'feature (lifecycle): 1 when the active seed is a depthwise blueprint';
COMMENT ON COLUMN observations.epochs_remaining IS 'feature (lifecycle): max_epochs minus epoch';
COMMENT ON COLUMN observations.cooldown_epochs_remaining IS 'feature (lifecycle): largest cool-down left on any slot';
COMMENT ON COLUMN observations.seeds_fossilized IS 'feature (lifecycle): seeds fossilized so far';
COMMENT ON COLUMN observations.seeds_culled IS 'feature (lifecycle): seeds culled so far';
COMMENT ON COLUMN observations.learning_rate IS 'feature (lifecycle): learning rate of the epoch about to train';
COMMENT ON COLUMN observations.task_log10_host_parameters IS 'feature (task): log10 of the host''s parameter count at the start (seeds excluded); null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_host_depth IS 'feature (task): number of host stages; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_host_width_first IS 'feature (task): channels of the first host stage; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_host_width_last IS 'feature (task): channels of the last host stage; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_slot_channels IS 'feature (task): channels at the first seed slot (what a seed there works on); null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_seed_slots IS 'feature (task): number of seed slots in the host; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_log10_train_size IS 'feature (task): log10 of the number of training images; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_num_classes IS 'feature (task): number of classes; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_input_channels IS 'feature (task): input image channels; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.task_input_size IS 'feature (task): input image height in pixels; null for runs recorded before feature schema 4';
COMMENT ON COLUMN observations.slot0_present IS 'feature (slots): seed slot 0: 1 when the host has this slot; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_channels IS 'feature (slots): seed slot 0: channels of the feature map at the slot; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_stage IS 'feature (slots): seed slot 0: lifecycle stage number (0 DORMANT .. 9 RESETTING); 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_active IS 'feature (slots): seed slot 0: 1 while a seed the controller can act on is in the slot; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_epochs_in_stage IS 'feature (slots): seed slot 0: epochs in the current stage; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_alpha IS 'feature (slots): seed slot 0: blending weight of the seed; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_total_improvement IS 'feature (slots): seed slot 0: val accuracy with the seed fully applied minus just before its germination (pp); 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_contribution IS 'feature (slots): seed slot 0: measured contribution of the seed (pp); 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_log10_seed_parameters IS 'feature (slots): seed slot 0: log10(1 + parameters of the seed in the slot); 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_cooldown IS 'feature (slots): seed slot 0: epochs until the slot is DORMANT again after a cull; 0 when the host has no slot 0; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot0_zero_gradient_share IS 'feature (slots): seed slot 0: share of the seed''s gradient entries exactly 0 over the last epoch''s sampled batches (near 1: a seed born dead, its ReLUs silent); 0 without a seed that trained, or when the host has no slot 0; null in rows stored before feature schema 5';
COMMENT ON COLUMN observations.slot1_present IS 'feature (slots): seed slot 1: 1 when the host has this slot; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_channels IS 'feature (slots): seed slot 1: channels of the feature map at the slot; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_stage IS 'feature (slots): seed slot 1: lifecycle stage number (0 DORMANT .. 9 RESETTING); 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_active IS 'feature (slots): seed slot 1: 1 while a seed the controller can act on is in the slot; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_epochs_in_stage IS 'feature (slots): seed slot 1: epochs in the current stage; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_alpha IS 'feature (slots): seed slot 1: blending weight of the seed; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_total_improvement IS 'feature (slots): seed slot 1: val accuracy with the seed fully applied minus just before its germination (pp); 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_contribution IS 'feature (slots): seed slot 1: measured contribution of the seed (pp); 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_log10_seed_parameters IS 'feature (slots): seed slot 1: log10(1 + parameters of the seed in the slot); 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_cooldown IS 'feature (slots): seed slot 1: epochs until the slot is DORMANT again after a cull; 0 when the host has no slot 1; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot1_zero_gradient_share IS 'feature (slots): seed slot 1: share of the seed''s gradient entries exactly 0 over the last epoch''s sampled batches (near 1: a seed born dead, its ReLUs silent); 0 without a seed that trained, or when the host has no slot 1; null in rows stored before feature schema 5';
COMMENT ON COLUMN observations.slot2_present IS 'feature (slots): seed slot 2: 1 when the host has this slot; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_channels IS 'feature (slots): seed slot 2: channels of the feature map at the slot; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_stage IS 'feature (slots): seed slot 2: lifecycle stage number (0 DORMANT .. 9 RESETTING); 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_active IS 'feature (slots): seed slot 2: 1 while a seed the controller can act on is in the slot; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_epochs_in_stage IS 'feature (slots): seed slot 2: epochs in the current stage; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_alpha IS 'feature (slots): seed slot 2: blending weight of the seed; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_total_improvement IS 'feature (slots): seed slot 2: val accuracy with the seed fully applied minus just before its germination (pp); 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_contribution IS 'feature (slots): seed slot 2: measured contribution of the seed (pp); 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_log10_seed_parameters IS 'feature (slots): seed slot 2: log10(1 + parameters of the seed in the slot); 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_cooldown IS 'feature (slots): seed slot 2: epochs until the slot is DORMANT again after a cull; 0 when the host has no slot 2; null in rows stored before the per-slot group';
COMMENT ON COLUMN observations.slot2_zero_gradient_share IS 'feature (slots): seed slot 2: share of the seed''s gradient entries exactly 0 over the last epoch''s sampled batches (near 1: a seed born dead, its ReLUs silent); 0 without a seed that trained, or when the host has no slot 2; null in rows stored before feature schema 5';

-- The widest table (~11 rows per decision), so the compact one: FLOAT, the precision the generator measures
-- in (torch float32; a raw run's values read back exactly), and no primary key, whose index took more than
-- half the table's bytes (measured: 495,000 rows, 106 MB with DOUBLE and the key, 27 MB without). The key
-- is still checked: per batch by pandera (unique_run_step_layer) and on the stored table by the Dagster
-- check, and a run's rows are only ever inserted whole, once (see ingest.py). Older files are rebuilt in
-- this layout when opened (store.py, migrate_layer_gradients).
CREATE TABLE IF NOT EXISTS layer_gradients (
    run_id          VARCHAR NOT NULL,
    step            BIGINT NOT NULL,
    layer           VARCHAR NOT NULL,
    norm            FLOAT,
    norm_std        FLOAT,
    mean            FLOAT,
    std             FLOAT,
    vanishing_share FLOAT,
    exploding_share FLOAT,
    p1              FLOAT,
    p5              FLOAT,
    p10             FLOAT,
    p25             FLOAT,
    p50             FLOAT,
    p75             FLOAT,
    p90             FLOAT,
    p95             FLOAT,
    p99             FLOAT
);
COMMENT ON TABLE layer_gradients IS 'per host weight tensor gradient telemetry of the epoch before each decision (empty at epoch 0)';
COMMENT ON COLUMN layer_gradients.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN layer_gradients.step IS 'the decision whose observation carried these statistics (steps + 1 = final observation)';
COMMENT ON COLUMN layer_gradients.layer IS 'parameter name of the host weight tensor, e.g. stages.0.0.weight';
COMMENT ON COLUMN layer_gradients.norm IS 'gradient L2 norm, mean over all batches of the epoch';
COMMENT ON COLUMN layer_gradients.norm_std IS 'standard deviation of the gradient norm over the epoch''s batches';
COMMENT ON COLUMN layer_gradients.mean IS 'mean gradient value over sampled batches';
COMMENT ON COLUMN layer_gradients.std IS 'standard deviation of gradient values over sampled batches';
COMMENT ON COLUMN layer_gradients.vanishing_share IS 'share of gradient values with |g| < 1e-7';
COMMENT ON COLUMN layer_gradients.exploding_share IS 'share of gradient values with |g| > 1e3';
COMMENT ON COLUMN layer_gradients.p1 IS '1st percentile of |g|';
COMMENT ON COLUMN layer_gradients.p5 IS '5th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p10 IS '10th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p25 IS '25th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p50 IS 'median of |g|';
COMMENT ON COLUMN layer_gradients.p75 IS '75th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p90 IS '90th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p95 IS '95th percentile of |g|';
COMMENT ON COLUMN layer_gradients.p99 IS '99th percentile of |g|';

CREATE TABLE IF NOT EXISTS lifecycle_events (
    run_id      VARCHAR NOT NULL,
    step        BIGINT NOT NULL,
    event_index BIGINT NOT NULL,
    epoch       BIGINT,
    slot        BIGINT,
    seed_id     VARCHAR,
    from_stage  VARCHAR NOT NULL,
    to_stage    VARCHAR NOT NULL,
    cause       VARCHAR NOT NULL,
    detail      VARCHAR,
    PRIMARY KEY (run_id, step, event_index)
);
COMMENT ON TABLE lifecycle_events IS 'seed lifecycle transitions, in the order they happened within each step (legacy episodes: derived from their actions and seed_stage, detail says so)';
COMMENT ON COLUMN lifecycle_events.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN lifecycle_events.step IS 'the decision during which the transition happened';
COMMENT ON COLUMN lifecycle_events.event_index IS 'order of the event within the step, 0-based';
COMMENT ON COLUMN lifecycle_events.epoch IS 'epoch counter at the transition';
COMMENT ON COLUMN lifecycle_events.slot IS 'seed slot index';
COMMENT ON COLUMN lifecycle_events.seed_id IS 'the seed (<run_id>/seed-N)';
COMMENT ON COLUMN lifecycle_events.from_stage IS 'lifecycle stage before';
COMMENT ON COLUMN lifecycle_events.to_stage IS 'lifecycle stage after';
COMMENT ON COLUMN lifecycle_events.cause IS 'controller (an action) or automatic (a clock or gate)';
COMMENT ON COLUMN lifecycle_events.detail IS 'free text: blueprint (germination), gate reason, or derived from seed_stage (legacy)';

CREATE TABLE IF NOT EXISTS non_finite_values (
    run_id   VARCHAR NOT NULL,
    step     BIGINT,
    position VARCHAR NOT NULL,
    field    VARCHAR NOT NULL,
    raw_text VARCHAR NOT NULL,
    expected BOOLEAN NOT NULL
);
COMMENT ON TABLE non_finite_values IS 'legacy numbers that were NaN or Infinity in the source: stored as NULL where they belong, their literal kept here';
COMMENT ON COLUMN non_finite_values.run_id IS 'the run (runs.run_id)';
COMMENT ON COLUMN non_finite_values.step IS 'the decision the value belongs to (null: an episode-level field such as final_accuracy)';
COMMENT ON COLUMN non_finite_values.position IS 'the record in the source file: decisions[i], telemetry_history[i], episode, with episodes[k]. inside a pack';
COMMENT ON COLUMN non_finite_values.field IS 'the field inside that record, e.g. observation.loss_delta, sharpness, gradient_stats[0].norm';
COMMENT ON COLUMN non_finite_values.raw_text IS 'the literal as written: NaN, Infinity or -Infinity';
COMMENT ON COLUMN non_finite_values.expected IS 'true for the reference''s first-step loss_delta = Infinity (always written); false is a warning';

CREATE TABLE IF NOT EXISTS quarantine (
    ingest_id      VARCHAR NOT NULL,
    source_file    VARCHAR NOT NULL,
    source_sha256  VARCHAR NOT NULL,
    source_format  VARCHAR,
    position       VARCHAR NOT NULL,
    line           BIGINT,
    run_id         VARCHAR,
    field          VARCHAR,
    rule           VARCHAR NOT NULL,
    reason         VARCHAR NOT NULL,
    original_text  VARCHAR,
    quarantined_at TIMESTAMP DEFAULT current_timestamp,
    parser_version BIGINT
);
-- Warehouses created before the column existed: their rows get NULL, i.e. "an older parser", and are retried.
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS parser_version BIGINT;
COMMENT ON TABLE quarantine IS 'records that failed validation, with why and their original text: nothing is lost';
COMMENT ON COLUMN quarantine.ingest_id IS 'the ingestion that quarantined it (ingest_log.ingest_id)';
COMMENT ON COLUMN quarantine.source_file IS 'path of the source file';
COMMENT ON COLUMN quarantine.source_sha256 IS 'SHA-256 of the source file as read';
COMMENT ON COLUMN quarantine.source_format IS 'format recognised from the content, or unknown';
COMMENT ON COLUMN quarantine.position IS 'where: line N, decisions[i], episodes[i].decisions[j], or file';
COMMENT ON COLUMN quarantine.line IS 'line number in the source file, when the record is a line';
COMMENT ON COLUMN quarantine.run_id IS 'run the record belongs to, when known';
COMMENT ON COLUMN quarantine.field IS 'field that failed (dotted path or column), when one did';
COMMENT ON COLUMN quarantine.rule IS 'rule that failed (e.g. strict_json, required, type, in_range, consecutive_steps, run_quarantined)';
COMMENT ON COLUMN quarantine.reason IS 'human-readable reason';
COMMENT ON COLUMN quarantine.original_text IS 'the original record text (undecodable bytes shown as \\x escapes)';
COMMENT ON COLUMN quarantine.quarantined_at IS 'when it was quarantined';
COMMENT ON COLUMN quarantine.parser_version IS 'parser version that quarantined it (units.PARSER_VERSION); a newer parser retries the file, null = before versions were recorded';

CREATE TABLE IF NOT EXISTS ingest_log (
    ingest_id           VARCHAR NOT NULL,
    source_file         VARCHAR NOT NULL,
    source_sha256       VARCHAR,
    size_bytes          BIGINT,
    source_format       VARCHAR,
    outcome             VARCHAR NOT NULL,
    run_ids             VARCHAR[],
    runs_loaded         BIGINT,
    steps_loaded        BIGINT,
    records_quarantined BIGINT,
    message             VARCHAR,
    seen_at             TIMESTAMP DEFAULT current_timestamp,
    parser_version      BIGINT,
    non_finite_values   BIGINT,
    non_finite_unexpected BIGINT
);
ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS parser_version BIGINT;
ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS non_finite_values BIGINT;
ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS non_finite_unexpected BIGINT;
COMMENT ON TABLE ingest_log IS 'every file every ingestion saw, and what became of it';
COMMENT ON COLUMN ingest_log.ingest_id IS 'one id per ingestion call';
COMMENT ON COLUMN ingest_log.source_file IS 'path of the file';
COMMENT ON COLUMN ingest_log.source_sha256 IS 'SHA-256 of the file as read';
COMMENT ON COLUMN ingest_log.size_bytes IS 'file size in bytes';
COMMENT ON COLUMN ingest_log.source_format IS 'format recognised from the content';
COMMENT ON COLUMN ingest_log.outcome IS 'loaded, replaced (same run id, new content), unchanged (already stored), quarantined or partly_quarantined (a pack); a file quarantined by an older parser is parsed again';
COMMENT ON COLUMN ingest_log.run_ids IS 'runs the file holds (as far as they could be read)';
COMMENT ON COLUMN ingest_log.runs_loaded IS 'runs stored from this file by this ingestion';
COMMENT ON COLUMN ingest_log.steps_loaded IS 'steps stored from this file by this ingestion';
COMMENT ON COLUMN ingest_log.records_quarantined IS 'records of this file put in quarantine by this ingestion';
COMMENT ON COLUMN ingest_log.message IS 'what happened, in words';
COMMENT ON COLUMN ingest_log.seen_at IS 'when the file was seen';
COMMENT ON COLUMN ingest_log.parser_version IS 'parser version of this ingestion (units.PARSER_VERSION)';
COMMENT ON COLUMN ingest_log.non_finite_values IS 'NaN/Infinity literals stored as NULL from this file (their text in non_finite_values)';
COMMENT ON COLUMN ingest_log.non_finite_unexpected IS 'of those, the ones other than the reference''s first-step loss_delta = Infinity: a warning';
