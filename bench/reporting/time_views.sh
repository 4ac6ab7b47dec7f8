#!/usr/bin/env bash
# Times every reporting view as a client sees it (docs/benchmarks.md, "Reporting views"):
# one psql session, `\timing`, each view read once to warm up and then five times; prints
# the median per view in ms. Arguments go to psql, e.g. for a BI login of an instance:
#
#   PGPASSWORD=… bench/reporting/time_views.sh -h <data dir>/pg/run -U <login> -d attune
set -euo pipefail
views="executions_per_hour action_duration action_failure_rate rule_failure_rate rule_hit_rate
       event_to_start_latency inquiry_response_times worker_utilisation queue_depth"
times=$(
    {
        echo '\timing on'
        for v in $views; do
            for _ in 1 2 3 4 5 6; do echo "SELECT * FROM attune_reporting.$v \\g /dev/null"; done
        done
    } | psql -X -q "$@" 2>&1 | awk '/^Time:/ {print $2}'
)
i=0
for v in $views; do
    median=$(echo "$times" | sed -n "$((i * 6 + 2)),$((i * 6 + 6))p" | sort -n | sed -n 3p)
    printf '%-24s %s ms\n' "$v" "$median"
    i=$((i + 1))
done
