"""The local provider: real control-plane processes (etcd, kube-apiserver, ...) on this machine."""
