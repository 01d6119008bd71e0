"""imagelake's scheduled jobs, driven by Apache Airflow.

For teams that already run Airflow: each task calls `imagelake jobs run NAME --interval ...` for
the run's data interval, on a machine (or pod) that has the `imagelake` binary and its settings
(IMAGELAKE_CONFIG, or IMAGELAKE_* variables, in the worker's environment). Switch imagelake's own
scheduler off there (`[jobs] scheduler = false`), so each job has one scheduler.

`imagelake jobs run` takes the job's lease, records the attempt in imagelake's run history
(`imagelake jobs history NAME`, `GET /v1/admin/jobs/NAME/runs`), and exits
- 0 when the run succeeded,
- 75 when the interval's input is not complete yet (the lake writer has not marked the hour) or
  another scheduler holds the job: Airflow's retries try again,
- 1 when the run failed.

The hourly DAG's intervals are the hours (data_interval_start is 10:10 for the run after 11:10);
imagelake takes any time inside the hour and runs that hour, so the ten minutes let the lake
writer close the hour first. Backfills: `airflow dags backfill` runs the same task per hour, or
let imagelake do it beside its schedule: `imagelake jobs backfill lake-transform --from ... --to
...`.
"""

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.sdk import DAG
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator
from airflow.timetables.interval import CronDataIntervalTimetable

IMAGELAKE = "imagelake"

default_args = {
    "retries": 6,
    "retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=50),
}


def job(name: str, interval: str) -> BashOperator:
    return BashOperator(
        task_id=name.replace("-", "_"),
        bash_command=f"{IMAGELAKE} jobs run {name} --interval '{interval}'",
        append_env=True,
    )


with DAG(
    dag_id="imagelake_hourly",
    description="imagelake's lake transforms and lake retention, one run per hour",
    schedule=CronDataIntervalTimetable("10 * * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 30),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["imagelake"],
):
    transform = job("lake-transform", "{{ data_interval_start | ts }}")
    retention = job("lake-retention", "{{ data_interval_start | ts }}")
    transform >> retention

with DAG(
    dag_id="imagelake_image_retention",
    description="imagelake's retention sweep of images past their retention",
    schedule=CronDataIntervalTimetable("*/5 * * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 30),
    catchup=False,
    max_active_runs=1,
    default_args={**default_args, "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["imagelake"],
):
    job("image-retention", "{{ data_interval_start | ts }}")
