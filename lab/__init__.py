"""kernelkeeper.lab: a jupyter_server extension for JupyterLab users whose server talks to a
kernelkeeper gateway (`--gateway-url`)."""
