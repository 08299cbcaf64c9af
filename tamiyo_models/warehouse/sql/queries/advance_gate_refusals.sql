-- Purpose: how often ADVANCE was refused by a quality gate, per stage the seed was leaving, with an example reason.
SELECT gate_from_stage, count(*) AS advances, count(*) FILTER (WHERE NOT gate_passed) AS refused,
       round(100.0 * count(*) FILTER (WHERE NOT gate_passed) / count(*), 1) AS refused_pct,
       any_value(gate_reason) FILTER (WHERE NOT gate_passed) AS example_refusal
FROM steps
WHERE action_coarse = 'ADVANCE' AND gate_passed IS NOT NULL
GROUP BY ALL
ORDER BY advances DESC;
