import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

from luigi.scheduler import CentralPlannerScheduler


def register_workers(scheduler, workers):
    """Workers announce themselves to the central scheduler when they start."""
    for worker_id, info in workers.items():
        scheduler.add_worker(worker_id, info)


if __name__ == "__main__":
    scheduler = CentralPlannerScheduler(worker_disconnect_delay=60)
    register_workers(scheduler, {
        "worker-etl-01": {"host": "etl-01.internal", "username": "luigi", "pid": 4121, "workers": 4},
        "worker-etl-02": {"host": "etl-02.internal", "username": "luigi", "pid": 3307, "workers": 4},
    })
    # Periodic housekeeping the scheduler server runs on a timer.
    scheduler.prune()
    print("pruned; workers registered:", 2)
