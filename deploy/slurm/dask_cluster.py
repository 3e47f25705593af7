#!/usr/bin/env python3
"""A Dask cluster on Slurm for the build (dask-jobqueue's SLURMCluster): CPU jobs whose worker
processes take the class runs (one run at a time each), and GPU jobs in a GPU partition (one GPU,
the Dask resource ``GPU=1``) that take the training run. Run it on the head node (where the build
or the Dagster daemon runs), leave it running, and point the build at the address it prints:

    pip install -e ".[hpc]"
    python deploy/slurm/dask_cluster.py --account mylab --cpu-partition cpu --cpu-jobs 16 \\
        --gpu-partition gpu --gpu-jobs 1 --venv /shared/cytoimagenet-assets/.venv
    export CYTOIMAGENET_DASK=tcp://<head>:8786            # printed, and written to --address-file
    python -m cytoimagenet_assets.build                    # or the daemon: UI backfills go there too

Every job sees the data home and DAGSTER_HOME at the paths they have here (a shared file system) and
the instance database (PostgreSQL: deploy/postgres). ``--dry-run`` prints the two job scripts only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--account", help="Slurm account (-A)")
    parser.add_argument("--cpu-partition", default="cpu")
    parser.add_argument("--cpu-jobs", type=int, default=4, help="CPU jobs to start (each --cores worker processes)")
    parser.add_argument("--cores", type=int, default=16, help="cores per CPU job: one worker process per core")
    parser.add_argument("--memory", default="64GB", help="memory per CPU job")
    parser.add_argument("--gpu-partition", default="gpu")
    parser.add_argument("--gpu-jobs", type=int, default=1)
    parser.add_argument("--gpu-cores", type=int, default=8)
    parser.add_argument("--gpu-memory", default="64GB")
    parser.add_argument("--gres", default="gpu:1", help="GPUs per GPU job (--gres)")
    parser.add_argument("--walltime", default="24:00:00")
    parser.add_argument("--venv", default=str(Path(sys.prefix)), help="the project's virtual environment, on the shared file system")
    parser.add_argument("--port", type=int, default=8786)
    parser.add_argument("--address-file", type=Path, default=Path("~/.cytoimagenet-dask").expanduser())
    parser.add_argument("--dry-run", action="store_true", help="print the CPU and GPU job scripts, submit nothing")
    return parser.parse_args(argv)


def prologue(venv: str) -> list[str]:
    """What each job runs before its workers: the project's environment and the settings the runs share
    (secrets such as DAGSTER_PG_PASSWORD come from the jobs' own environment, never from here)."""
    shared = ["CYTOIMAGENET_HOME", "CYTOIMAGENET_CATALOG", "CYTOIMAGENET_DB_URL", "DAGSTER_HOME"]
    exports = [f"export {name}={shlex.quote(os.environ[name])}" for name in shared if os.environ.get(name)]
    return [f"source {shlex.quote(venv)}/bin/activate", *exports]


def cpu_cluster(args: argparse.Namespace):
    """The scheduler (on this machine) and the CPU jobs' template; ``scale(jobs=n)`` submits them."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster(
        name="cytoimagenet-cpu",
        queue=args.cpu_partition,
        account=args.account,
        cores=args.cores,
        processes=args.cores,  # one worker process per core, one thread each: one Dagster run at a time
        memory=args.memory,
        walltime=args.walltime,
        job_script_prologue=prologue(args.venv),
        python=f"{args.venv}/bin/python",
        scheduler_options={"port": args.port, "dashboard_address": ":8787"},
    )


def gpu_job_script(args: argparse.Namespace, scheduler_address: str) -> str:
    """A GPU job's script: one worker with the GPU resource, joined to ``scheduler_address``."""
    from dask_jobqueue.slurm import SLURMJob

    job = SLURMJob(
        scheduler=scheduler_address,
        name="cytoimagenet-gpu",
        queue=args.gpu_partition,
        account=args.account,
        cores=1,  # one run at a time on the GPU worker ...
        job_cpu=args.gpu_cores,  # ... with the job's cores for its data loading
        processes=1,
        memory=args.gpu_memory,
        walltime=args.walltime,
        job_extra_directives=[f"--gres={args.gres}"],
        worker_extra_args=["--resources", "GPU=1"],
        job_script_prologue=prologue(args.venv),
        python=f"{args.venv}/bin/python",
    )
    return job.job_script()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cluster = cpu_cluster(args)
    gpu_script = gpu_job_script(args, cluster.scheduler_address)
    if args.dry_run:
        print(cluster.job_script())
        print(gpu_script)
        cluster.close()
        return 0
    cluster.scale(jobs=args.cpu_jobs)
    for _ in range(args.gpu_jobs):
        subprocess.run(["sbatch"], input=gpu_script, text=True, check=True)
    args.address_file.write_text(cluster.scheduler_address + "\n")
    print(f"export CYTOIMAGENET_DASK={cluster.scheduler_address}   (dashboard: {cluster.dashboard_link}); Ctrl-C stops the cluster")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()  # cancels the CPU jobs; GPU jobs end when the scheduler goes away
    return 0


if __name__ == "__main__":
    sys.exit(main())
