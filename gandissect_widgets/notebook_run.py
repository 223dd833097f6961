"""Run a saved notebook headless in a kernel so that its widget state is captured.

JupyterLab saves a notebook's widget *outputs* (which model each output shows) but not the
models' *state* unless its "Save Widget State Automatically" setting is on; VS Code and a cleared
notebook save none either. :func:`missing_state` counts the widget outputs a page could not
draw; :func:`execute` runs every cell in a fresh kernel (a progress bar per cell) and keeps the
state, as ``nbconvert --execute`` does.

>>> import nbformat
>>> nb = nbformat.v4.new_notebook()
>>> nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
>>> missing_state(nb), never_run(nb)
(0, True)
"""

from __future__ import annotations

import pathlib
import time

__all__ = ["NotebookError", "execute", "missing_state", "never_run", "widget_views"]

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


class NotebookError(ValueError):
    """A cell of the notebook failed (its number and error in the message), or no kernel."""


def widget_views(nb) -> list[str]:
    """The model ids of the notebook's widget outputs, in order."""
    ids = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if isinstance(view, dict) and "model_id" in view:
                ids.append(view["model_id"])
    return ids


def saved_state(nb) -> dict:
    """The widget models' state saved in the notebook's metadata ({} when none)."""
    return nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {}) or {}


def missing_state(nb) -> int:
    """How many widget outputs have no saved state (a page shows their static picture)."""
    state = saved_state(nb)
    return sum(1 for m in widget_views(nb) if m not in state)


def never_run(nb) -> bool:
    """True when the notebook has code and no code cell has an output (cleared or never run)."""
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    return bool(code) and not any(c.get("outputs") for c in code)


def _kernel_name(nb) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    name = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    if name in specs:
        return name
    if "python3" in specs:
        return "python3"
    raise NotebookError(
        f"no Jupyter kernel {name!r} to run the notebook; kernels are: {', '.join(specs)}"
    )


def execute(nb, folder, *, timeout: float = 600, progress: bool = True) -> float:
    """Run every cell of ``nb`` in place in a new kernel started in ``folder``; the widget
    state goes into ``nb.metadata``. Returns the seconds it took. Raises
    :class:`NotebookError` naming the first failing cell (1-based, counting every cell) and its
    error; cells after it are not run."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    code = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
    bar = tqdm(total=code, unit="cell", desc="running the notebook", disable=not progress)
    at = {"cell": 0}

    def start(cell, cell_index, **_):
        at["cell"] = cell_index + 1
        bar.set_postfix_str(f"cell {cell_index + 1}/{len(nb.cells)}")

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=_kernel_name(nb),
        resources={"metadata": {"path": str(pathlib.Path(folder))}},
        store_widget_state=True,
        on_cell_start=start,
        on_cell_executed=lambda **_: bar.update(1),
    )
    begin = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        raise NotebookError(
            f"cell {at['cell']} failed, so the export stopped: {err.ename}: {err.evalue}"
        ) from None
    except (CellTimeoutError, DeadKernelError) as err:
        why = f"cell {at['cell']} did not finish, so the export stopped: {err}"
        raise NotebookError(why) from None
    finally:
        bar.close()
    return time.perf_counter() - begin
