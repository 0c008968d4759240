"""The local Kubernetes cluster: a real control plane and real operators, built from pinned Go modules."""
