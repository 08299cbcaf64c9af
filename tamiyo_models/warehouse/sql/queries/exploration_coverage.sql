-- Purpose: counterfactual coverage — per coarse state bucket (epoch//5, plateau capped at 5, active seed), how many distinct actions were logged.
SELECT CAST(o.epoch // 5 AS INTEGER) AS epoch_bucket, least(o.plateau_epochs, 5) AS plateau_bucket,
       o.has_active_seed, count(*) AS steps, count(DISTINCT s.action_fine) AS distinct_actions,
       list(DISTINCT s.action_coarse ORDER BY s.action_coarse) AS coarse_actions
FROM steps s JOIN observations o USING (run_id, step)
GROUP BY ALL
ORDER BY ALL;
