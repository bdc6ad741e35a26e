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
    IOLoop.clear_current()
    return done


if __name__ == "__main__":
    # The nightly jobs of a small batch service, each on its own loop.
    jobs = [
        ("nightly-export", ["orders", "customers", "invoices"], 0.01),
        ("hourly-rollup", ["pageviews", "sessions"], 0.02),
        ("cache-warmup", ["homepage", "catalog/shoes", "catalog/bags", "search/top", "deals"], 0.0),
        ("gdpr-purge", ["user:1187"], 0.05),
    ]
    last_error = None
    for job_name, batch, delay_seconds in jobs:
        try:
            result = run_job_loop(job_name, batch, delay_seconds)
            print(job_name, "processed", len(result), "items")
        except Exception as exc:
            sentry_sdk.capture_exception()
            last_error = exc
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
