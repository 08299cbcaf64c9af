-- Purpose: what ingestion refused, per file and rule, with an example reason (empty when all went well).
SELECT source_file, rule, records, first_position, example_reason
FROM quarantine_summary
ORDER BY source_file, records DESC;
