#!/bin/sh
# Regenerates docs/reports/tree_transforms.md from the newest recorded asv run of this machine:
# first loop vs batched (the claim's pair, path_map as an extra column), then batched vs path_map.
set -e
cd "$(dirname "$0")/../.."
out=docs/reports/tree_transforms.md
python -m perflab report \
    -b ApplyShardingRules.time_apply ApplyShardingRules.track_time_per_layer \
       ApplyShardingRules.track_matches ShardModel.time_shard \
    --before loop --after batched --extra path_map --rows layers \
    --format markdown --output "$out.part1"
python -m perflab report \
    -b ApplyShardingRules.time_apply ShardModel.time_shard \
    --before batched --after path_map --rows layers \
    --format markdown --output "$out.part2"
{ cat "$out.part1"; echo; cat "$out.part2"; } > "$out"
rm -f "$out.part1" "$out.part2"
