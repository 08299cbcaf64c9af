-- Purpose: how often each coarse action was taken under each controller kind (share of steps, %).
SELECT controller_kind, action_coarse, sum(steps) AS steps, round(sum(share_pct), 2) AS share_pct
FROM action_distribution
GROUP BY ALL
ORDER BY controller_kind, steps DESC;
