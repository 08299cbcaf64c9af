-- Purpose: the 20 episodes with the highest final accuracy, with their controller, dataset and seeds.
SELECT run_id, controller_kind, dataset, max_epochs, final_val_accuracy, best_val_accuracy,
       seeds_created, seeds_fossilized, seeds_culled, "return"
FROM episode_summary
WHERE status = 'complete'
ORDER BY final_val_accuracy DESC
LIMIT 20;
