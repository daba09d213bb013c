from scheduler.cli import main

main(prog_name="scheduler")
