"""kernelkeeper: highly available Jupyter kernels on Kubernetes."""
__version__ = "0.1.0"
