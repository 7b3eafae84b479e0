"""Kubernetes access: the only package that imports lightkube.

``credentials`` parses and validates kubeconfigs into self-contained
credentials; ``client`` opens clients and probes clusters; ``nodes`` manages
the Node objects of simulated (kwok) nodes.
"""
