"""The peer of `attune bench --mode workflow --scenario py40`: a Prefect 3 flow of 40
sequential tasks that each sleep 8 ms, on Prefect's ephemeral local server. One warm-up
run, then RUNS timed runs (default 3): prints each run's wall time (flow call -> return)
and the median. Run with `bench/peers/prefect/run.sh` (it makes the virtualenv).
"""
import os
import statistics
import time

from prefect import flow, task

TASKS = 40


@task
def work(i: int) -> int:
    time.sleep(0.008)
    return i


@flow
def chain40() -> int:
    n = 0
    for i in range(TASKS):
        n = work(i)
    return n


if __name__ == "__main__":
    runs = int(os.environ.get("RUNS", "3"))
    chain40()  # warm-up: starts the ephemeral server
    times = []
    for run in range(1, runs + 1):
        started = time.perf_counter()
        chain40()
        took = time.perf_counter() - started
        times.append(took)
        print(f"prefect run {run}: {took:.3f} s")
    print(f"prefect median of {runs}: {statistics.median(times):.3f} s")
