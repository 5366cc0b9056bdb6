"""A Beam job service for one machine that runs as many SDK workers as the job asks for.

``python -m components.clean.job_service --port P`` serves Beam's Job API on ``localhost:P``;
submit with ``clean.runner: PortableRunner`` and ``clean.pipeline_options: ["--job_endpoint=
localhost:P", "--environment_type=EXTERNAL", "--environment_config=localhost:Q",
"--sdk_worker_parallelism=2"]`` against an SDK worker pool on port Q
(``python -m apache_beam.runners.worker.worker_pool_main --service_port=Q``, with the project's
python first on its PATH and the data lake's AWS_* variables in its environment).

Why not Beam's own ``apache_beam.runners.portability.local_job_service_main``: its ``BeamJob``
(Beam 2.77, ``local_job_service.BeamJob._invoke_runner``) builds ``FnApiRunner(provision_info=...)``
and calls ``run_via_runner_api`` directly, skipping ``FnApiRunner.run_pipeline``, the only place
that reads ``--direct_num_workers`` into the runner's worker count. So that service always runs
one SDK worker per environment whatever the options say (``--direct_num_workers`` and
``--sdk_worker_parallelism`` are both ignored; a Beam maintainer: "sdk_worker_parallelism is only
interpreted by Flink/Spark job servers", apache/beam#21839). This service is the same servicer with a job class
whose runner uses ``--sdk_worker_parallelism`` workers, the PortableOptions flag that the Flink and
Spark job servers honour for the same thing: bundles are then split across that many workers
(``ParallelBundleManager``), as a cluster's job server would spread them.

It is a one-machine rehearsal of a Flink or Spark job server (whose jars this project cannot fetch
at run time), not a production runner: one process schedules every stage, on loopback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

log = logging.getLogger("clean.job_service")


def worker_count(options) -> int:
    """The SDK workers a job asks for: ``--sdk_worker_parallelism`` (>= 1; 0, "runner's choice",
    means 1 here)."""
    from apache_beam.options.pipeline_options import PortableOptions

    return max(int(options.view_as(PortableOptions).sdk_worker_parallelism or 1), 1)


def _job_class():
    from apache_beam.portability.api import beam_job_api_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    class ParallelBeamJob(local_job_service.BeamJob):
        """``BeamJob`` whose runner splits bundles over ``--sdk_worker_parallelism`` workers."""

        def _invoke_runner(self):
            self.set_state(beam_job_api_pb2.JobState.RUNNING)
            options = self.pipeline_options()
            runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
            # FnApiRunner takes its worker count only in run_pipeline (from --direct_num_workers),
            # which the job service cannot call (it holds a pipeline proto, not a Pipeline); set
            # the attribute run_pipeline sets. Fail loudly if a Beam upgrade renames it.
            if not hasattr(runner, "_num_workers"):
                raise RuntimeError("clean.job_service: FnApiRunner has no _num_workers (Beam changed)")
            runner._num_workers = worker_count(options)
            log.info("job %s: %d SDK workers per environment", self._job_id, runner._num_workers)
            return runner.run_via_runner_api(self._pipeline_proto, options)

    return ParallelBeamJob


def serve(port: int, staging_dir: str | None = None, stop: threading.Event | None = None) -> None:
    """Serve the Job API on ``localhost:port`` until ``stop`` is set (or SIGTERM/SIGINT)."""
    from apache_beam.runners.portability import local_job_service

    servicer = local_job_service.LocalJobServicer(staging_dir, beam_job_type=_job_class())
    bound = servicer.start_grpc_server(port)
    log.info("clean.job_service: listening for Beam jobs on localhost:%d", bound)
    stop = stop or threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        servicer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.clean.job_service",
        description="Beam Job API on localhost running --sdk_worker_parallelism SDK workers per job "
        "(a one-machine rehearsal of a Flink/Spark job server).",
    )
    parser.add_argument("--port", type=int, required=True, help="port of the Job API (0 = any free)")
    parser.add_argument("--staging_dir", default=None, help="folder for staged artifacts (default: a temp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(args.port, args.staging_dir, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
