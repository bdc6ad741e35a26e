import os
import sentry_sdk
sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], release=os.environ["SENTRY_RELEASE"],
                include_local_variables=True, default_integrations=True)

import tempfile

import luigi

OUTPUT_DIR = tempfile.mkdtemp(prefix="daily-report-")


class DailyReport(luigi.Task):
    """Nightly job started from cron as `python daily_report.py`."""
    report_name = luigi.Parameter(default="revenue")
    currency = luigi.Parameter(default="EUR")

    def output(self):
        return luigi.LocalTarget(os.path.join(OUTPUT_DIR, "%s-%s.csv" % (self.report_name, self.currency)))

    def run(self):
        with self.output().open("w") as f:
            f.write("region,total\neu-west,1250.40\nus-east,980.10\n")


if __name__ == "__main__":
    luigi.run(main_task_cls=DailyReport, local_scheduler=True)
