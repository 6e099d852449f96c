from dimfix.cli import run

run()
