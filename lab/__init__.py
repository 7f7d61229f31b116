"""kernelkeeper.lab: a jupyter_server extension for JupyterLab users whose server talks to a
kernelkeeper gateway (`--gateway-url`)."""


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """`jupyter server extension enable kernelkeeper.lab` (or jpserver_extensions) finds the
    extension here; importing this package does not import jupyter_server."""
    return [{"module": "kernelkeeper.lab.extension"}]
