from dimfix.entry import run

run()
