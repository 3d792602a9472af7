-- luacheck for processors/store/scripts (`make lint`). A script runs after the constants
-- that processors/store/lua.py makes and the shared files it names (prelude.lua, then for
-- the recounts count_buckets.lua and compare.lua): their top-level names are this file's
-- globals. tests/unit/test_lua_files.py keeps the lists equal to the files.
std = "lua51"
max_line_length = 100
unused_secondaries = false

local constants = {
  "BIDX_BY_STATUS", "CONTACT", "CALL", "BATCH", "CONTACT_ORDER", "LOAD", "ONE_BUCKET", "HASH_MOD",
  "STATS_PART", "BATCHES_PART", "BATCH_PART",
  "CONTACT_BUCKET_PART", "RECORD_BUCKET_PART", "SERIES_INDEX_PART", "PROGRESS_PART",
  "SERIES_SLOT", "RETAIN", "TERMINAL", "PROGRESS_RETAIN", "FIELDS_PER_EVENT",
}
local shared = {
  -- batch_codec.lua
  "CONTACT_FIELD", "BATCH_CODE", "DIGITS", "base36", "integer", "PACKED_BATCH",
  "unpack_batch", "pack_batch", "EMPTY_BATCH", "legacy_batch", "packed_batch",
  -- prelude.lua
  "STATS", "FENCE", "LAYOUT", "SHADOW", "BIDX", "unpack", "TAG", "BATCHES",
  "LEGACY_BATCH_PREFIX", "CALL_FIELD", "BUCKET_PREFIX", "pending", "pending_keys", "bump",
  "flush_bumps", "shadow_at", "shadow", "batch_cache", "batch_dirty", "batch_order",
  "batch_moved", "batch_changed", "batch_state", "new_batch", "delete_batch", "migrate_score",
  "flush_batches", "tally", "batch_tally", "contact_delta", "record_delta", "parse_contact",
  "parse_record", "minute36", "base36_minute", "SERIES_INDEX", "SPAN", "clock_ms", "now_ms",
  "PROGRESS_PREFIX", "progress_keys", "progress_delta", "flush_progress", "series",
  "series_keys", "minute_buckets", "buckets_of", "shadow_series", "series_delta", "SIX",
  "unpack_series", "pack_series", "flush_series", "numbers", "ids", "batch_number",
  "batch_id_of", "layouts", "layout", "bucket_of", "hash_of", "count_entry", "split",
  "resize", "save_layouts", "locate", "drop_if_unnamed", "write_all",
  -- count_buckets.lua
  "count_buckets",
  -- compare.lua
  "dry", "census", "out", "fixes", "text", "report", "drift", "reconcile_counters",
}

read_globals = { "redis", "KEYS", "ARGV" }
for _, name in ipairs(constants) do read_globals[#read_globals + 1] = name end
globals = shared

-- the shared files define names for the scripts after them: unused here is expected
for _, name in ipairs({ "batch_codec", "prelude", "count_buckets", "compare" }) do
  files["processors/store/scripts/" .. name .. ".lua"] = { ignore = { "211", "212", "231", "311" } }
end
