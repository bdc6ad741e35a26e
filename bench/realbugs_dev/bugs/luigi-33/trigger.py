import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import datetime
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
            f.write("store,amount\n%s,1520.75\n" % self.store)


def plan_exports(stores, num_threads):
    return [ExportSales(store, num_threads) for store in stores]


if __name__ == "__main__":
    tasks = plan_exports(["berlin-01", "paris-03"], 8)
    ok = luigi.build(tasks, local_scheduler=True)
    print("build ok:", ok)
