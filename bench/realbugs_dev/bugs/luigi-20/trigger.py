import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import json

import luigi


class ExportOrders(luigi.Task):
    """Export one day of orders; the batch size only tunes performance."""

    region = luigi.Parameter()
    day = luigi.DateParameter()
    batch_size = luigi.IntParameter(default=500, significant=False)

    def run(self):
        pass


def requeue(task):
    """Send a task through the job queue and rebuild it on the consumer side."""
    payload = json.dumps({"family": task.task_family, "params": task.to_str_params()})
    message = json.loads(payload)
    return ExportOrders.from_str_params(message["params"])


if __name__ == "__main__":
    parse_day = luigi.DateParameter().parse
    tasks = [
        ExportOrders(region="eu-west", day=parse_day("2024-03-18"), batch_size=2000),
        ExportOrders(region="us-east", day=parse_day("2024-03-19"), batch_size=250),
        ExportOrders(region="ap-southeast", day=parse_day("2023-12-31"), batch_size=10000),
        ExportOrders(region="sa-east", day=parse_day("2024-02-29"), batch_size=1),
    ]
    last_error = None
    for task in tasks:
        try:
            restored = requeue(task)
            print("restored", restored.task_id, "batch_size", restored.batch_size)
        except Exception as exc:
            sentry_sdk.capture_exception()
            last_error = exc
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
