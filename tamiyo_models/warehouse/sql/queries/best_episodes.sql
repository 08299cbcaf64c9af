-- Purpose: the 20 episodes with the highest score (the test accuracy, charged for growth where the run paid
-- rent; the split no controller saw), with their raw accuracy, rent, parameters, controller, dataset and seeds;
-- runs recorded before test splits existed are ranked by validation accuracy.
SELECT run_id, controller_kind, controller_label, dataset, regime, max_epochs, score, final_test_accuracy, rent,
       final_parameters, final_val_accuracy, best_val_accuracy, seeds_created, seeds_fossilized, seeds_culled, "return"
FROM episode_summary
WHERE status = 'complete' AND NOT is_branch
ORDER BY coalesce(score, final_val_accuracy) DESC
LIMIT 20;
