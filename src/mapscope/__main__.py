from mapscope.cli.main import run

run()
