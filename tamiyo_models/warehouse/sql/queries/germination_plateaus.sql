-- Purpose: distribution of plateau lengths (epochs without 0.5 pp progress) at the moment a seed was germinated.
SELECT controller_kind, plateau_epochs, count(*) AS germinations,
       round(avg(val_accuracy), 2) AS mean_val_accuracy
FROM plateau_before_germination
GROUP BY ALL
ORDER BY controller_kind, plateau_epochs;
