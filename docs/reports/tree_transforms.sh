#!/bin/sh
# Regenerates docs/reports/tree_transforms.md from the recorded asv runs of this machine.
# WALL: the full run (time_apply, the tracks, ShardModel); CPU: the run of time_apply_cpu,
# recorded after that method was added. Each table names its commit. OUT: the file written
# (docs/reports/tree_transforms_rerun.md is WALL=CPU=f165dbe8, a second run of the whole class).
set -e
cd "$(dirname "$0")/../.."
WALL=${WALL:-2d344b12}
CPU=${CPU:-1c71c70}
out=${OUT:-docs/reports/tree_transforms.md}
report() { python -m perflab report --format markdown --rows layers "$@"; }
{
    report --commit "$WALL" -b ApplyShardingRules.time_apply ApplyShardingRules.track_time_per_layer \
        ApplyShardingRules.track_matches --before loop --after batched --extra path_map
    echo
    report --commit "$CPU" -b ApplyShardingRules.time_apply_cpu --before loop --after batched --extra path_map
    echo
    report --commit "$CPU" -b ApplyShardingRules.time_apply_cpu --before batched --after path_map
    echo
    report --commit "$WALL" -b ApplyShardingRules.time_apply --before batched --after path_map
    echo
    report --commit "$WALL" -b ShardModel.time_shard --before loop --after batched --extra path_map
} > "$out"
