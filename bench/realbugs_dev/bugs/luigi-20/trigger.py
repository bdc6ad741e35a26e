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


def enqueue(task):
    """Serialize a task the way a job queue stores it."""
    return json.dumps({"family": task.task_family, "params": task.to_str_params()})


def dequeue(payload):
    """Rebuild the task on the consumer side."""
    message = json.loads(payload)
    return ExportOrders.from_str_params(message["params"])


if __name__ == "__main__":
    task = ExportOrders(region="eu-west", day=luigi.DateParameter().parse("2024-03-18"), batch_size=2000)
    payload = enqueue(task)
    restored = dequeue(payload)
    print("restored", restored.task_id, "batch_size", restored.batch_size)
