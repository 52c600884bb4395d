"""The `tinylm` command: demo, train, distill, synthesize, generate, eval, info, import-llama2c,
quantize, run, flash, chat, bench, serve, search. One module per group of commands: train.py
(train, generate, eval), distill.py (distill, synthesize), demo.py, models.py (quantize, run,
info, import-llama2c), boards.py (flash, chat, serve, bench), search.py (search, search show);
common.py holds what they share.

Each command is a thin layer over the library (its help names the module). Mistakes a user can
make (a missing file, bad settings, too little data, a damaged checkpoint) reach this file as
OSError or ValueError, and come out as one line "error: ..." on stderr with exit status 1.
`tinylm --debug COMMAND ...` (or TINYLM_DEBUG=1) shows the whole traceback instead.
"""
from __future__ import annotations

import click

from . import boards, demo, distill, models, search, train


class ErrorsAsOneLine(click.Group):
    """Runs a command; a user's mistake (OSError, ValueError) becomes one line on stderr."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (OSError, ValueError) as e:
            if ctx.params["debug"]:
                raise
            # An OSError from the system has a file name and a reason; ours just a message.
            message = f"{e.filename}: {e.strerror}" if getattr(e, "filename", None) else str(e)
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=ErrorsAsOneLine)
@click.option("--debug", is_flag=True, envvar="TINYLM_DEBUG",
              help="Show the full traceback of an error, not just its message.")
def main(debug):
    """Train tiny Llama-style language models in pure NumPy, sample from them, score them."""


for command in [train.train_command, train.generate_command, train.eval_command,
                distill.distill_command, distill.synthesize_command, demo.demo_command,
                models.quantize_command, models.run_command, models.info_command,
                models.import_llama2c_command,
                boards.flash_group, boards.chat_command, boards.serve_command,
                boards.bench_command, search.search_group]:
    main.add_command(command)
