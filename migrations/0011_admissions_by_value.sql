-- One value's admissions, for reading back an admission log the cache evicted to stay within
-- its memory budget (the cache reads it only after an eviction, and only for a value it may
-- have evicted).
CREATE INDEX admissions_by_value ON admissions (rate_limit_id, value, at_ms);
