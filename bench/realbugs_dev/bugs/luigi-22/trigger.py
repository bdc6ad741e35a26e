import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

from luigi.scheduler import CentralPlannerScheduler


def boot_scheduler(disconnect_delay, workers):
    """Start a central scheduler, let its workers announce themselves, run the first housekeeping."""
    scheduler = CentralPlannerScheduler(worker_disconnect_delay=disconnect_delay)
    for worker_id, info in workers.items():
        scheduler.add_worker(worker_id, info)
    # Periodic housekeeping the scheduler server runs on a timer.
    scheduler.prune()
    return scheduler


if __name__ == "__main__":
    # One scheduler per environment, each with its own worker fleet and disconnect delay.
    environments = [
        (
            60,
            {
                "worker-etl-01": {"host": "etl-01.internal", "username": "luigi", "pid": 4121, "workers": 4},
                "worker-etl-02": {"host": "etl-02.internal", "username": "luigi", "pid": 3307, "workers": 4},
            },
        ),
        (
            300,
            {
                "worker-reporting": {"host": "report-7.internal", "username": "reports", "pid": 918, "workers": 1},
            },
        ),
        (
            15,
            {
                "ci-runner-a": {"host": "ci-a.build", "username": "ci", "pid": 77, "workers": 2},
                "ci-runner-b": {"host": "ci-b.build", "username": "ci", "pid": 78, "workers": 2},
                "ci-runner-c": {"host": "ci-c.build", "username": "ci", "pid": 79, "workers": 8},
            },
        ),
        (
            900,
            {
                "ml-train-gpu0": {"host": "gpu-0.ml", "username": "mlops", "pid": 20211, "workers": 1},
                "ml-train-gpu1": {"host": "gpu-1.ml", "username": "mlops", "pid": 20244, "workers": 1},
            },
        ),
    ]
    last_error = None
    for disconnect_delay, workers in environments:
        try:
            scheduler = boot_scheduler(disconnect_delay, workers)
            print("pruned; workers registered:", len(workers), "delay", disconnect_delay)
        except Exception as exc:
            sentry_sdk.capture_exception()
            last_error = exc
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
