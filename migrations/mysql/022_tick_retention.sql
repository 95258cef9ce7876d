-- The ticks of recurring schedules (one row per fired slot, keeping a slot from firing twice)
-- are pruned by retention like the jobs they made: by fire_at, past retentionDays
-- (lib/driver/portable/admin.ts retentionLeftovers). Without it they were kept forever: a
-- per-second schedule adds 86,400 rows a day.
CREATE INDEX {{prefix}}schedule_ticks_fired ON {{prefix}}schedule_ticks (fire_at);
