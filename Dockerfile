# The kernelkeeper image: the `kernelkeeper` command (operator, gateway) and the in-pod kernel
# launcher with ipykernel, run as an unprivileged user.
#
#   docker build -t kernelkeeper:0.1.0 .
#
# BASE_IMAGE may be any Debian-like image with Python >= 3.11 and its venv module. The local
# environment builds this same file offline with buildah, on a Debian base it makes itself
# (images/README.md).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG KERNELKEEPER_UID=1000
ENV VIRTUAL_ENV=/opt/kernelkeeper \
    PATH=/opt/kernelkeeper/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, in a layer of their own: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml /src/pyproject.toml
RUN python3 -m venv "$VIRTUAL_ENV" \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md /src/README.md
COPY kernelkeeper /src/kernelkeeper
COPY crds /src/crds
COPY kube /src/kube
COPY operator /src/operator
COPY gateway /src/gateway
COPY kernel /src/kernel
COPY local /src/local
COPY client /src/client
COPY lab /src/lab
RUN pip install --no-deps /src \
 && rm -rf /src \
 && useradd --uid "$KERNELKEEPER_UID" --gid 0 --create-home --home-dir /home/jovyan --shell /bin/bash jovyan

USER ${KERNELKEEPER_UID}:0
WORKDIR /home/jovyan
ENV HOME=/home/jovyan
# The kernel Pod's launcher; the operator and the gateway Deployments set their own command.
CMD ["python", "-m", "kernelkeeper.kernel"]
