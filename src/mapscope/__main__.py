from mapscope.cli.entry import run

run()
