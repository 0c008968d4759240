"""The two ways a local run stops: a manifest it refuses, a workload that fails."""


class RefusedError(Exception):
    """The rendering asks for something the local runner cannot emulate, or names something that does not exist.

    `workload` is `Kind/name` (with the replica or container where it helps), so the
    message says where to look in the manifests.
    """

    def __init__(self, workload: str, message: str):
        super().__init__(f"{workload}: {message}")
        self.workload = workload
        self.message = message


class WorkloadFailedError(Exception):
    """A workload ran and failed: a job past its backoff limit, a server that died or never became ready."""

    def __init__(self, workload: str, message: str, last_lines: list[str] | None = None):
        super().__init__(f"{workload}: {message}")
        self.workload = workload
        self.message = message
        self.last_lines = last_lines or []
