"""The local node: pods bound to it run as processes of this machine (see kubelet.py).

`kubelet` registers the Node and runs a `pod_worker` per pod; `podspec` and `translate`
turn a container into a local process (its image's environment, paths under its
mounts, Service names on loopback); `supervisor` and `keeper` run those processes so
that none outlives the node.
"""
