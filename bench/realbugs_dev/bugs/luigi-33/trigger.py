import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import tempfile

import luigi

OUTPUT_DIR = tempfile.mkdtemp(prefix="sales-export-")


class ExportSales(luigi.Task):
    """Export one store's sales; the thread count does not change the result."""

    store = luigi.Parameter()
    num_threads = luigi.IntParameter(significant=False)

    def output(self):
        return luigi.LocalTarget(os.path.join(OUTPUT_DIR, "sales-%s.csv" % self.store))

    def run(self):
        with self.output().open("w") as f:
            f.write("store,amount,threads\n%s,1520.75,%d\n" % (self.store, self.num_threads))


def export_store(store, num_threads):
    """Plan one store's export (positional parameters) and run it with the local scheduler."""
    task = ExportSales(store, num_threads)
    return luigi.build([task], local_scheduler=True)


if __name__ == "__main__":
    # Stores to export tonight, with a thread count sized to each store's volume.
    stores = [("berlin-01", 8), ("paris-03", 4), ("madrid-07", 16), ("warsaw-02", 2)]
    last_error = None
    for store, num_threads in stores:
        try:
            ok = export_store(store, num_threads)
            print(store, "build ok:", ok)
        except Exception as exc:
            sentry_sdk.capture_exception()
            last_error = exc
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
