import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

from tornado.ioloop import IOLoop


def run_job_loop(job_name, batch, delay_seconds):
    """Run a batch of jobs on a dedicated IOLoop that must be the current loop."""
    loop = IOLoop(make_current=True)
    done = []

    def process(item):
        done.append((job_name, item))
        if len(done) == len(batch):
            loop.stop()

    for i, item in enumerate(batch):
        loop.call_later(delay_seconds * i, process, item)
    loop.start()
    loop.close()
    return done


if __name__ == "__main__":
    result = run_job_loop("nightly-export", ["orders", "customers", "invoices"], 0.01)
    print("processed", len(result), "items")
