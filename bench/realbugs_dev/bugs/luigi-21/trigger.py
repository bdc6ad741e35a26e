import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import tempfile

import luigi

OUTPUT_DIR = tempfile.mkdtemp(prefix="reports-")


class Report(luigi.Task):
    """A report job started from cron as `python reports.py`; subclasses pick the data."""

    currency = luigi.Parameter(default="EUR")
    rows = "region,total\n"

    def output(self):
        return luigi.LocalTarget(os.path.join(OUTPUT_DIR, "%s-%s.csv" % (self.task_family, self.currency)))

    def run(self):
        with self.output().open("w") as f:
            f.write(self.rows)


class DailyRevenueReport(Report):
    rows = "region,total\neu-west,1250.40\nus-east,980.10\n"


class DailyRefundsReport(Report):
    currency = luigi.Parameter(default="USD")
    rows = "region,refunded\nus-east,120.00\n"


class WeeklyInventoryReport(Report):
    warehouse = luigi.Parameter(default="rotterdam")
    rows = "sku,on_hand\nSKU-881,420\nSKU-112,0\nSKU-907,1337\n"


class MonthlyChurnReport(Report):
    currency = luigi.Parameter(default="GBP")
    rows = "plan,churned\nbasic,31\npro,4\n"


def run_report(report_cls):
    """Run one report with the local scheduler, taking its parameters from the command line."""
    return luigi.run(main_task_cls=report_cls, local_scheduler=True)


if __name__ == "__main__":
    # The reports run one after another in this cron process: skip luigi's
    # "same command already running" process lock between them.
    luigi.configuration.get_config().set("core", "no_lock", "true")
    last_error = None
    for report_cls in [DailyRevenueReport, DailyRefundsReport, WeeklyInventoryReport, MonthlyChurnReport]:
        try:
            ok = run_report(report_cls)
            print(report_cls.__name__, "ok:", ok)
        except Exception as exc:
            sentry_sdk.capture_exception()
            last_error = exc
    sentry_sdk.flush()
    if last_error is not None:
        raise last_error
