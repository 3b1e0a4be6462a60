"""Executes notebooks headless, in order, and fails on the first cell that fails.

    python scripts/lib/run_notebooks.py NOTEBOOK...

Each notebook must be committed without outputs (checked first: git keeps them stripped).
It runs with notebooks/ as its working directory; the executed copy, with outputs, is
written to target/notebooks/NAME (never over the committed file).
"""
import pathlib
import sys
import time

import nbclient
import nbformat


def main(paths):
    out = pathlib.Path('target/notebooks')
    out.mkdir(parents=True, exist_ok=True)
    for p in map(pathlib.Path, paths):
        nb = nbformat.read(p, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == 'code' and (c.get('outputs') or c.get('execution_count') is not None)]
        if dirty:
            sys.exit(f'{p}: cells {dirty} hold outputs; commit notebooks with outputs stripped')
        started = time.monotonic()
        client = nbclient.NotebookClient(nb, timeout=900, kernel_name='python3',
                                         resources={'metadata': {'path': str(p.parent)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as e:
            nbformat.write(nb, out / p.name)
            sys.exit(f'{p}: a cell failed (executed copy in {out / p.name}):\n{e}')
        nbformat.write(nb, out / p.name)
        print(f'{p}: {len(nb.cells)} cells ran in {time.monotonic() - started:.1f} s')


if __name__ == '__main__':
    main(sys.argv[1:])
