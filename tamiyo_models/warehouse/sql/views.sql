-- Views for people: the questions asked most often, answered once. Recreated on every write connection.

-- How often each action was taken, per controller kind (fine and coarse). Legacy episodes are `heuristic` (the
-- reference heuristic) here as in runs and in training.
CREATE OR REPLACE VIEW action_distribution AS
SELECT r.controller_kind,
       s.action_coarse,
       s.action_fine,
       count(*) AS steps,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY r.controller_kind), 2) AS share_pct
FROM steps s JOIN runs r USING (run_id)
GROUP BY 1, 2, 3;

-- One row per episode with its configuration and outcome, the base of most analyses. Branch runs (partial
-- replays from a fork step) are marked: outcome views leave them out, branch_outcomes compares them. `score` is
-- what decides a comparison: the test accuracy charged for growth at the run's rent (docs/arena.md, Compute
-- rent); `decided_by` says whether that differs from the raw accuracy beside it.
CREATE OR REPLACE VIEW episode_summary AS
SELECT r.run_id, r.source_format, r.controller_kind, r.controller_label, r.dataset, r.regime, r.max_epochs, r.seed,
       r.data_order_seed, r.reward_shaped,
       r.run_id IN (SELECT run_id FROM branches) AS is_branch,
       e.status, e.steps, e.score, e.final_test_accuracy, coalesce(r.rent, 0) AS rent,
       CASE WHEN coalesce(r.rent, 0) > 0 THEN 'score (charged)' ELSE 'test accuracy (rent 0)' END AS decided_by,
       r.host_parameters, e.final_val_accuracy, e.best_val_accuracy, e.seeds_created,
       e.seeds_fossilized,
       e.seeds_culled, e."return", e.final_parameters,
       (SELECT list(DISTINCT s.blueprint ORDER BY s.blueprint) FROM steps s
         WHERE s.run_id = r.run_id AND s.blueprint IS NOT NULL) AS blueprints_germinated
FROM runs r JOIN episodes e USING (run_id);

-- Episode outcomes by controller, dataset and rent. The score (the test accuracy charged for growth; the
-- accuracy itself at rent 0) is what controllers are compared on (the controller never saw the test split);
-- the validation accuracy is what it watched. Scores at different rents are different numbers, so each rent is
-- its own row. Unpaired means: for a claim about one controller against another, use paired configurations
-- (tamiyo headroom / tamiyo evaluate).
CREATE OR REPLACE VIEW outcomes_by_controller AS
SELECT controller_kind, dataset, rent, any_value(decided_by) AS decided_by, count(*) AS episodes,
       round(avg(score), 2) AS mean_score,
       round(avg(final_test_accuracy), 2) AS mean_test_accuracy,
       round(avg(final_parameters), 0) AS mean_final_parameters,
       round(avg(final_val_accuracy), 2) AS mean_final_accuracy,
       round(stddev_samp(final_val_accuracy), 2) AS sd_final_accuracy,
       round(avg(best_val_accuracy), 2) AS mean_best_accuracy,
       round(avg(seeds_created), 2) AS mean_seeds_created,
       round(avg(seeds_fossilized), 2) AS mean_seeds_fossilized,
       round(avg("return"), 2) AS mean_return
FROM episode_summary
WHERE status = 'complete' AND NOT is_branch
GROUP BY ALL;

-- Episode outcomes by the blueprint germinated (an episode counts once per blueprint it used).
CREATE OR REPLACE VIEW outcomes_by_blueprint AS
SELECT s.blueprint, r.dataset, count(DISTINCT s.run_id) AS episodes,
       round(avg(e.final_val_accuracy), 2) AS mean_final_accuracy,
       round(avg(e.seeds_fossilized), 2) AS mean_seeds_fossilized
FROM (SELECT DISTINCT run_id, blueprint FROM steps WHERE blueprint IS NOT NULL) s
JOIN runs r USING (run_id) JOIN episodes e USING (run_id)
WHERE s.run_id NOT IN (SELECT run_id FROM branches)
GROUP BY ALL;

-- Measured counterfactuals: at each fork, every action's accuracy change over the branch horizon from the same
-- snapshotted state: the branch runs' forced actions, and the parent's own action (its next `horizon` steps are
-- what a branch for it would replay bit for bit, so it has no branch run of its own).
CREATE OR REPLACE VIEW branch_outcomes AS
WITH forks AS (
    SELECT parent_run_id, fork_step, any_value(horizon) AS horizon FROM branches GROUP BY ALL
), arms AS (
    SELECT parent_run_id, fork_step, forced_action AS action, false AS is_parent, horizon, run_id FROM branches
    UNION ALL
    SELECT f.parent_run_id, f.fork_step, s.action_fine, true, f.horizon, f.parent_run_id
    FROM forks f JOIN steps s ON s.run_id = f.parent_run_id AND s.step = f.fork_step
), ends AS (
    SELECT a.*, max(s.step) AS last_step
    FROM arms a JOIN steps s ON s.run_id = a.run_id AND s.step >= a.fork_step
         AND s.step <= a.fork_step + coalesce(a.horizon, 1000000) - 1
    GROUP BY ALL
)
SELECT e.parent_run_id, e.fork_step, e.action, e.is_parent, e.horizon, e.run_id,
       first.val_accuracy_before AS accuracy_at_fork,
       last.val_accuracy_after AS accuracy_at_horizon,
       last.val_accuracy_after - first.val_accuracy_before AS accuracy_change,
       rank() OVER (PARTITION BY e.parent_run_id, e.fork_step ORDER BY last.val_accuracy_after DESC) AS rank_at_fork
FROM ends e
JOIN steps first ON first.run_id = e.run_id AND first.step = e.fork_step
JOIN steps last ON last.run_id = e.run_id AND last.step = e.last_step;

-- What became of each seed: the last stage it reached, by blueprint.
CREATE OR REPLACE VIEW seed_fates AS
WITH germinated AS (
    SELECT run_id, seed_id, any_value(detail) AS blueprint, min(step) AS germinated_step
    FROM lifecycle_events WHERE to_stage = 'GERMINATED' GROUP BY ALL
), last_event AS (
    SELECT run_id, seed_id, arg_max(to_stage, step * 1000 + event_index) AS last_stage,
           bool_or(to_stage = 'FOSSILIZED') AS fossilized, bool_or(to_stage = 'CULLED') AS culled
    FROM lifecycle_events GROUP BY ALL
)
SELECT g.run_id, g.seed_id, g.blueprint, g.germinated_step, l.last_stage, l.fossilized, l.culled
FROM germinated g JOIN last_event l USING (run_id, seed_id);

-- Seed success rate per blueprint: fossilized / germinated.
CREATE OR REPLACE VIEW seed_success_rates AS
SELECT blueprint, count(*) AS seeds, count(*) FILTER (WHERE fossilized) AS fossilized,
       count(*) FILTER (WHERE culled) AS culled,
       round(100.0 * count(*) FILTER (WHERE fossilized) / count(*), 1) AS success_pct
FROM seed_fates GROUP BY ALL;

-- The plateau length (epochs of < 0.5 pp progress) observed when each GERMINATE was decided.
CREATE OR REPLACE VIEW plateau_before_germination AS
SELECT s.run_id, s.step, s.blueprint, r.controller_kind, o.plateau_epochs, o.val_accuracy
FROM steps s JOIN observations o USING (run_id, step) JOIN runs r USING (run_id)
WHERE s.action_coarse = 'GERMINATE';

-- Mean reward and accuracy change by lifecycle stage of the focus seed and action.
CREATE OR REPLACE VIEW reward_by_stage AS
SELECT coalesce(seed_stage, 'NONE') AS seed_stage, action_coarse, count(*) AS steps,
       round(avg(reward), 4) AS mean_reward, round(avg(accuracy_change), 4) AS mean_accuracy_change
FROM steps GROUP BY ALL;

-- Steps joined with their observation features: the table offline training reads.
CREATE OR REPLACE VIEW transitions AS
SELECT s.*, o.* EXCLUDE (run_id, step, epoch)
FROM steps s JOIN observations o USING (run_id, step);

-- Quarantine per file and rule, for a quick look at what failed.
CREATE OR REPLACE VIEW quarantine_summary AS
SELECT source_file, rule, count(*) AS records, min(position) AS first_position, any_value(reason) AS example_reason
FROM quarantine GROUP BY ALL;

-- Reinforcement-learning transitions (docs/rl-contract.md): one row per decision of complete and truncated
-- runs, with what an offline learner or an off-policy estimator needs. s is observations at (run_id, step),
-- s' is observations at (run_id, next_step) (the final observation after the last step). legal_actions are
-- legal in s, next_legal_actions in s'. mu: behaviour_probabilities over the run's own action space (the
-- first 1 + 7 * seed_slots names of world.actions.ALL_ACTIONS, in index order) and propensity = mu(a|s);
-- importance weights are identified only where stochastic is true (forced branch steps are interventions,
-- propensity null). family_id groups a parent with its branches, for splits. seed_slots is the run's host's
-- slot count (its configuration's host.slots; 1 for legacy episodes and runs recorded before hosts had
-- several): the space's prefix property makes slicing the widest probability list exact, and it leaves out
-- the extra slots' columns, which are null in runs stored before the factored action.
CREATE OR REPLACE VIEW rl_transitions AS
SELECT s.run_id, s.step, s.step + 1 AS next_step,
       coalesce(b.parent_run_id, s.run_id) AS family_id,
       b.run_id IS NOT NULL AS is_branch,
       coalesce(r.controller_label, r.controller_kind, r.source_format) AS behaviour,
       r.controller_kind AS behaviour_kind,
       s.action_index, s.action_fine, s.reward, s.accuracy_change,
       s.propensity,
       list_slice([s.prob_wait, s.prob_germinate_conv_light, s.prob_germinate_conv_heavy, s.prob_germinate_attention,
                   s.prob_germinate_norm, s.prob_germinate_depthwise, s.prob_advance, s.prob_cull,
                   s.prob_germinate_conv_light_slot1, s.prob_germinate_conv_heavy_slot1, s.prob_germinate_attention_slot1,
                   s.prob_germinate_norm_slot1, s.prob_germinate_depthwise_slot1, s.prob_advance_slot1, s.prob_cull_slot1,
                   s.prob_germinate_conv_light_slot2, s.prob_germinate_conv_heavy_slot2, s.prob_germinate_attention_slot2,
                   s.prob_germinate_norm_slot2, s.prob_germinate_depthwise_slot2, s.prob_advance_slot2, s.prob_cull_slot2],
                  1, 1 + 7 * slots.seed_slots) AS behaviour_probabilities,
       slots.seed_slots,
       coalesce(s.stochastic, false) AND NOT coalesce(s.forced, false) AS stochastic,
       coalesce(s.forced, false) AS forced,
       s.legal_actions,
       coalesce(lead(s.legal_actions) OVER (PARTITION BY s.run_id ORDER BY s.step), e.final_legal_actions) AS next_legal_actions,
       s.is_last AND e.status = 'complete' AS terminated,
       s.is_last AND e.status = 'truncated' AS truncated,
       r.regime, r.dataset, r.seed, e.final_test_accuracy, e.score, coalesce(r.rent, 0) AS rent
FROM steps s
JOIN runs r USING (run_id)
JOIN episodes e USING (run_id)
LEFT JOIN branches b USING (run_id)
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.source_format LIKE 'tamiyo-raw-run%'
                THEN CAST(coalesce(json_array_length(r.config_json, '$.host.slots'), 1) AS INTEGER) ELSE 1 END AS seed_slots
) slots
WHERE e.status IN ('complete', 'truncated');
