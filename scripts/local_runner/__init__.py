"""Run the rendered Kubernetes manifests as local processes: the engine behind `make demo`.

`plan` turns the output of `kubectl kustomize` into one `ContainerPlan` per process
(command, environment, working directory, ports, readiness probe), refusing what it
cannot emulate; `supervisor` runs those processes; `demo` puts the two together in the
order a cluster reaches the workloads.
"""
